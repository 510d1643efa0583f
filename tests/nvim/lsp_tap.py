"""Run a language server and record every LSP message between it and the editor.

    python lsp_tap.py LOG.jsonl -- COMMAND...

Bytes pass through unchanged; each message is appended to LOG.jsonl as
``{"t": seconds, "dir": "editor>server" | "server>editor", "msg": ...}``. Used by
tests/test_neovim_e2e.py when HUDDLE_E2E_TAP=1, to see exactly what Neovim sent and got.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any


class Recorder:
    def __init__(self, path: str) -> None:
        self.out = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - lives until exit
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def record(self, direction: str, body: bytes) -> None:
        try:
            msg: Any = json.loads(body)
        except ValueError:
            msg = body.decode("utf-8", errors="replace")
        line = json.dumps(
            {"t": round(time.monotonic() - self.start, 6), "dir": direction, "msg": msg},
            ensure_ascii=False,
        )
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def pump(source: IO[bytes], sink: IO[bytes], direction: str, recorder: Recorder) -> None:
    while True:
        headers = b""
        while not headers.endswith(b"\r\n\r\n"):
            byte = source.read(1)
            if not byte:
                sink.close()
                return
            headers += byte
        length = 0
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = source.read(length)
        sink.write(headers + body)
        sink.flush()
        recorder.record(direction, body)


def main() -> int:
    log, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    recorder = Recorder(log)
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    upstream = threading.Thread(
        target=pump,
        args=(sys.stdin.buffer, child.stdin, "editor>server", recorder),
        daemon=True,
    )
    upstream.start()
    pump(child.stdout, sys.stdout.buffer, "server>editor", recorder)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
