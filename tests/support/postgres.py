"""A throwaway PostgreSQL cluster for the tests and benchmarks: Debian's server, for real.

initdb into a fresh temporary directory, then ``postgres`` on 127.0.0.1 and a free port (its unix
socket inside that directory, so nothing outside it is touched), with fsync and synchronous commit
on as in production: the cluster tests count on a commit surviving a crash. Trust authentication,
which is safe only because it listens on loopback. As root (CI) it runs as the `postgres` user.

    server = PostgresServer().start()
    url = server.new_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1
    server.kill(); server.start()     # crash and recover
    server.close()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql

from tests.support.daemons import Daemon, MissingComponent, as_service_user, tail, wait_until
from tests.support.peers import free_port

SUPERUSER = "postgres"
DATABASE = "huddle"
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
START_TIMEOUT_S = 30.0  # crash recovery after kill() replays the WAL first; seconds on this machine
STOP_TIMEOUT_S = 30.0


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding a server (Debian's layout)."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    if not found:
        raise MissingComponent("PostgreSQL (/usr/lib/postgresql/<version>/bin/postgres)")
    for tool in ("initdb", "postgres"):
        if not (found[-1] / tool).exists():
            raise MissingComponent(f"PostgreSQL's {found[-1] / tool}")
    return found[-1]


class PostgresServer(Daemon):
    """One PostgreSQL cluster in a temporary directory; the same port across restarts."""

    def __init__(self, *settings: str) -> None:
        """``settings``: extra ``name=value`` server settings (``max_connections=200``)."""
        self.bin = bin_dir()
        super().__init__("huddle-pg-", "postgres.log")
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.settings = settings
        self._names = itertools.count(1)
        self._initialized = False
        self._prefix: list[str] = []  # setpriv to the postgres user when run as root

    @property
    def url(self) -> str:
        """The ``huddle`` database start() creates."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("PostgreSQL is already running")
        if not self._initialized:
            self._initdb()
        for attempt in range(3):
            try:
                self._launch()
                break
            except AssertionError:
                # free_port() only found a port that was free a moment ago: another process may
                # have taken it before the server bound it. Only then is a new port worth a try.
                if attempt == 2 or "could not bind" not in tail(self.log):
                    raise
                self.port = free_port()
        if not self._initialized:
            self._initialized = True
            self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        return self

    def stop(self, mode: str = "fast") -> None:
        """Shut down: ``smart`` waits for clients, ``fast`` disconnects them (a clean shutdown
        either way), ``immediate`` exits without a checkpoint (recovery runs at the next start)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(STOP_SIGNALS[mode])
        self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once, like a machine losing power.

        Not the postmaster alone: its children call setsid(), so no process group holds them,
        and an orphaned backend busy in a query keeps the old shared memory attached until it
        notices, which makes the next start() refuse to run. SIGSTOP first, so the postmaster
        forks nothing between listing its children and the kill.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            children = _children(self.proc.pid)
            self.proc.kill()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)
            wait_until(
                lambda: not any(_alive(pid) for pid in children),
                self.proc,
                self.log,
                what="the killed PostgreSQL's backends to exit",
                exited_ok=True,
            )
        self.proc = None

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def new_database(self, name: str | None = None) -> str:
        """CREATE DATABASE (milliseconds: a copy of template1) and return its URL."""
        name = name or f"db{next(self._names)}"
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def terminate(self) -> None:
        """close() removes the directory anyway: no shutdown checkpoint to wait for."""
        self.kill()

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        self._prefix = as_service_user(self.dir)
        result = subprocess.run(
            [
                *self._prefix,
                str(self.bin / "initdb"),
                f"--pgdata={self.data}",
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Only initdb's own flush of the fresh files: the server runs with fsync=on.
                "--no-sync",
            ],
            cwd=self.dir,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"initdb failed ({result.returncode}):\n{result.stdout.decode()}"
                f"{result.stderr.decode()}"
            )

    def _launch(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            **dict(s.split("=", 1) for s in self.settings),
        }
        args = [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
        self.launch(
            [*self._prefix, str(self.bin / "postgres"), "-D", str(self.data), *args],
            self._accepts,
            what="PostgreSQL",
            timeout=START_TIMEOUT_S,
        )

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.url_for("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError as error:
            # "the database system is starting up / in recovery mode": not yet; anything else is
            # worth seeing now rather than after the timeout.
            if re.search(r"refused|starting up|recovery|shutting down", str(error)):
                return False
            raise

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(statement)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; the fields after its ')' do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (which holds no shared memory any more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
