"""Rooms in PostgreSQL: the store of a hub cluster (``huddle serve --store postgresql://...``).

The same tables and queries as the SQLite store (``huddle.server.store``), plus what several
nodes writing one database need:

- **Numbering at commit.** ``rooms.next_seq`` is the room's counter. A commit takes it with
  ``UPDATE ... RETURNING``, which row-locks the room until the commit ends, so a room's updates
  commit in the order of their numbers on every node: a reader that has seen number ``n``
  committed has seen every number below it, and never skips one that commits late (the trap
  of sequences, whose numbers commit out of order).
- **The doorbell.** The same transaction sends ``NOTIFY huddle_updates, '<room id>:<seq>'``,
  delivered to every listening node when (and only if) it commits. It never carries the
  update: a node reads the rows after the last number it has (``updates_after``).
- **Retries that cannot duplicate.** Every update carries a cluster-unique ``uid``. When the
  connection drops during a commit, whether it landed is unknown; the retry looks the batch's
  uids up first and only inserts it if it is not there.
- **Versioned schema.** ``huddle_schema`` holds the version; a node that finds an older one
  migrates it under an advisory lock, so nodes started together do it once.
- **The signing key** lives here too (``signing_key``), so every node accepts the same tokens.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from huddle.server.errors import StoreUnavailable
from huddle.server.store import Pending, RoomExport, RoomRecord, SqlDatabase, _Cursor

log = logging.getLogger("huddle.postgres")

UPDATES_CHANNEL = "huddle_updates"
PRESENCE_CHANNEL = "huddle_presence"
SCHEMA_VERSION = 1
_MIGRATION_LOCK = 0x68756464  # "hudd": pg_advisory_xact_lock key for schema changes

# Each step takes the schema from the version before it to its own; never edit a shipped one.
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE rooms (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created DOUBLE PRECISION NOT NULL,
    next_seq BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE updates (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    "user" TEXT NOT NULL,
    data BYTEA NOT NULL,
    uid TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX updates_by_uid ON updates (uid);
CREATE INDEX updates_by_time ON updates (room_id, ts);
CREATE TABLE snapshots (
    room_id BIGINT PRIMARY KEY REFERENCES rooms(id),
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    state BYTEA NOT NULL
);
CREATE TABLE history (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (room_id, seq)
);
CREATE INDEX history_by_time ON history (room_id, ts);
CREATE TABLE journal_trimmed (
    room_id BIGINT PRIMARY KEY REFERENCES rooms(id),
    seq BIGINT NOT NULL
);
CREATE TABLE last_seen (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    "user" TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (room_id, "user")
);
CREATE TABLE presence_relay (
    id BIGSERIAL PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    data BYTEA NOT NULL
);
CREATE TABLE signing_key (
    id INT PRIMARY KEY CHECK (id = 1),
    key BYTEA NOT NULL
);
""",
}


def connect(url: str, *, name: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (transactions are explicit), committing synchronously:
    an update is on the database's disk before any node relays it."""
    try:
        conn = psycopg.connect(url, autocommit=True, application_name=name, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL: {_first_line(exc)}") from exc
    conn.execute("SET synchronous_commit = on")
    return conn


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS huddle_schema (version INT NOT NULL)")
        row = conn.execute("SELECT max(version) FROM huddle_schema").fetchone()
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database's schema is version {found}, newer than this hub's "
                f"({SCHEMA_VERSION}): upgrade huddle"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[version])
            conn.execute("INSERT INTO huddle_schema (version) VALUES (%s)", (version,))
            log.info("PostgreSQL schema migrated to version %d", version)
    return found


class PostgresDatabase(SqlDatabase):
    """One node's connection (used from its store thread, or by the CLI)."""

    def __init__(self, url: str, *, node: str = "cli") -> None:
        self._url = url
        self._name = f"huddle-{node}"
        self._conn: psycopg.Connection[Any] | None = connect(url, name=self._name)
        migrate(self._conn)
        # The batch whose commit was cut off: it may have landed (see ``append``).
        self._uncertain: list[Pending] = []

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @property
    def _live(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._url, name=self._name)
        return self._conn

    def _execute(self, sql: str, args: Sequence[object] = ()) -> _Cursor:
        try:
            return self._live.execute(sql.replace("?", "%s"), args)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(_first_line(exc)) from exc

    @contextmanager
    def _transaction(self) -> Iterator[object]:
        try:
            with self._live.transaction() as tx:
                yield tx
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(_first_line(exc)) from exc

    def load_room(self, name: str, *, create: bool) -> RoomRecord | None:
        room_id = self.room_id(name)
        if room_id is None:
            if not create:
                return None
            self._execute(
                "INSERT INTO rooms (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, time.time()),
            )
            room_id = self.room_id(name)
            assert room_id is not None
        with self._transaction():  # one consistent view: a compaction may run meanwhile
            self._execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            snap = self._execute(
                "SELECT seq, state FROM snapshots WHERE room_id = ?", (room_id,)
            ).fetchone()
            snap_seq, snapshot = (0, None) if snap is None else (int(snap[0]), bytes(snap[1]))
            rows = self._execute(
                "SELECT seq, data FROM updates WHERE room_id = ? AND seq > ? ORDER BY seq",
                (room_id, snap_seq),
            ).fetchall()
        last = int(rows[-1][0]) if rows else snap_seq
        return RoomRecord(room_id, name, snapshot, [bytes(r[1]) for r in rows], last + 1)

    def append(self, entries: Sequence[Pending]) -> None:
        """Commit ``entries`` in one transaction, numbering each room's at commit time."""
        if self._uncertain and self._landed(self._uncertain):
            self._uncertain = []
            if all(e.seq for e in entries):
                return
        by_room: dict[int, list[Pending]] = {}
        for entry in entries:
            by_room.setdefault(entry.room_id, []).append(entry)
        numbered: list[tuple[Pending, int]] = []
        self._uncertain = list(entries)
        with self._transaction():
            for room_id in sorted(by_room):  # one lock order on every node: no deadlock
                mine = by_room[room_id]
                end = self._execute(
                    "UPDATE rooms SET next_seq = next_seq + ? WHERE id = ? RETURNING next_seq",
                    (len(mine), room_id),
                ).fetchone()[0]
                numbered.extend((e, int(end) - len(mine) + i) for i, e in enumerate(mine))
            with self._live.cursor() as cur:
                cur.executemany(
                    'INSERT INTO updates (room_id, seq, ts, "user", data, uid) '
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(e.room_id, seq, e.ts, e.user, e.update, e.uid) for e, seq in numbered],
                )
            for room_id in by_room:
                last = max(seq for e, seq in numbered if e.room_id == room_id)
                self._execute("SELECT pg_notify(?, ?)", (UPDATES_CHANNEL, f"{room_id}:{last}"))
        self._uncertain = []
        for entry, seq in numbered:
            entry.seq = seq

    def _landed(self, batch: list[Pending]) -> bool:
        """Whether ``batch`` (all or nothing: one transaction) was committed; if so, each
        entry's ``seq`` is set from the rows."""
        rows = self._execute(
            "SELECT uid, seq FROM updates WHERE uid = ANY(?)", ([e.uid for e in batch],)
        ).fetchall()
        if not rows:
            return False
        seqs = {str(uid): int(seq) for uid, seq in rows}
        for entry in batch:
            entry.seq = seqs[entry.uid]
        log.info("a commit cut off by a lost connection had landed (%d updates)", len(batch))
        return True

    def import_room(self, room: RoomExport) -> bool:
        """Store an exported room under its name, rows and numbers as they were; False (and
        nothing written) if the database already has a room of that name."""
        with self._transaction():
            row = self._execute(
                "INSERT INTO rooms (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING "
                "RETURNING id",
                (room.name, room.created),
            ).fetchone()
            if row is None:
                return False
            room_id = int(row[0])
            last = max([int(r[0]) for r in room.updates + room.snapshots] or [0])
            self._execute("UPDATE rooms SET next_seq = ? WHERE id = ?", (last + 1, room_id))
            inserts = {
                'updates (room_id, seq, ts, "user", data, uid)': [
                    (room_id, *r, f"import:{room_id}:{r[0]}") for r in room.updates
                ],
                "snapshots (room_id, seq, ts, state)": [(room_id, *r) for r in room.snapshots],
                "history (room_id, seq, ts, state)": [(room_id, *r) for r in room.history],
                "journal_trimmed (room_id, seq)": [(room_id, *r) for r in room.trimmed],
                'last_seen (room_id, "user", ts)': [(room_id, *r) for r in room.last_seen],
            }
            with self._live.cursor() as cur:
                for target, values in inserts.items():
                    if values:
                        marks = ", ".join(["%s"] * len(values[0]))
                        sql = f"INSERT INTO {target} VALUES ({marks})"  # noqa: S608 (constants)
                        cur.executemany(sql, values)
        return True

    def signing_key(self) -> bytes:
        """The cluster's token signing key, created by the first node that asks."""
        self._execute(
            "INSERT INTO signing_key (id, key) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
            (secrets.token_bytes(32),),
        )
        return bytes(self._execute("SELECT key FROM signing_key WHERE id = 1").fetchone()[0])

    def rotate_signing_key(self, key: bytes | None = None) -> bytes:
        """A new signing key (or ``key``, a hub's ``hub.key`` moving into the cluster)."""
        key = key or secrets.token_bytes(32)
        self._execute(
            "INSERT INTO signing_key (id, key) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET key = excluded.key",
            (key,),
        )
        return key


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
