"""Durable rooms in SQLite: an append log of updates, periodic snapshots, an authorship journal.

Every update is stored with the authenticated user and the server time (the journal). A
snapshot records the merged state up to a sequence number; loading a room applies the latest
snapshot and then the log after it. Each compaction also keeps its state as a history point,
so the room can be rebuilt as of any kept time: the newest history point at or before that
time plus the journal after it (``huddle.server.history``). Compaction trims what is older
than ``history_days``, except the newest history point before that boundary and every journal
row after it, which any later time is rebuilt from; ``journal_trimmed`` records up to which
sequence number rows may be gone, so a rebuild that would need them is refused, not wrong.

All SQLite work runs on one dedicated thread, except commits of appends where they never wait
for the disk (SQLite in WAL mode with ``synchronous=NORMAL``): those run on the event loop
whenever the thread is idle, as a handoff to the thread and back costs several times the commit
itself. Appends are group-committed: whatever arrived while the previous transaction was
committing goes into the next one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from huddle.server.config import StoreConfig
from huddle.server.datadir import private_dir, private_file
from huddle.server.errors import StoreError, StoreUnavailable

log = logging.getLogger("huddle.store")

DB_FILE = "huddle.sqlite3"
# Updates committed on the event loop between two WAL checkpoints (on the store's thread): a
# keystroke committed alone adds 2 to 4 pages to the WAL, so about SQLite's own default (1000
# pages).
_CHECKPOINT_EVERY = 256
# The most bytes of updates committed on the event loop at once (typing is tens of bytes an
# update); a bigger batch (a pasted file, a burst) goes to the store's thread.
_INLINE_BYTES = 64 * 1024
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS updates_by_time ON updates (room_id, ts);
CREATE TABLE IF NOT EXISTS snapshots (
    room_id INTEGER PRIMARY KEY REFERENCES rooms(id),
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX IF NOT EXISTS history_by_time ON history (room_id, ts);
CREATE TABLE IF NOT EXISTS journal_trimmed (
    room_id INTEGER PRIMARY KEY REFERENCES rooms(id),
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS last_seen (
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    user TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (room_id, user)
) WITHOUT ROWID;
"""

# A store from before ``journal_trimmed`` may already have trimmed its journal: assume rows
# below the first one left (or all of a compacted room's, when none is left) are gone.
_MIGRATE_TRIMMED = """
INSERT OR IGNORE INTO journal_trimmed (room_id, seq)
SELECT s.room_id,
       coalesce((SELECT min(u.seq) FROM updates u WHERE u.room_id = s.room_id) - 1, s.seq)
FROM snapshots s
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One stored update: who sent it and when (server time, seconds since the epoch)."""

    seq: int
    ts: float
    user: str
    update: bytes


@dataclass(frozen=True, slots=True)
class HistoryBase:
    """A state to rebuild a room from: every update up to ``seq`` (0 and None: the empty doc)."""

    seq: int
    ts: float | None
    state: bytes | None


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_id: int
    name: str
    snapshot: bytes | None
    log: list[bytes]
    next_seq: int

    @property
    def size_bytes(self) -> int:
        return len(self.snapshot or b"") + sum(len(u) for u in self.log)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    name: str
    created: float
    updates: int
    last_update: float | None


@dataclass(frozen=True, slots=True)
class RoomExport:
    """A room's rows, table by table (each row without its room id)."""

    name: str
    created: float
    updates: list[tuple[Any, ...]]  # seq, ts, user, data
    snapshots: list[tuple[Any, ...]]  # seq, ts, state
    history: list[tuple[Any, ...]]  # seq, ts, state
    trimmed: list[tuple[Any, ...]]  # seq
    last_seen: list[tuple[Any, ...]]  # user, ts


class CommitSink(Protocol):
    def committed(self, entries: list[Pending]) -> None: ...

    def failed(self, entries: list[Pending], error: Exception) -> None: ...


@dataclass(slots=True)
class Pending:
    sink: CommitSink
    room_id: int
    seq: int
    user: str
    update: bytes
    sender: object = None
    ts: float = field(default_factory=time.time)
    done: asyncio.Future[None] | None = None  # resolved once committed (or failed)
    uid: str = ""  # unique across a cluster: a retried commit finds out whether it landed


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class SqlDatabase(ABC):
    """Synchronous access, used from the store's thread and directly by the CLI: the queries
    SQLite and PostgreSQL share, written once with ``?`` placeholders.

    The store numbers updates as it commits them (``append`` sets each entry's ``seq``): one
    counter per room, so in a cluster of hubs on one PostgreSQL every node agrees on the order,
    and a room's updates become visible in the order of their numbers."""

    @abstractmethod
    def _execute(self, sql: str, args: Sequence[object] = ()) -> _Cursor: ...

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[object]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def load_room(self, name: str, *, create: bool) -> RoomRecord | None: ...

    @abstractmethod
    def append(self, entries: Sequence[Pending]) -> None:
        """Commit ``entries`` (in one transaction), setting each one's ``seq``."""

    def commit_inline(self) -> bool:
        """Whether ``append`` may run on the event loop: it never waits for a disk or a network
        (called once, on the store's thread, before any append)."""
        return False

    def checkpoint(self) -> None:
        """Write what ``append`` logged into the database proper, where that is deferred
        (after ``commit_inline`` said yes); a database that defers nothing has nothing to do."""
        return None

    def ping(self) -> None:
        self._execute("SELECT 1").fetchone()

    def updates_after(self, room_id: int, after_seq: int, limit: int) -> list[JournalEntry]:
        """The next ``limit`` stored updates of the room after ``after_seq``, in order."""
        rows = self._execute(
            'SELECT seq, ts, "user", data FROM updates WHERE room_id = ? AND seq > ? '
            "ORDER BY seq LIMIT ?",
            (room_id, after_seq, limit),
        ).fetchall()
        return [JournalEntry(int(q), float(t), str(u), bytes(d)) for q, t, u, d in rows]

    def room_count(self) -> int:
        row = self._execute("SELECT count(*) FROM rooms").fetchone()
        return int(row[0])

    def room_id(self, name: str) -> int | None:
        row = self._execute("SELECT id FROM rooms WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def compact(
        self, room_id: int, seq: int, state: bytes, keep_after: float, history_every: float = 0.0
    ) -> None:
        """Store ``state`` (the room up to ``seq``) as the snapshot to load and as a history
        point, then trim what is older than ``keep_after``: every history point but the newest
        of them, the base for rebuilding any later time, and the journal up to that base.
        A history point is skipped if the last one is younger than ``history_every`` seconds:
        points only speed rebuilds up (the journal in between is kept), and each is a whole
        copy of the room."""
        now = time.time()
        with self._transaction():
            self._execute(
                "INSERT INTO snapshots (room_id, seq, ts, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (room_id) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, "
                "state = excluded.state WHERE snapshots.seq <= excluded.seq",
                (room_id, seq, now, state),
            )
            recent = self._execute(
                "SELECT 1 FROM history WHERE room_id = ? AND ts > ? LIMIT 1",
                (room_id, now - history_every),
            ).fetchone()
            if recent is None or history_every <= 0:
                self._execute(
                    "INSERT INTO history (room_id, seq, ts, state) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (room_id, seq) DO NOTHING",
                    (room_id, seq, now, state),
                )
            base = self._execute(
                "SELECT seq FROM history WHERE room_id = ? AND ts < ? "
                "ORDER BY ts DESC, seq DESC LIMIT 1",
                (room_id, keep_after),
            ).fetchone()
            if base is None:
                return
            base_seq = min(int(base[0]), seq)
            self._execute(
                "DELETE FROM history WHERE room_id = ? AND ts < ? AND seq != ?",
                (room_id, keep_after, base_seq),
            )
            trimmed = self._execute(
                "SELECT max(seq) FROM updates WHERE room_id = ? AND seq <= ? AND ts < ?",
                (room_id, base_seq, keep_after),
            ).fetchone()[0]
            if trimmed is None:
                return
            self._execute(
                "DELETE FROM updates WHERE room_id = ? AND seq <= ? AND ts < ?",
                (room_id, trimmed, keep_after),
            )
            self._execute(
                "INSERT INTO journal_trimmed (room_id, seq) VALUES (?, ?) "
                "ON CONFLICT (room_id) DO UPDATE SET seq = excluded.seq "
                "WHERE journal_trimmed.seq < excluded.seq",
                (room_id, int(trimmed)),
            )

    def history_base(self, room: str, at: float) -> HistoryBase | None:
        """What to rebuild ``room`` as of ``at`` from: the newest history point at or before
        ``at``, or the empty doc while the journal still holds every update; None when the
        journal rows after that base were trimmed. An unknown room is empty at any time."""
        room_id = self.room_id(room)
        if room_id is None:
            return HistoryBase(0, None, None)
        row = self._execute(
            "SELECT seq, ts, state FROM history WHERE room_id = ? AND ts <= ? "
            "ORDER BY ts DESC, seq DESC LIMIT 1",
            (room_id, at),
        ).fetchone()
        base = (
            HistoryBase(0, None, None)
            if row is None
            else HistoryBase(int(row[0]), float(row[1]), bytes(row[2]))
        )
        return None if self._trimmed(room_id) > base.seq else base

    def history_kept_from(self, room: str) -> float | None:
        """The earliest time ``room`` can still be rebuilt as of; None: any time (nothing
        trimmed), or no time at all when the journal was trimmed before history was kept."""
        room_id = self.room_id(room)
        if room_id is None or not (trimmed := self._trimmed(room_id)):
            return None
        row = self._execute(
            "SELECT min(ts) FROM history WHERE room_id = ? AND seq >= ?", (room_id, trimmed)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _trimmed(self, room_id: int) -> int:
        row = self._execute(
            "SELECT seq FROM journal_trimmed WHERE room_id = ?", (room_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def last_seen(self, room: str, user: str) -> float | None:
        """When ``user`` last looked at ``room`` (as recorded by ``set_last_seen``)."""
        row = self._execute(
            "SELECT l.ts FROM last_seen l JOIN rooms r ON r.id = l.room_id "
            'WHERE r.name = ? AND l."user" = ?',
            (room, user),
        ).fetchone()
        return None if row is None else float(row[0])

    def set_last_seen(self, room: str, user: str, ts: float) -> None:
        room_id = self.room_id(room)
        if room_id is None:
            raise StoreError(f"no room {room!r}")
        self._execute(
            'INSERT INTO last_seen (room_id, "user", ts) VALUES (?, ?, ?) '
            'ON CONFLICT (room_id, "user") DO UPDATE SET ts = excluded.ts',
            (room_id, user, ts),
        )

    def journal(
        self,
        room: str,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        after_seq: int | None = None,
    ) -> list[JournalEntry]:
        """Stored updates of ``room`` in commit order, filtered by time, author and sequence."""
        sql = (
            'SELECT u.seq, u.ts, u."user", u.data FROM updates u JOIN rooms r ON r.id = u.room_id '
            "WHERE r.name = ?"
        )
        args: list[object] = [room]
        if since is not None:
            sql += " AND u.ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND u.ts < ?"
            args.append(until)
        if user is not None:
            sql += ' AND u."user" = ?'
            args.append(user)
        if after_seq is not None:
            sql += " AND u.seq > ?"
            args.append(after_seq)
        rows = self._execute(sql + " ORDER BY u.seq", args).fetchall()
        return [JournalEntry(int(s), float(t), str(u), bytes(d)) for s, t, u, d in rows]

    def journal_extent(
        self, room: str, *, after_seq: int, until: float | None
    ) -> tuple[int, int, int]:
        """(rows, bytes, last seq) of ``room``'s stored updates after ``after_seq`` and before
        ``until``: what a rebuild from there replays, counted without reading the updates."""
        where, args = _stored_updates(room, after_seq, None, until)
        sql = "SELECT count(*), coalesce(sum(length(u.data)), 0), coalesce(max(u.seq), ?) " + where
        rows, size, last = self._execute(sql, [after_seq, *args]).fetchone()
        return int(rows), int(size), int(last)

    def journal_page(
        self,
        room: str,
        *,
        after_seq: int,
        upto_seq: int,
        until: float | None,
        max_rows: int,
        max_bytes: int,
    ) -> list[JournalEntry]:
        """The next stored updates in ``(after_seq, upto_seq]`` before ``until``, in commit
        order: at most ``max_rows``, and none after the one that reaches ``max_bytes``, so a
        long journal is read a bounded page at a time."""
        where, args = _stored_updates(room, after_seq, upto_seq, until)
        sql = 'SELECT u.seq, u.ts, u."user", u.data ' + where
        page: list[JournalEntry] = []
        size = 0
        cursor = self._execute(sql + " ORDER BY u.seq LIMIT ?", [*args, max_rows])
        try:
            for seq, ts, user, data in cursor:
                page.append(JournalEntry(int(seq), float(ts), str(user), bytes(data)))
                size += len(data)
                if size >= max_bytes:
                    break
        finally:
            cursor.close()
        return page

    def history_points(self, room: str, *, after: float, before: float) -> list[tuple[int, float]]:
        """(seq, ts) of ``room``'s history points with ``after < ts < before``, oldest first."""
        rows = self._execute(
            "SELECT h.seq, h.ts FROM history h JOIN rooms r ON r.id = h.room_id "
            "WHERE r.name = ? AND h.ts > ? AND h.ts < ? ORDER BY h.ts, h.seq",
            (room, after, before),
        ).fetchall()
        return [(int(seq), float(ts)) for seq, ts in rows]

    def rooms(self) -> list[RoomInfo]:
        rows = self._execute(
            "SELECT r.name, r.created, count(u.seq), max(u.ts) FROM rooms r "
            "LEFT JOIN updates u ON u.room_id = r.id GROUP BY r.id ORDER BY r.name"
        ).fetchall()
        return [
            RoomInfo(str(n), float(c), int(k), None if t is None else float(t))
            for n, c, k, t in rows
        ]

    def export_room(self, name: str) -> RoomExport | None:
        """Every stored row of ``name``, to move it into another store (``huddle copy-rooms``)."""
        room_id = self.room_id(name)
        if room_id is None:
            return None
        created = self._execute("SELECT created FROM rooms WHERE id = ?", (room_id,)).fetchone()

        def rows(table: str, columns: str) -> list[tuple[Any, ...]]:
            sql = f"SELECT {columns} FROM {table} WHERE room_id = ? ORDER BY 1"  # noqa: S608
            return [tuple(r) for r in self._execute(sql, (room_id,)).fetchall()]

        return RoomExport(
            name=name,
            created=float(created[0]),
            updates=rows("updates", 'seq, ts, "user", data'),
            snapshots=rows("snapshots", "seq, ts, state"),
            history=rows("history", "seq, ts, state"),
            trimmed=rows("journal_trimmed", "seq"),
            last_seen=rows("last_seen", '"user", ts'),
        )


class Database(SqlDatabase):
    """The embedded store: one SQLite file in the data directory, one writer (this hub)."""

    def __init__(self, path: Path, durability: str = "normal") -> None:
        private_file(private_dir(path.parent) / path.name)  # -wal and -shm take its mode
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._durability = durability
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self._conn.execute("PRAGMA busy_timeout=5000")
        trimmed_known = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_trimmed'"
        ).fetchone()
        self._conn.executescript(_SCHEMA)
        if trimmed_known is None:
            self._conn.execute(_MIGRATE_TRIMMED)
        self._next_seq: dict[int, int] = {}  # room id -> the number its next update gets

    @classmethod
    def in_dir(cls, data_dir: Path, durability: str = "normal") -> Database:
        return cls(data_dir / DB_FILE, durability)

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, args: Sequence[object] = ()) -> _Cursor:
        return self._conn.execute(sql, args)

    def commit_inline(self) -> bool:
        """With ``synchronous=NORMAL`` a WAL commit writes to the OS and syncs nothing, except
        when it checkpoints the WAL into the database file (two fsyncs): checkpoints are left
        to ``checkpoint`` then, which the store runs on its thread."""
        if self._durability == "full":
            return False
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        return True

    def checkpoint(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    @contextmanager
    def _transaction(self) -> Iterator[object]:
        with self._conn:
            self._conn.execute("BEGIN")
            yield self._conn

    def load_room(self, name: str, *, create: bool) -> RoomRecord | None:
        room_id = self.room_id(name)
        if room_id is None:
            if not create:
                return None
            cur = self._conn.execute(
                "INSERT INTO rooms (name, created) VALUES (?, ?)", (name, time.time())
            )
            assert cur.lastrowid is not None
            self._next_seq[cur.lastrowid] = 1
            return RoomRecord(cur.lastrowid, name, None, [], 1)
        snap = self._conn.execute(
            "SELECT seq, state FROM snapshots WHERE room_id = ?", (room_id,)
        ).fetchone()
        snap_seq, snapshot = (0, None) if snap is None else (int(snap[0]), bytes(snap[1]))
        rows = self._conn.execute(
            "SELECT seq, data FROM updates WHERE room_id = ? AND seq > ? ORDER BY seq",
            (room_id, snap_seq),
        ).fetchall()
        last = self._conn.execute(
            "SELECT max(seq) FROM updates WHERE room_id = ?", (room_id,)
        ).fetchone()[0]
        next_seq = max(snap_seq, int(last or 0)) + 1
        self._next_seq[room_id] = next_seq
        return RoomRecord(room_id, name, snapshot, [bytes(r[1]) for r in rows], next_seq)

    def append(self, entries: Sequence[Pending]) -> None:
        numbered = dict(self._next_seq)
        rows = []
        for e in entries:
            if e.room_id not in numbered:  # appended to without being loaded (the CLI, tests)
                last = self._execute(
                    "SELECT max(seq) FROM snapshots WHERE room_id = ? UNION ALL "
                    "SELECT max(seq) FROM updates WHERE room_id = ?",
                    (e.room_id, e.room_id),
                ).fetchall()
                numbered[e.room_id] = max(int(r[0] or 0) for r in last) + 1
            seq = numbered[e.room_id]
            numbered[e.room_id] = seq + 1
            rows.append((e.room_id, seq, e.ts, e.user, e.update))
        with self._transaction():
            self._conn.executemany(
                'INSERT INTO updates (room_id, seq, ts, "user", data) VALUES (?, ?, ?, ?, ?)', rows
            )
        self._next_seq = numbered
        for e, row in zip(entries, rows, strict=True):
            e.seq = row[1]


class Store:
    """The async face of a ``SqlDatabase``: one DB thread, group commit, bounded backlog.

    A database that is unreachable (``StoreUnavailable``: PostgreSQL restarting, a network
    cut) is retried with backoff for up to ``StoreConfig.outage_seconds``; meanwhile nothing
    is relayed, the updates wait in the backlog and their connections stay open. Past that,
    the batch fails and its senders are closed with ``STORE_UNAVAILABLE`` (they keep their
    edits and re-send them when they reconnect)."""

    def __init__(
        self,
        open_db: Callable[[], SqlDatabase],
        config: StoreConfig,
        max_pending: int,
        on_commit_seconds: Callable[[float, int], None] | None = None,
    ) -> None:
        self._open_db = open_db
        self.available = True  # whether the last commit (or its retry) reached the database
        self._config = config
        self._max_pending = max_pending
        self._on_commit_seconds = on_commit_seconds
        self._pending: deque[Pending] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="huddle-store")
        self._uid_prefix = uuid.uuid4().hex  # this process: uids stay unique across a cluster
        self._uids = itertools.count()
        self._db: SqlDatabase | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Held by whichever thread uses the connection: the store's thread for each job, the
        # event loop for an inline commit, which it makes only if it gets the lock at once.
        self._db_lock = threading.Lock()
        self._inline = False  # whether commits may run on the event loop (commit_inline)
        self._since_checkpoint = 0  # updates committed since the last checkpoint
        self._checkpoint: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Store:
        self._db = db = await self._run(self._open_db)
        self._inline = await self._run(db.commit_inline)
        self._writer = asyncio.create_task(self._write_loop(), name="huddle-store-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        if self._db is not None:
            await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> SqlDatabase:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._db_lock:
                return fn()

        return await asyncio.get_running_loop().run_in_executor(self._executor, locked)

    async def call(self, fn: Callable[[SqlDatabase], T]) -> T:
        """Run ``fn`` on the DB thread (serialised with commits)."""
        db = self.db
        return await self._run(lambda: fn(db))

    async def append(self, entry: Pending) -> None:
        """Enqueue an update; ``entry.sink`` hears of it once it is committed (or failed)."""
        while len(self._pending) >= self._max_pending:
            self._space.clear()
            await self._space.wait()
        entry.uid = f"{self._uid_prefix}:{next(self._uids)}"
        self._pending.append(entry)
        self._wake.set()

    async def _write_loop(self) -> None:
        db = self.db
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [
                self._pending.popleft()
                for _ in range(min(len(self._pending), self._config.max_batch))
            ]
            self._space.set()
            started = time.perf_counter()
            error = await self._commit(db, batch)
            if error is not None:  # disk full, I/O error, a long outage: the senders must hear
                self._dispatch(batch, error)
                continue
            if self._on_commit_seconds is not None:
                self._on_commit_seconds(time.perf_counter() - started, len(batch))
            self._dispatch(batch, None)

    def _logged(self, db: SqlDatabase, count: int) -> None:
        """Where SQLite's own checkpoints are off (``commit_inline``): every
        ``_CHECKPOINT_EVERY`` updates committed, either way, one goes to the thread."""
        if not self._inline:
            return
        self._since_checkpoint += count
        if self._since_checkpoint >= _CHECKPOINT_EVERY and self._checkpoint is None:
            self._since_checkpoint = 0
            self._checkpoint = asyncio.ensure_future(self._run(db.checkpoint))
            self._checkpoint.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("checkpointing the store's log failed: %s", done.exception())

    async def _commit(self, db: SqlDatabase, batch: list[Pending]) -> Exception | None:
        """Commit ``batch``, retrying while the database is unreachable; the error if not."""
        if (
            self._inline
            and sum(len(e.update) for e in batch) <= _INLINE_BYTES
            and self._db_lock.acquire(blocking=False)
        ):  # on the event loop (see ``SqlDatabase.commit_inline``)
            try:
                db.append(batch)
            except Exception as exc:
                return exc
            finally:
                self._db_lock.release()
            self._logged(db, len(batch))
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.outage_seconds
        delay = 0.05
        while True:
            try:
                await self._run(lambda: db.append(batch))
            except StoreUnavailable as exc:
                if self.available:
                    log.warning("the store is unreachable, retrying: %s", exc)
                self.available = False
                if self._closing or loop.time() + delay > deadline:
                    return exc
                await asyncio.sleep(delay)  # backoff between reconnection attempts
                delay = min(delay * 2, 1.0)
                continue
            except Exception as exc:
                return exc
            if not self.available:
                log.warning("the store is reachable again")
            self.available = True
            self._logged(db, len(batch))
            return None

    @staticmethod
    def _dispatch(batch: list[Pending], error: Exception | None) -> None:
        by_sink: dict[int, tuple[CommitSink, list[Pending]]] = {}
        for entry in batch:
            by_sink.setdefault(id(entry.sink), (entry.sink, []))[1].append(entry)
        for sink, entries in by_sink.values():
            if error is None:
                sink.committed(entries)
            else:
                sink.failed(entries, error)

    async def compact(self, room_id: int, seq: int, state: bytes) -> None:
        keep_after = time.time() - self._config.history_days * 86400
        every = self._config.history_every_s
        await self.call(lambda db: db.compact(room_id, seq, state, keep_after, every))

    async def last_seen(self, room: str, user: str) -> float | None:
        return await self.call(lambda db: db.last_seen(room, user))

    async def set_last_seen(self, room: str, user: str, ts: float) -> None:
        await self.call(lambda db: db.set_last_seen(room, user, ts))


def _stored_updates(
    room: str, after_seq: int, upto_seq: int | None, until: float | None
) -> tuple[str, list[object]]:
    """``FROM ... WHERE ...`` and its arguments: ``room``'s stored updates in
    ``(after_seq, upto_seq]`` (no upper bound when None) stored before ``until``."""
    sql = "FROM updates u JOIN rooms r ON r.id = u.room_id WHERE r.name = ? AND u.seq > ?"
    args: list[object] = [room, after_seq]
    if upto_seq is not None:
        sql += " AND u.seq <= ?"
        args.append(upto_seq)
    if until is not None:
        sql += " AND u.ts < ?"
        args.append(until)
    return sql, args
