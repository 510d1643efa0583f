"""A room: one Y.Doc, its peers and their presence.

An update from a peer is validated (decoded), committed to the store, and only then applied to
the room's doc and relayed. So the doc that answers a joiner's sync step 1 holds committed
updates only, and a hub killed at any instant has stored everything any peer was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Any

import pycrdt
from pycrdt import Doc, Text
from websockets.asyncio.server import ServerConnection, broadcast

from huddle.collab import schema, wire
from huddle.server.auth import Grant
from huddle.server.config import Limits
from huddle.server.errors import CloseCode, ConnectionRejected
from huddle.server.metrics import HubMetrics
from huddle.server.presence import Presence
from huddle.server.store import Pending, RoomRecord, Store

log = logging.getLogger("huddle.room")

_RO_NOTICE = "read-only: this token cannot change the document; updates are dropped"


class TokenBucket:
    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Peer:
    """One authenticated connection in a room."""

    __slots__ = ("bucket", "grant", "label", "ro_noticed", "ws")

    def __init__(self, ws: ServerConnection, grant: Grant, limits: Limits) -> None:
        self.ws = ws
        self.grant = grant
        self.bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
        self.ro_noticed = False
        self.label = f"{grant.user}@{ws.remote_address[0] if ws.remote_address else '?'}"


class Room:
    def __init__(
        self,
        record: RoomRecord,
        store: Store,
        limits: Limits,
        compact_every: int,
        metrics: HubMetrics,
    ) -> None:
        self.name = record.name
        self.room_id = record.room_id
        self.doc: Doc[Any] = Doc()
        self.peers: set[Peer] = set()
        self.presence = Presence()
        self._store = store
        self._limits = limits
        self._compact_every = compact_every
        self._metrics = metrics
        self._next_seq = record.next_seq
        self._committed_seq = record.next_seq - 1
        self._snapshot_bytes = len(record.snapshot or b"")
        self._log_bytes = sum(len(u) for u in record.log)
        self._inflight_bytes = 0
        self._since_compact = len(record.log)
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._compaction: asyncio.Task[None] | None = None
        self._creating: set[str] = set()
        # path -> monotonic time of its last committed change: the AI gateway's context files
        self.edited: dict[str, float] = {}
        self._applied = asyncio.Event()
        for update in ([record.snapshot] if record.snapshot else []) + record.log:
            try:
                self.doc.apply_update(update)
            except ValueError:
                log.error("room %s: skipped a stored update that does not decode", self.name)
        self._edits = schema.files(self.doc).observe_deep(self._on_files_changed)

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._drained.wait()
        while self._compaction is not None:
            await self._compaction
        if self._since_compact:
            await self._compact()

    def _on_files_changed(self, events: list[Any]) -> None:
        now = time.monotonic()
        for event in events:
            if event.path:
                self.edited[str(event.path[0])] = now
            else:
                for key in getattr(event, "keys", None) or ():
                    self.edited[str(key)] = now

    async def caught_up(self, client_id: int, clock: int, *, within: float) -> bool:
        """Wait until the doc holds ``client_id``'s updates up to ``clock`` (exclusive), which a
        peer's committed-but-not-yet-applied edits reach within a commit; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while wire.decode_state_vector(self.doc.get_state()).get(client_id, 0) < clock:
            applied = self._applied
            try:
                async with asyncio.timeout_at(deadline):
                    await applied.wait()
            except TimeoutError:
                return False
        return True

    # -- peers ---------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        self.peers.add(peer)
        self._send([peer], wire.encode(wire.SyncStep1(self.doc.get_state())))
        states = self.presence.encode_all()
        if states is not None:
            self._send([peer], wire.encode(wire.AwarenessMessage(states)))

    def leave(self, peer: Peer) -> None:
        self.peers.discard(peer)
        removal = self.presence.drop(peer)
        if removal is not None:
            self._send(self.peers, wire.encode(wire.AwarenessMessage(removal)))

    def send_to(self, peer: Peer, frame: bytes) -> None:
        self._send([peer], frame)

    def _send(self, peers: set[Peer] | list[Peer], frame: bytes) -> None:
        """Write ``frame`` to every open peer now; a peer whose buffer is full is cut off."""
        targets: list[ServerConnection] = []
        for peer in peers:
            transport = peer.ws.transport
            if transport.is_closing():
                continue
            if transport.get_write_buffer_size() > self._limits.max_send_buffer_bytes:
                log.warning("room %s: %s is too slow, disconnecting", self.name, peer.label)
                self._metrics.rejected.labels("slow_consumer").inc()
                transport.abort()
                continue
            targets.append(peer.ws)
        if targets:
            broadcast(targets, frame)
            self._metrics.messages_out.inc(len(targets))
            self._metrics.bytes_out.inc(len(frame) * len(targets))

    # -- messages ------------------------------------------------------------------------

    async def receive(self, peer: Peer, message: wire.Message) -> None:
        match message:
            case wire.SyncStep1(state_vector):
                try:
                    update = self.doc.get_update(state_vector)
                except ValueError as exc:
                    raise wire.WireError("sync step 1 carries an invalid state vector") from exc
                self._send([peer], wire.encode(wire.SyncStep2(update)))
            case wire.SyncStep2(update) | wire.SyncUpdate(update):
                await self._receive_update(peer, update)
            case wire.AwarenessMessage(payload):
                entries = wire.decode_awareness(
                    payload, max_entries=self._limits.max_awareness_clients
                )
                accepted = self.presence.apply(peer, entries, self._limits.max_awareness_clients)
                if accepted:
                    relay = wire.encode(wire.AwarenessMessage(wire.encode_awareness(accepted)))
                    self._send(self.peers - {peer}, relay)
            case wire.QueryAwareness():
                states = self.presence.encode_all()
                if states is not None:
                    self._send([peer], wire.encode(wire.AwarenessMessage(states)))
            case wire.AuthDenied() | wire.HuddleMessage():
                raise wire.WireError(f"{type(message).__name__} is not handled by the room")

    async def _receive_update(self, peer: Peer, update: bytes) -> None:
        if update == wire.EMPTY_UPDATE:
            return
        if not peer.grant.can_edit:
            if _changes_nothing(self.doc, update):
                return  # a reader's sync reply on reconnect: everything in it is here already
            self._metrics.dropped_updates.inc()
            log.info("room %s: dropped an update from read-only %s", self.name, peer.label)
            if not peer.ro_noticed:
                peer.ro_noticed = True
                self._send([peer], wire.encode(wire.AuthDenied(_RO_NOTICE)))
            return
        try:
            pycrdt.get_state(update)
        except ValueError as exc:
            raise wire.WireError(f"invalid update: {exc}") from exc
        if self.size_bytes + len(update) > self._limits.max_document_bytes:
            raise ConnectionRejected(CloseCode.TOO_LARGE, "document size limit reached")
        await self._store.append(self._enqueue(peer.grant.user, update, sender=peer))

    def _enqueue(
        self, user: str, update: bytes, sender: object, done: asyncio.Future[None] | None = None
    ) -> Pending:
        self._inflight_bytes += len(update)
        seq = self._next_seq
        self._next_seq += 1
        self._inflight += 1
        self._drained.clear()
        return Pending(self, self.room_id, seq, user, update, sender, done=done)

    async def create_file(self, user: str, path: str, content: str) -> bool:
        """Create ``files[path]`` unless it exists; False if it already did.

        The hub is the one place that can decide this without races: two editors opening the
        same new file at once must not both seed it (one Y.Map entry would replace the other).
        Waits until the creation is committed and relayed to every peer, the requester too.
        """
        if path in schema.files(self.doc) or path in self._creating:
            return False
        self._creating.add(path)
        try:
            scratch: Doc[Any] = Doc()
            scratch.apply_update(self.doc.get_update())
            before = scratch.get_state()
            schema.files(scratch)[path] = Text(content)
            update = scratch.get_update(before)
            if self.size_bytes + len(update) > self._limits.max_document_bytes:
                raise ConnectionRejected(CloseCode.TOO_LARGE, "document size limit reached")
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._store.append(self._enqueue(user, update, sender=None, done=done))
            await done
            return True
        finally:
            self._creating.discard(path)

    # -- CommitSink ----------------------------------------------------------------------

    def committed(self, entries: list[Pending]) -> None:
        updates = [e.update for e in entries]
        merged = updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)
        try:
            self.doc.apply_update(merged)
        except ValueError:
            for update in updates:  # isolate the one that does not integrate
                try:
                    self.doc.apply_update(update)
                except ValueError:
                    log.error("room %s: a committed update does not integrate", self.name)
        senders = {id(e.sender) for e in entries}
        skip = entries[0].sender if len(senders) == 1 and entries[0].sender is not None else None
        self._send([p for p in self.peers if p is not skip], wire.encode(wire.SyncUpdate(merged)))
        self._committed_seq = entries[-1].seq
        self._applied.set()
        self._applied = asyncio.Event()
        self._settle(entries, committed=True)
        for entry in entries:
            if entry.done is not None and not entry.done.done():
                entry.done.set_result(None)
        self._since_compact += len(entries)
        if self._since_compact >= self._compact_every and self._compaction is None:
            self._compaction = asyncio.create_task(self._compact(), name=f"compact {self.name}")

    def failed(self, entries: list[Pending], error: Exception) -> None:
        log.error("room %s: could not store %d updates: %s", self.name, len(entries), error)
        for entry in entries:
            sender = entry.sender
            if isinstance(sender, Peer):  # it still holds its edits and re-sends them on reconnect
                sender.ws.transport.abort()
            if entry.done is not None and not entry.done.done():
                entry.done.set_exception(error)
        self._settle(entries, committed=False)

    def _settle(self, entries: list[Pending], *, committed: bool) -> None:
        size = sum(len(e.update) for e in entries)
        self._inflight_bytes -= size
        if committed:
            self._log_bytes += size
        self._inflight -= len(entries)
        if self._inflight == 0:
            self._drained.set()

    async def _compact(self) -> None:
        covered, covered_bytes = self._since_compact, self._log_bytes
        seq = self._committed_seq
        state = self.doc.get_update()
        try:
            await self._store.compact(self.room_id, seq, state)
            self._since_compact -= covered
            self._log_bytes -= covered_bytes
            self._snapshot_bytes = len(state)
        except Exception:
            log.exception("room %s: compaction failed", self.name)
            self._compaction = None
            return
        # Updates committed while this ran may already be due: compact again now rather than
        # waiting for the next commit, which may never come.
        if self._since_compact >= self._compact_every:
            self._compaction = asyncio.create_task(self._compact(), name=f"compact {self.name}")
        else:
            self._compaction = None

    @property
    def size_bytes(self) -> int:
        return self._snapshot_bytes + self._log_bytes + self._inflight_bytes


def _changes_nothing(doc: pycrdt.Doc[Any], update: bytes) -> bool:
    """Whether ``doc`` already holds all of ``update``: its items, and its deletions. A Yjs
    diff always carries the sender's whole delete set, so a reader syncing after a reconnect
    sends a non-empty update that changes nothing. One pass over ``doc``'s items (to list its
    deletions); only readers' updates pay it."""
    state = doc.get_state()
    try:
        new = pycrdt.get_update(update, state)  # the items ``doc`` lacks, and every deletion
    except ValueError:
        return False
    deletions = doc.get_update(state)  # no items: ``doc``'s own delete set
    return pycrdt.merge_updates(deletions, new) == deletions
