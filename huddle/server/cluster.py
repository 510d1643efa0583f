"""A hub node's link to the other nodes of its cluster, through PostgreSQL alone.

Any node serves any room; PostgreSQL is the source of truth and the doorbell:

- **Updates.** A node commits an update (numbered per room at commit, see
  ``huddle.server.postgres``) and relays it to its own peers; the commit rings
  ``huddle_updates`` with ``<room id>:<seq>``. Every node holding that room reads the rows after
  the last number it has, applies them and relays them to its peers (``Room.follow``). A
  doorbell missed while a node was reconnecting costs nothing: after every (re)connection the
  node follows every room it holds.
- **Presence** is ephemeral and is not stored: a node sends what its own peers' awareness
  changed on ``huddle_presence`` (inline when it fits a notification, else through a
  ``presence_relay`` row the notification names), asks the others for a room's presence when it
  loads the room or reconnects, and beats once a second. A node not heard from for
  ``NODE_TIMEOUT`` seconds (killed, cut off) is dead: its peers' cursors disappear everywhere.

Why not one owner node per room with the others forwarding: a room's owner dying would need a
lease to expire before anyone could write (seconds of a frozen room), and forwarding adds a hop
to every keystroke of the non-owners' peers. Here a node dying costs its own peers a reconnect
and nothing else; the price is that every node holding a room applies every update (a Y.Doc
per node), and that commits to one room serialise on its row lock (group commit keeps that
below the websocket's rate).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import psycopg

from huddle.server.metrics import HubMetrics
from huddle.server.postgres import PRESENCE_CHANNEL, UPDATES_CHANNEL
from huddle.server.room import Room

log = logging.getLogger("huddle.cluster")

NODE_TIMEOUT = 3.0  # seconds without a word from a node before its presence is dropped
BEAT_SECONDS = 1.0
INLINE_BYTES = 5_600  # base64 of this fits PostgreSQL's 8,000-byte notification payload
RELAY_KEEP_SECONDS = 60.0


class RemoteNode:
    """The owner of the presence states another node's peers set."""

    __slots__ = ("node",)

    def __init__(self, node: str) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"RemoteNode({self.node})"


def lock_key(text: str) -> int:
    """A signed 32-bit key for ``text`` (advisory locks take two int4 keys)."""
    return zlib.crc32(text.encode()) - (1 << 31)


class ClusterLocks:
    """Session-level advisory locks, all on one connection of this node: PostgreSQL frees them
    the moment the node dies (its session ends), so a dead node never holds a slot.

    Only ``pg_try_advisory_lock`` is used, so one connection serves every waiter and no two
    nodes can deadlock; a waiter polls with backoff (the lock's release is in another node)."""

    def __init__(self, url: str, node: str) -> None:
        self._url = url
        self._node = node
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._use = asyncio.Lock()  # one statement at a time on the connection
        # PostgreSQL's advisory locks are reentrant within a session: this node's own
        # holders must see a key it holds as taken.
        self._held: set[tuple[int, int]] = set()

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _query(self, sql: str, a: int, b: int) -> bool:
        async with self._use:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    application_name=f"huddle-{self._node}-locks",
                    connect_timeout=5,
                )
            cur = await self._conn.execute(sql, (a, b))
            row = await cur.fetchone()
            return bool(row and row[0])

    async def try_lock(self, a: int, b: int) -> bool:
        if (a, b) in self._held:
            return False
        self._held.add((a, b))  # claimed before the await: no other holder here races it
        taken = False
        try:
            taken = await self._query("SELECT pg_try_advisory_lock(%s, %s)", a, b)
        finally:
            if not taken:
                self._held.discard((a, b))
        return taken

    async def unlock(self, a: int, b: int) -> None:
        if (a, b) not in self._held:
            return
        self._held.discard((a, b))
        try:
            await self._query("SELECT pg_advisory_unlock(%s, %s)", a, b)
        except (psycopg.Error, OSError) as exc:  # the session is gone, and the lock with it
            log.warning("cluster: unlock (%d, %d) failed: %s", a, b, _line(exc))

    @asynccontextmanager
    async def held(self, a: int, b: int) -> AsyncIterator[None]:
        """Hold lock ``(a, b)`` for the block, waiting for it as long as it takes."""
        await self.first_free(a, [b])
        try:
            yield
        finally:
            await self.unlock(a, b)

    async def first_free(self, a: int, keys: list[int]) -> int:
        """Lock the first free one of ``(a, key)`` for ``keys``, waiting until one is."""
        delay = 0.01
        while True:
            for key in keys:
                if await self.try_lock(a, key):
                    return key
            await asyncio.sleep(delay)  # another node holds them all: poll with backoff
            delay = min(delay * 2, 0.25)

    @asynccontextmanager
    async def slot(
        self, room_id: int, kind: str, user: str, total: int, per_user: int
    ) -> AsyncIterator[None]:
        """One of ``total`` slots of ``room_id`` for ``kind``, and one of ``per_user`` of the
        user's: the AI gateway's fair-share limits, across every node of the cluster."""
        mine = [lock_key(f"{kind}/{user}/{i}") for i in range(per_user)]
        room = [lock_key(f"{kind}/room/{i}") for i in range(total)]
        while True:
            user_key = await self.first_free(room_id, mine)
            for key in room:
                if await self.try_lock(room_id, key):
                    try:
                        yield
                    finally:
                        await self.unlock(room_id, key)
                        await self.unlock(room_id, user_key)
                    return
            await self.unlock(room_id, user_key)  # let the others' users go first meanwhile
            await asyncio.sleep(0.05)  # the room is full on other nodes: poll


class Cluster:
    """``async with Cluster(...)``: listens, beats and relays presence until the block exits."""

    def __init__(
        self,
        url: str,
        rooms: Callable[[int], Room | None],
        loaded: Callable[[], Iterable[Room]],
        metrics: HubMetrics,
    ) -> None:
        self.node = uuid.uuid4().hex[:12]
        self._url = url
        self._room = rooms
        self._loaded = loaded
        self._metrics = metrics
        self.connected = asyncio.Event()
        self._heard: dict[str, float] = {}  # node -> monotonic time of its last notification
        self._owners: dict[str, RemoteNode] = {}
        self._outbox: asyncio.Queue[tuple[str, int, str, bytes]] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self.locks = ClusterLocks(url, self.node)

    async def __aenter__(self) -> Cluster:
        self._tasks = [
            asyncio.create_task(self._listen(), name="cluster listen"),
            asyncio.create_task(self._send(), name="cluster send"),
            asyncio.create_task(self._beat(), name="cluster beat"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._post("b", 0, b"")  # leaving: the others drop its presence now, not in 3 s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._outbox.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.locks.aclose()

    # -- what rooms call ------------------------------------------------------------------

    def publish(self, room_id: int, update: bytes) -> None:
        """Tell the other nodes what this node's peers changed in ``room_id``'s presence."""
        self._post("s", room_id, update)

    @asynccontextmanager
    async def exclusive(self, room_id: int, key: str) -> AsyncIterator[None]:
        """Hold ``key`` of ``room_id`` alone in the whole cluster for the block."""
        async with self.locks.held(room_id, lock_key(key)):
            yield

    def joined(self, room: Room) -> None:
        """A room was loaded: catch up with its log, and ask the others for its presence."""
        room.follow()
        self._post("q", room.room_id, b"")

    def _post(self, kind: str, room_id: int, data: bytes) -> None:
        try:
            self._outbox.put_nowait((kind, room_id, self.node, data))
        except asyncio.QueueFull:  # the database is away: presence is only ever the latest
            log.warning("cluster: presence backlog full; dropped a %s message", kind)

    # -- sending --------------------------------------------------------------------------

    async def _send(self) -> None:
        """One connection sends this node's notifications, in order; reconnects with backoff."""
        delay = 0.1
        while True:
            try:
                async with await self._connect("send") as conn:
                    delay = 0.1
                    while True:
                        kind, room_id, node, data = await self._outbox.get()
                        try:
                            await self._notify(conn, kind, room_id, node, data)
                        finally:
                            self._outbox.task_done()
            except (psycopg.Error, OSError) as exc:
                log.warning("cluster: sending failed (%s); retrying in %.1fs", _line(exc), delay)
            await asyncio.sleep(delay)  # backoff between reconnection attempts
            delay = min(delay * 2, 2.0)

    async def _notify(
        self, conn: psycopg.AsyncConnection[Any], kind: str, room_id: int, node: str, data: bytes
    ) -> None:
        if kind == "c":  # relay rows every node has long read
            await conn.execute(
                "DELETE FROM presence_relay WHERE ts < %s", (time.time() - RELAY_KEEP_SECONDS,)
            )
            return
        if kind == "s" and len(data) > INLINE_BYTES:
            row = await (
                await conn.execute(
                    "INSERT INTO presence_relay (ts, data) VALUES (%s, %s) RETURNING id",
                    (time.time(), data),
                )
            ).fetchone()
            kind, data = "r", str(row[0] if row else 0).encode()
        else:
            data = base64.b64encode(data)
        payload = f"{node}|{room_id}|{kind}|{data.decode()}"
        await conn.execute("SELECT pg_notify(%s, %s)", (PRESENCE_CHANNEL, payload))

    async def _beat(self) -> None:
        """Say this node is alive; drop the presence of nodes that stopped saying so."""
        cleaned = 0.0
        while True:
            self._post("h", 0, b"")
            now = time.monotonic()
            for node, heard in list(self._heard.items()):
                if now - heard > NODE_TIMEOUT:
                    log.warning("cluster: node %s is silent; dropping its presence", node)
                    self._forget(node)
            if now - cleaned > RELAY_KEEP_SECONDS and self.connected.is_set():
                cleaned = now
                self._post("c", 0, b"")
            await asyncio.sleep(BEAT_SECONDS)  # the heartbeat's period

    def _forget(self, node: str) -> None:
        self._heard.pop(node, None)
        owner = self._owners.pop(node, None)
        if owner is not None:
            for room in self._loaded():
                room.drop_remote(owner)

    # -- listening ------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await self._connect("listen") as conn:
                    await conn.execute(f"LISTEN {UPDATES_CHANNEL}")
                    await conn.execute(f"LISTEN {PRESENCE_CHANNEL}")
                    self.connected.set()
                    delay = 0.1
                    log.info("cluster: node %s listening", self.node)
                    for room in list(self._loaded()):  # what was missed while away
                        self.joined(room)
                    async for note in conn.notifies():
                        await self._on_notify(note.channel, note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("cluster: lost the database (%s); retrying in %.1fs", _line(exc), delay)
            self.connected.clear()
            await asyncio.sleep(delay)  # backoff between reconnection attempts
            delay = min(delay * 2, 2.0)

    async def _on_notify(self, channel: str, payload: str) -> None:
        if channel == UPDATES_CHANNEL:
            room_id, _, seq = payload.partition(":")
            room = self._room(int(room_id))
            if room is not None:
                room.follow(int(seq))
            return
        node, room_id_text, kind, data = payload.split("|", 3)
        if node == self.node:
            return
        self._heard[node] = time.monotonic()
        owner = self._owners.setdefault(node, RemoteNode(node))
        if kind == "b":
            self._forget(node)
            return
        room = self._room(int(room_id_text))
        if room is None:
            return
        if kind == "q":
            states = room.local_presence()
            if states is not None:
                self.publish(room.room_id, states)
        elif kind == "s":
            room.remote_presence(owner, base64.b64decode(data))
        elif kind == "r":
            update = await self._relayed(int(data))
            if update is not None:
                room.remote_presence(owner, update)

    async def _relayed(self, row_id: int) -> bytes | None:
        """A presence update too large for a notification, from its row (on a connection of
        its own: the listening one is busy listening)."""
        try:
            async with await self._connect("read") as conn:
                cur = await conn.execute("SELECT data FROM presence_relay WHERE id = %s", (row_id,))
                row = await cur.fetchone()
        except (psycopg.Error, OSError) as exc:
            log.warning("cluster: could not read presence row %d: %s", row_id, _line(exc))
            return None
        return None if row is None else bytes(row[0])

    async def _connect(self, role: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=f"huddle-{self.node}-{role}",
            connect_timeout=5,
        )


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
