"""A throwaway redis-server (Debian's) for the clustered peer the benchmarks compare against.

On 127.0.0.1 and a free port, with no persistence (no RDB snapshots, no AOF) and its working
directory in a temporary directory that close() removes.
"""

from __future__ import annotations

import socket
from typing import Self

from tests.support.daemons import Daemon, find_binary


class RedisServer(Daemon):
    def __init__(self) -> None:
        self.binary = find_binary("redis-server")
        super().__init__("huddle-redis-", "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> Self:
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
        self.launch([self.binary, *args], self.ping, what="redis-server")
        return self

    def ping(self) -> bool:
        """PING in RESP over a raw socket: True once the server answers +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False
