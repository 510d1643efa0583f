"""A real Emacs daemon for the tests: `emacs --daemon` with huddle.el, driven by `emacsclient`.

Each daemon has a private HOME and socket (no init file, Debian's site files as a user has
them: that is where `elpa-eglot` puts eglot on Emacs 28). `huddle lsp` is started by eglot,
from this checkout (PYTHONPATH), with the test's Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HUDDLE_EL = ROOT / "editor-clients" / "emacs" / "huddle.el"
DRIVER_EL = Path(__file__).resolve().parent / "driver.el"
EVAL_TIMEOUT_S = 10.0  # an answer takes milliseconds; a daemon stuck in a prompt never answers


def missing() -> list[str]:
    """What the Emacs tests need and this machine lacks (install: scripts/emacs.sh install)."""
    absent = [name for name in ("emacs", "emacsclient") if shutil.which(name) is None]
    return absent


def elisp(value: Any) -> str:
    """A Lisp literal for a str, int, float, bool or None."""
    if value is None or value is False:
        return "nil"
    if value is True:
        return "t"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "(list " + " ".join(elisp(v) for v in value) + ")"
    raise TypeError(f"no Lisp literal for {value!r}")


def _lisp_string(printed: str) -> str:
    """The contents of a string as `prin1` prints it (only `"` and `\\` are escaped)."""
    printed = printed.strip()
    if not (printed.startswith('"') and printed.endswith('"')):
        raise AssertionError(f"Emacs answered {printed!r}, not a string")
    out, chars = [], iter(printed[1:-1])
    for ch in chars:
        out.append(next(chars) if ch == "\\" else ch)
    return "".join(out)


class Emacs:
    def __init__(self, home: Path, *, settings: dict[str, Any] | None = None) -> None:
        self.home = home
        self.settings = settings or {}
        # sun_path is short, hence /tmp; and one level below a fresh directory there, because
        # Emacs 28's server-start deletes the socket's directory when it sits directly in /tmp
        # (its cleanup for bug#44644), and the daemon then hangs in bind() before it is up.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="hemacs", dir="/tmp"))
        (self.sock_dir / "d").mkdir(mode=0o700)
        self.socket = self.sock_dir / "d" / "s"
        self.pid: int | None = None

    async def __aenter__(self) -> Emacs:
        absent = missing()
        if absent:
            raise AssertionError(f"missing {', '.join(absent)}: run scripts/emacs.sh install")
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("EMACS_SOCKET_NAME", None)
        setup = " ".join(
            [
                f'(setq huddle-command (list {elisp(sys.executable)} "-m" "huddle.cli" "lsp"))',
                *(f"(setq {name} {elisp(value)})" for name, value in self.settings.items()),
            ]
        )
        argv = [
            "emacs",
            f"--daemon={self.socket}",
            "-Q",
            # Emacs 28 compiles what it loads to native code in the background on a fresh
            # HOME (minutes on two cores, and the daemon waits): the byte code will do. -Q
            # skips Debian's site files, which would load (and compile) before any --eval;
            # packages come from where Debian's elpa-* put them, as site-start does.
            "--eval",
            "(setq native-comp-deferred-compilation nil)",
            "--eval",
            '(progn (setq package-directory-list (list "/usr/share/emacs/site-lisp/elpa"))'
            " (package-initialize))",
            "-L",
            str(HUDDLE_EL.parent),
            "-l",
            str(DRIVER_EL),
            "--eval",
            f"(progn {setup})",
        ]
        with (self.home / "daemon.log").open("wb") as log:
            # A file, not a pipe: the daemon keeps its output open after the starter exits.
            # Blocking: --daemon returns once the daemon is up (about half a second).
            try:
                done = subprocess.run(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                )
            except subprocess.TimeoutExpired:
                raise AssertionError(f"emacs --daemon did not start:\n{self.log()}") from None
        if done.returncode != 0:
            raise AssertionError(f"emacs --daemon failed ({done.returncode}):\n{self.log()}")
        # The daemon is nobody's child here: kept to end it when (kill-emacs) is not answered.
        self.pid = int(await self.eval("(emacs-pid)"))
        return self

    def log(self) -> str:
        return (self.home / "daemon.log").read_text(errors="replace")

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(AssertionError, TimeoutError, OSError):
            await self.eval("(kill-emacs)", timeout=5)
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # gone unless (kill-emacs) failed
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    async def eval(self, expr: str, timeout: float = EVAL_TIMEOUT_S) -> str:
        """The printed value of EXPR; fails when the daemon does not answer within `timeout`
        (blocked, for example in a minibuffer prompt)."""
        proc = await asyncio.create_subprocess_exec(
            "emacsclient",
            "-s",
            str(self.socket),
            "--eval",
            expr,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(
                f"Emacs did not answer {expr[:60]!r} within {timeout}s (blocked in a prompt?)"
            ) from None
        if proc.returncode != 0:
            raise AssertionError(f"emacsclient failed on {expr[:60]!r}: {err.decode()}")
        return out.decode()

    async def json(self, expr: str, timeout: float = EVAL_TIMEOUT_S) -> Any:
        return json.loads(_lisp_string(await self.eval(expr, timeout)))

    async def state(self, file: Path) -> dict[str, Any]:
        result: dict[str, Any] = await self.json(f"(huddle-test-state {elisp(str(file))})")
        return result
