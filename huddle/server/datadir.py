"""The hub's data directory: private to its owner, and written by one hub at a time.

The directory holds every room's text, the signing key and the audit log, so it is created
0700 and its files 0600 whatever the umask (SQLite gives ``-wal`` and ``-shm`` the mode of the
database file, so creating that file 0600 first covers them). A directory or file that is
already wider is left as it is (its owner may have a reason) and a warning says how to close it.

``HubLock`` is an exclusive ``flock`` on ``hub.lock``: two hubs writing one SQLite store would
hand out the same sequence numbers (``UNIQUE constraint failed``) and lose one side's edits. The
lock file names the holder's pid and address, so a second ``huddle lsp`` in solo mode joins the
hub that holds it instead of starting another. The kernel drops the lock when its holder dies,
however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
from pathlib import Path

from pydantic import BaseModel, ValidationError

from huddle.server.errors import ServerError

log = logging.getLogger("huddle.datadir")

LOCK_FILE = "hub.lock"
PRIVATE_FILES = (
    "hub.key",
    "huddle.sqlite3",
    "huddle.sqlite3-wal",
    "huddle.sqlite3-shm",
    "audit.jsonl",
)


class DataDirBusy(ServerError):
    """Another live hub holds the data directory."""

    def __init__(self, data_dir: Path, owner: HubOwner | None) -> None:
        self.owner = owner
        held = f" (pid {owner.pid}, {owner.url})" if owner else ""
        super().__init__(f"another hub is using {data_dir}{held}")


class HubOwner(BaseModel):
    pid: int
    url: str


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents 0700; warn if an existing ``path`` is wider."""
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            directory.mkdir(mode=0o700)
            directory.chmod(0o700)  # mkdir's mode is masked by the umask
    _warn_if_wide(path)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 unless it exists; warn if an existing one is wider."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _warn_if_wide(path)
    else:
        os.fchmod(fd, 0o600)
        os.close(fd)
    return path


def check(data_dir: Path) -> list[Path]:
    """Warn about every part of the data directory that others can read; returns them."""
    wide = [p for p in [data_dir, *(data_dir / f for f in PRIVATE_FILES)] if _wide(p)]
    for path in wide:
        _warn_if_wide(path)
    return wide


def _wide(path: Path) -> bool:
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except FileNotFoundError:
        return False


def _warn_if_wide(path: Path) -> None:
    if _wide(path):
        mode = stat.S_IMODE(path.stat().st_mode)
        want = "700" if path.is_dir() else "600"
        log.warning(
            "%s is readable by other users (mode %o): it holds room contents and secrets; "
            "run: chmod %s %s",
            path,
            mode,
            want,
            path,
        )


class HubLock:
    """``with HubLock(data_dir) as lock:`` holds the data directory or raises ``DataDirBusy``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> HubLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(self.path.parent, read_owner(self.path.parent)) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def publish(self, url: str) -> None:
        """Say where this hub listens, for a solo ``huddle lsp`` that finds the lock taken."""
        assert self._fd is not None, "publish() needs the lock"
        data = HubOwner(pid=os.getpid(), url=url).model_dump_json().encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def read_owner(data_dir: Path) -> HubOwner | None:
    """The hub holding ``data_dir``'s lock, as it published itself; None if unknown yet."""
    try:
        raw = (data_dir / LOCK_FILE).read_bytes()
        return HubOwner.model_validate(json.loads(raw)) if raw else None
    except (OSError, ValueError, ValidationError):
        return None
