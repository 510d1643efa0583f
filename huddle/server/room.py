"""A room: one Y.Doc, its peers and their presence.

An update from a peer is validated (decoded), committed to the store, and only then applied to
the room's doc and relayed. So the doc that answers a joiner's sync step 1 holds committed
updates only, and a hub killed at any instant has stored everything any peer was sent.

In a cluster (``huddle.server.cluster``) other nodes commit to the same room: the store numbers
a room's updates at commit, and the room keeps ``applied_seq``, the number up to which its doc
holds every update. Its own commits and what ``follow`` reads from the store both advance it;
an update is applied and relayed once, whichever way it arrives first.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Protocol

import pycrdt
from pycrdt import Doc, Text
from websockets.asyncio.server import ServerConnection, broadcast

from huddle.collab import schema, updates, wire
from huddle.server.auth import Grant
from huddle.server.config import Limits
from huddle.server.errors import CloseCode, ConnectionRejected, StoreUnavailable
from huddle.server.metrics import HubMetrics
from huddle.server.presence import Presence
from huddle.server.store import JournalEntry, Pending, RoomRecord, Store

log = logging.getLogger("huddle.room")

_RO_NOTICE = "read-only: this token cannot change the document; updates are dropped"
_CLOSING: set[asyncio.Future[None]] = set()  # closes under way (a task needs a reference)
_FOLLOW_PAGE = 256  # stored updates read at a time while following other nodes


class ClusterLink(Protocol):
    """What a room of a cluster node asks of the cluster (``huddle.server.cluster``)."""

    def publish(self, room_id: int, update: bytes) -> None:
        """Send this node's peers' presence changes to the other nodes."""

    def exclusive(self, room_id: int, key: str) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` alone in the whole cluster."""


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

    __slots__ = ("bucket", "grant", "label", "reader_updates", "ro_noticed", "ws")

    def __init__(self, ws: ServerConnection, grant: Grant, limits: Limits) -> None:
        self.ws = ws
        self.grant = grant
        self.bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
        self.reader_updates = TokenBucket(
            limits.reader_updates_per_second, limits.reader_update_burst
        )
        self.ro_noticed = False
        # Quoted: a name must never forge a log line (legacy tokens may hold any name).
        self.label = f"{grant.user!r}@{ws.remote_address[0] if ws.remote_address else '?'}"


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
        self.presence = Presence(limits)
        self._store = store
        self._limits = limits
        self._compact_every = compact_every
        self._metrics = metrics
        self.relay: ClusterLink | None = None  # set by a hub in a cluster
        self.applied_seq = record.next_seq - 1  # every update up to it is in the doc
        self._ahead: set[int] = set()  # own commits past applied_seq (others' come between)
        self._following: asyncio.Task[None] | None = None
        self._follow_again = False
        self._snapshot_bytes = len(record.snapshot or b"")
        self._log_bytes = sum(len(u) for u in record.log)
        self._inflight_bytes = 0
        self._since_compact = len(record.log)
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._compaction: asyncio.Task[None] | None = None
        self._creating: set[str] = set()
        self._hub_client_id = random.getrandbits(53) or 1  # see _write_file
        self._hub_writing = asyncio.Lock()
        # path -> monotonic time of its last committed change: the AI gateway's context files
        self.edited: dict[str, float] = {}
        self._applied = asyncio.Event()
        # Nesting levels of the doc's items, for the depth limit across updates: read from
        # the doc the first time an update's shared type hangs off an item outside it, then
        # kept up to date at the door (see _check_nesting). Most rooms never need it.
        self._nesting: updates.Nesting | None = None
        self._nesting_read: asyncio.Future[updates.Nesting] | None = None  # in a thread
        self._read_meanwhile: list[updates.Update] = []  # accepted while it was read
        self._unapplied: dict[int, bytes] = {}  # seq -> accepted update not in the doc yet
        # The doc's delete set (an update with no items), for readers' no-op updates:
        # (the revision it was read at, the update).
        self._revision = 0  # bumped whenever the doc changes
        self._deleted: tuple[int, bytes] | None = None
        # Stored updates are applied without the door's check (it was not always there): each
        # got through pycrdt.get_state on this same thread before it was committed, and that
        # recurses as apply_update does, to the same depth (about 26,000 nested values here),
        # so applying it cannot crash now.
        for update in ([record.snapshot] if record.snapshot else []) + record.log:
            try:
                self.doc.apply_update(update)
            except ValueError:
                log.error("room %s: skipped a stored update that does not decode", self.name)
        self._edits = schema.files(self.doc).observe_deep(self._on_files_changed)

    async def close(self) -> None:
        """Wait for what the room has in flight (commits, a nesting read, a compaction), then
        compact what is left since the last compaction."""
        await self._drained.wait()
        if self._nesting_read is not None:
            await asyncio.wait([self._nesting_read])
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
            if self.relay is not None:
                self.relay.publish(self.room_id, removal)

    # -- other nodes (a cluster) ---------------------------------------------------------

    def local_presence(self) -> bytes | None:
        """This node's peers' presence states, for a node that asks."""
        return self.presence.encode_all(lambda owner: isinstance(owner, Peer))

    def remote_presence(self, node: object, update: bytes) -> None:
        """Presence another node's peers changed; relayed to this node's peers."""
        try:
            entries = wire.decode_awareness(
                update, max_entries=1 << 16, max_depth=self._limits.max_awareness_depth
            )
        except wire.WireError as exc:
            log.error("room %s: presence from node %r does not decode: %s", self.name, node, exc)
            return
        relay = self.presence.apply_remote(node, entries, local=lambda o: isinstance(o, Peer))
        if relay is not None:
            self._send(self.peers, wire.encode(wire.AwarenessMessage(relay)))

    def drop_remote(self, node: object) -> None:
        """A node died or left: its peers' cursors go."""
        removal = self.presence.drop(node)
        if removal is not None:
            self._send(self.peers, wire.encode(wire.AwarenessMessage(removal)))

    async def follow_all(self) -> None:
        """Apply everything committed so far (by any node)."""
        self.follow()
        while self._following is not None:
            await asyncio.shield(self._following)

    def follow(self, upto: int | None = None) -> None:
        """Read and apply what other nodes committed after ``applied_seq`` (up to ``upto``, a
        number a doorbell announced; None: whatever is there)."""
        if upto is not None and upto <= self.applied_seq:
            return
        if self._following is not None:
            self._follow_again = True
            return
        self._following = asyncio.create_task(self._follow(), name=f"follow {self.name}")

    async def _follow(self) -> None:
        try:
            while True:
                self._follow_again = False
                while await self._follow_page():
                    pass
                if not self._follow_again:
                    return
        except StoreUnavailable as exc:  # the cluster link follows every room on reconnect
            log.warning("room %s: cannot read other nodes' updates now: %s", self.name, exc)
        except Exception:
            log.exception("room %s: following other nodes failed", self.name)
        finally:
            self._following = None

    async def _follow_page(self) -> bool:
        """Apply the next page of stored updates; whether there may be more."""
        after = self.applied_seq
        rows = await self._store.call(
            lambda db: db.updates_after(self.room_id, after, _FOLLOW_PAGE)
        )
        fresh: list[JournalEntry] = []
        for row in rows:
            if row.seq <= self.applied_seq:  # an own commit got there while this read
                continue
            if row.seq in self._ahead:
                self._ahead.discard(row.seq)
            else:
                fresh.append(row)
            self.applied_seq = row.seq
        if fresh:
            self._apply_followed(fresh)
        return len(rows) == _FOLLOW_PAGE

    def _apply_followed(self, rows: list[JournalEntry]) -> None:
        batch = [row.update for row in rows]
        merged = batch[0] if len(batch) == 1 else pycrdt.merge_updates(*batch)
        self._integrate(merged, batch)
        now = time.time()
        for row in rows:
            self._metrics.cross_node_lag.observe(max(0.0, now - row.ts))
            if self._nesting is not None or self._nesting_read is not None:
                self._record_nesting(row.update)
        self._send(self.peers, wire.encode(wire.SyncUpdate(merged)))
        self._log_bytes += sum(len(u) for u in batch)
        self._after_apply(len(rows))

    def _record_nesting(self, update: bytes) -> None:
        """Keep the door's nesting levels right for an update another node let in."""
        try:
            decoded = updates.decode(update, max_depth=1 << 30, deletes=False)
        except updates.UpdateError:
            return
        if self._nesting is not None:
            self._nesting.add(decoded)
        else:
            self._read_meanwhile.append(decoded)

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
                # A state that is not standard JSON (NaN, a lone surrogate, nesting past the
                # limit) closes this connection (4400), as any malformed frame does, with the
                # reason: JSON.stringify never writes NaN, a lone surrogate comes only from a
                # broken string, and relaying either would make stock clients' JSON.parse or
                # UTF-8 decoding throw. One past the byte limit closes it with 4413.
                limits = self._limits
                try:
                    entries = wire.decode_awareness(
                        payload,
                        max_entries=limits.max_awareness_clients,
                        max_depth=limits.max_awareness_depth,
                        max_state_bytes=limits.max_awareness_state_bytes,
                        held=self.presence.held,  # stock clients echo what they were sent
                    )
                except wire.StateTooLarge as exc:
                    raise ConnectionRejected(CloseCode.TOO_LARGE, str(exc)) from exc
                relay = self.presence.apply(peer, peer.grant.user, entries)
                if relay is not None:
                    self._send(self.peers - {peer}, wire.encode(wire.AwarenessMessage(relay)))
                    if self.relay is not None:
                        self.relay.publish(self.room_id, relay)
            case wire.QueryAwareness():
                states = self.presence.encode_all()
                if states is not None:
                    self._send([peer], wire.encode(wire.AwarenessMessage(states)))
            case wire.AuthDenied() | wire.HuddleMessage():
                raise wire.WireError(f"{type(message).__name__} is not handled by the room")

    async def _receive_update(self, peer: Peer, update: bytes) -> None:
        if update == wire.EMPTY_UPDATE:
            return
        if not peer.grant.can_edit and not peer.reader_updates.take():
            log.debug("room %s: %s sends updates too fast; dropped unread", self.name, peer.label)
            return
        # Read strictly and without recursion before pycrdt sees it: Yrs decodes nested values
        # recursively and a deep enough one overflows the native stack (a segfault).
        limit = self._limits.max_nesting_depth
        try:
            decoded = updates.decode(update, max_depth=limit, deletes=False)
        except updates.TooDeep as exc:
            raise ConnectionRejected(CloseCode.BAD_MESSAGE, f"update refused: {exc}") from exc
        if not peer.grant.can_edit:
            if self._changes_nothing(update, decoded):
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
        if self._nesting is None and self._hangs_off_the_doc(decoded):
            await self._read_nesting()
        if self.size_bytes + len(update) > self._limits.max_document_bytes:
            raise ConnectionRejected(CloseCode.TOO_LARGE, "document size limit reached")
        try:
            self._check_nesting(decoded)
        except updates.TooDeep as exc:
            raise ConnectionRejected(CloseCode.BAD_MESSAGE, f"update refused: {exc}") from exc
        await self._store.append(self._enqueue(peer.grant.user, update, sender=peer))

    def _check_nesting(self, update: updates.Update) -> None:
        """Refuse ``update`` if its shared types would nest deeper than the limit, counting the
        levels already in the doc or on their way to it; record its items' levels.

        Until a shared type hangs off an item the update does not hold itself (a file replaced
        with ``files.set``, a map nested in an existing map), the doc's levels are not needed:
        a file created in the root map is level 1 and keystrokes create no types. The first
        time one does, the caller reads them (:meth:`_read_nesting`), and from then on every
        accepted update is recorded."""
        limit = self._limits.max_nesting_depth
        nesting = self._nesting
        if nesting is not None:
            nesting.add(update, nesting.check(update, limit))
            return
        if any(block.kind == updates.TYPE for block in update.blocks):
            alone = updates.Nesting().levels(update, types_only=True)
            if updates.UNKNOWN in alone:  # the levels could not be read
                raise updates.UpdateError("a shared type's parent is not in the room")
            if max(alone) > limit:
                raise updates.TooDeep(f"shared types nest deeper than {limit} levels")
        if self._nesting_read is not None:
            self._read_meanwhile.append(update)

    @staticmethod
    def _hangs_off_the_doc(update: updates.Update) -> bool:
        """Whether a shared type in ``update`` hangs off an item the update does not hold."""
        if not any(block.kind == updates.TYPE for block in update.blocks):
            return False
        return updates.UNKNOWN in updates.Nesting().levels(update, types_only=True)

    async def _read_nesting(self) -> None:
        """Read the levels of the doc and of the updates on their way to it, once per room: a
        pass over the doc in a worker thread (seconds for a big fragmented room), so the event
        loop goes on meanwhile; updates accepted during it are recorded after it."""
        if self._nesting_read is None:
            sources = [self.doc.get_update(), *self._unapplied.values()]
            self._nesting_read = asyncio.ensure_future(
                asyncio.to_thread(_nesting_of, self.name, sources)
            )
            # Installed when read, even if the connection that asked has gone meanwhile.
            self._nesting_read.add_done_callback(self._install_nesting)
        self._install_nesting(await asyncio.shield(self._nesting_read))

    def _install_nesting(self, read: asyncio.Future[updates.Nesting] | updates.Nesting) -> None:
        if self._nesting is not None:
            return
        if isinstance(read, asyncio.Future):
            if read.cancelled() or read.exception() is not None:
                log.error("room %s: reading nesting levels failed: %r", self.name, read)
                self._nesting_read = None  # the next update that needs them reads again
                self._read_meanwhile.clear()
                return
            read = read.result()
        for update in self._read_meanwhile:
            read.add(update)
        self._read_meanwhile.clear()
        self._nesting = read

    def _changes_nothing(self, update: bytes, decoded: updates.Update) -> bool:
        """Whether the doc already holds all of ``update``: its items, and its deletions. A Yjs
        diff always carries the sender's whole delete set, so a reader syncing after a
        reconnect sends a non-empty update that changes nothing.

        Costs the update's size and the doc's delete set's, never a pass over the doc: its
        items against the doc's state vector, its deletions merged (in Yrs) into the doc's
        delete set, which is read once per change of the doc and kept. Yrs reads the update
        only after ``decoded`` showed nothing in it nests too deep."""
        state = self.doc.get_state()
        known = wire.decode_state_vector(state)
        if any(block.end > known.get(block.client, 0) for block in decoded.blocks):
            return False
        if self._deleted is None or self._deleted[0] != self._revision:
            self._deleted = (self._revision, self.doc.get_update(state))  # a pass over the doc
        deleted = self._deleted[1]
        if update == deleted:  # a pycrdt peer's reply is byte for byte the doc's delete set
            return True
        try:
            deletions = pycrdt.get_update(update, state)  # no items left: those are here
        except ValueError:
            return False
        return pycrdt.merge_updates(deleted, deletions) == deleted

    def _enqueue(
        self, user: str, update: bytes, sender: object, done: asyncio.Future[None] | None = None
    ) -> Pending:
        self._inflight_bytes += len(update)
        entry = Pending(self, self.room_id, 0, user, update, sender, done=done)  # numbered later
        self._unapplied[id(entry)] = update
        self._inflight += 1
        self._drained.clear()
        return entry

    async def create_file(self, user: str, path: str, content: str) -> bool:
        """Create ``files[path]`` unless it exists; False if it already did.

        The hub is the one place that can decide this without races: two editors opening the
        same new file at once must not both seed it (one Y.Map entry would replace the other).
        Waits until the creation is committed and relayed to every peer, the requester too.
        """
        if path in schema.files(self.doc) or path in self._creating:
            return False
        self._creating.add(path)
        exclusive = (
            nullcontext()
            if self.relay is None
            else self.relay.exclusive(self.room_id, f"create/{path}")
        )
        try:
            async with exclusive:  # in a cluster: no other node creates it meanwhile
                return await self._create_file(user, path, content)
        finally:
            self._creating.discard(path)

    async def _create_file(self, user: str, path: str, content: str) -> bool:
        async with self._hub_writing:
            if self.relay is not None:
                await self.follow_all()  # what other nodes committed before the lock was ours
                if path in schema.files(self.doc):
                    return False
            return await self._write_file(user, path, content)

    async def _write_file(self, user: str, path: str, content: str) -> bool:
        """The hub's own writes to the room (created files) come from one client id for as long
        as the room is loaded, one at a time (``_hub_writing``): a fresh id per file grew the
        room's state vector by an entry per file, and at about 4,900 files the state an editor
        sends with each completion passed its 64 KiB limit (found by benchmarks/quality.py).
        One at a time, as two writes from one id must not both take the next clock; random per
        load, so that nodes of a cluster, and loads after a restart, never share one."""
        scratch: Doc[Any] = Doc(client_id=self._hub_client_id)
        scratch.apply_update(self.doc.get_update())
        before = scratch.get_state()
        schema.files(scratch)[path] = Text(content)
        update = scratch.get_update(before)
        if self.size_bytes + len(update) > self._limits.max_document_bytes:
            raise ConnectionRejected(CloseCode.TOO_LARGE, "document size limit reached")
        if self._nesting is not None or self._nesting_read is not None:
            self._check_nesting(updates.decode(update, max_depth=1 << 30, deletes=False))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            await self._store.append(self._enqueue(user, update, sender=None, done=done))
            await done
        except BaseException:
            # It may yet have landed (a commit cut off): the next write must not reuse its
            # clock under the same id.
            self._hub_client_id = random.getrandbits(53) or 1
            raise
        return True

    # -- CommitSink ----------------------------------------------------------------------

    def committed(self, entries: list[Pending]) -> None:
        fresh = [e for e in entries if e.seq > self.applied_seq]  # not already followed in
        batch = [e.update for e in fresh]
        if batch:
            merged = batch[0] if len(batch) == 1 else pycrdt.merge_updates(*batch)
            self._integrate(merged, batch)
            senders = {id(e.sender) for e in fresh}
            skip = fresh[0].sender if len(senders) == 1 and fresh[0].sender is not None else None
            frame = wire.encode(wire.SyncUpdate(merged))
            self._send([p for p in self.peers if p is not skip], frame)
        for entry in fresh:
            if entry.seq == self.applied_seq + 1:
                self.applied_seq = entry.seq
            else:
                self._ahead.add(entry.seq)
        while self.applied_seq + 1 in self._ahead:
            self._ahead.discard(self.applied_seq + 1)
            self.applied_seq += 1
        if self._ahead:  # another node committed in between: read what it did
            self.follow()
        self._settle(entries, committed=True)
        for entry in entries:
            if entry.done is not None and not entry.done.done():
                entry.done.set_result(None)
        self._after_apply(len(entries))

    def _integrate(self, merged: bytes, batch: list[bytes]) -> None:
        self._revision += 1
        try:
            self.doc.apply_update(merged)
        except ValueError:
            for update in batch:  # isolate the one that does not integrate
                try:
                    self.doc.apply_update(update)
                except ValueError:
                    log.error("room %s: a committed update does not integrate", self.name)

    def _after_apply(self, count: int) -> None:
        self._applied.set()
        self._applied = asyncio.Event()
        self._since_compact += count
        if self._since_compact >= self._compact_every and self._compaction is None:
            self._compaction = asyncio.create_task(self._compact(), name=f"compact {self.name}")

    def failed(self, entries: list[Pending], error: Exception) -> None:
        log.error("room %s: could not store %d updates: %s", self.name, len(entries), error)
        for entry in entries:
            sender = entry.sender
            if isinstance(sender, Peer):  # it still holds its edits and re-sends them on reconnect
                if isinstance(error, StoreUnavailable):  # say why, so it comes back later
                    code, reason = CloseCode.STORE_UNAVAILABLE, "the store is unreachable"
                    closing = asyncio.ensure_future(sender.ws.close(code, reason))
                    _CLOSING.add(closing)
                    closing.add_done_callback(_CLOSING.discard)
                else:
                    sender.ws.transport.abort()
            if entry.done is not None and not entry.done.done():
                entry.done.set_exception(error)
        self._settle(entries, committed=False)

    def _settle(self, entries: list[Pending], *, committed: bool) -> None:
        for entry in entries:
            self._unapplied.pop(id(entry), None)
        size = sum(len(e.update) for e in entries)
        self._inflight_bytes -= size
        if committed:
            self._log_bytes += size
        self._inflight -= len(entries)
        if self._inflight == 0:
            self._drained.set()

    async def _compact(self) -> None:
        covered, covered_bytes = self._since_compact, self._log_bytes
        seq = self.applied_seq
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


def _nesting_of(room: str, sources: list[bytes]) -> updates.Nesting:
    """The nesting levels of ``sources`` applied in order (runs in a worker thread)."""
    nesting = updates.Nesting()
    for update in sources:
        try:  # values nested past the limit were stored before it existed: read them all
            nesting.add(updates.decode(update, max_depth=1 << 30, deletes=False))
        except updates.UpdateError as exc:  # shared types below its items will be refused
            log.warning("room %s: cannot read nesting levels: %s", room, exc)
    log.info("room %s: read nesting levels (deepest %d)", room, nesting.deepest)
    return nesting
