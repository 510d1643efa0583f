"""HAProxy (Debian's) in front of several hub nodes, as the README's cluster set-up runs it.

One frontend on 127.0.0.1 and a free port, in HTTP mode (it passes websocket upgrades through and
then tunnels them), balancing across ``backends`` with fast HTTP health checks on /healthz (the
hub answers it on its websocket port): a node is out after two failed checks 500 ms apart, back
after one good one. ``timeout tunnel 1h`` keeps idle editor connections open.
"""

from __future__ import annotations

import csv
import socket
from typing import Self

from tests.support.daemons import Daemon, find_binary, port_open

CONFIG = """\
global
    maxconn 4096
    stats socket {admin} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-request 10s
    timeout queue 5s
    # A connection to a node that died since its last check goes to another node.
    retries 2
    option redispatch

frontend hub
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance {balance}
    option httpchk
    # HTTP/1.1 with a Host: the websockets library behind the hub rejects HTTP/1.0 requests.
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check inter 500ms fastinter 500ms downinter 500ms fall 2 rise 1
{servers}
"""


class HAProxy(Daemon):
    def __init__(self, backends: list[tuple[str, int]], *, balance: str = "roundrobin") -> None:
        """``balance``: roundrobin spreads requests; leastconn suits long-lived websockets."""
        self.binary = find_binary("haproxy", "/usr/sbin", "/usr/local/sbin")
        self.backends = list(backends)
        super().__init__("huddle-haproxy-", "haproxy.log")
        self.config = self.dir / "haproxy.cfg"
        self.admin = self.dir / "admin.sock"
        self.balance = balance

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        """The websocket URL of the frontend (append the room path)."""
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Self:
        servers = "\n".join(
            f"    server n{i} {host}:{port}" for i, (host, port) in enumerate(self.backends)
        )
        self.config.write_text(
            CONFIG.format(admin=self.admin, port=self.port, balance=self.balance, servers=servers)
        )
        self.launch(
            [self.binary, "-db", "-f", str(self.config)],  # -db: foreground, no daemon
            lambda: port_open(self.port),
            what="haproxy",
        )
        return self

    def states(self) -> dict[tuple[str, int], str]:
        """Each backend's state as HAProxy's health checks see it: "UP", "DOWN", "UP 1/2"..."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        rows = csv.reader(b"".join(chunks).decode().lstrip("# ").splitlines())
        header = next(rows)
        name, server, status = (header.index(f) for f in ("pxname", "svname", "status"))
        return {
            self.backends[int(row[server][1:])]: row[status]
            for row in rows
            if len(row) > status and row[name] == "nodes" and row[server].startswith("n")
        }
