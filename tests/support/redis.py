"""A throwaway redis-server (Debian's) for the clustered peer the benchmarks compare against.

On 127.0.0.1 and a free port, with no persistence (no RDB snapshots, no AOF) and its working
directory in a temporary directory that close() removes.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.daemons import find_binary, wait_until
from tests.support.peers import free_port


class RedisServer:
    def __init__(self) -> None:
        self.binary = find_binary("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="huddle-redis-"))
        self.log = self.dir / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        # Configuration on the command line, no file: the Debian /etc/redis/redis.conf (with its
        # persistence and its own port) is never read.
        args = [
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--unixsocket", "",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, *args],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self.ping, self.proc, self.log, what="redis-server")
        return self

    def ping(self) -> bool:
        """PING in RESP over a raw socket: True once the server answers +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(30)
            self.proc = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
