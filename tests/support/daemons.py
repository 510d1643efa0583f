"""What the throwaway servers of tests/support (postgres.py, redis.py, haproxy.py) share."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.peers import free_port

INSTALL = "scripts/postgres.sh install"


class MissingComponent(AssertionError):
    """A server the tests run for real is not installed: the test fails and says how to get it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not installed: run {INSTALL} (or ./dev setup)")


def find_binary(name: str, *extra_dirs: str) -> str:
    """``name`` on PATH or in ``extra_dirs`` (haproxy is in /usr/sbin, off a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(extra_dirs))
    if found is None:
        raise MissingComponent(name)
    return found


def as_service_user(owned: Path) -> list[str]:
    """The command prefix that runs a server as an unprivileged user, chowning ``owned`` to it.

    PostgreSQL refuses to run as root, and CI runs the suite as root: there the server runs as
    the `postgres` user Debian's package creates. setpriv, not runuser: it execs in place, so the
    child's pid is the server's and a SIGKILL reaches the server, not a wrapper that forked it.
    """
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise MissingComponent("the postgres system user (Debian's postgresql package)") from None
    for path in [owned, *owned.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return [
        find_binary("setpriv"),
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--",
    ]


def wait_until(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Path,
    *,
    what: str,
    timeout: float = 30.0,
    exited_ok: bool = False,
) -> None:
    """Re-check ``check`` until it holds; fail at once with the server's log if it exited
    (unless ``exited_ok``: waiting for the aftermath of a kill)."""
    deadline = time.monotonic() + timeout
    while not check():
        if not exited_ok and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout}s:\n{tail(log)}")
        time.sleep(0.02)


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Daemon(ABC):
    """A server in a temporary directory of its own, on 127.0.0.1 and a free port: start() runs
    it (a subclass's), close() ends it and removes the directory; ``with`` does both."""

    def __init__(self, prefix: str, log: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.log = self.dir / log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self) -> Self:
        """Run the server (with ``launch``) and wait until it answers."""

    def launch(
        self, argv: list[str], ready: Callable[[], bool], *, what: str, timeout: float = 30.0
    ) -> None:
        """Run ``argv`` in the directory, its output to the log, and wait until ``ready``."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest (SIGINT: PostgreSQL's fast
                # shutdown) must not stop the server under the fixtures' finalizers.
                start_new_session=True,
            )
        wait_until(ready, self.proc, self.log, what=what, timeout=timeout)

    def terminate(self) -> None:
        """End the server for close(): SIGTERM (haproxy's hard stop: closes tunnels at once)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None

    def close(self) -> None:
        try:
            self.terminate()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
