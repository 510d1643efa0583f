"""The hub: a y-websocket server holding durable, access-controlled rooms."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import ssl
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from huddle import protocol
from huddle.collab import wire
from huddle.protocol import HubMethod, RpcError, room_url, web_url
from huddle.server import datadir, rpc
from huddle.server.ai import AiService
from huddle.server.audit import AuditLog
from huddle.server.auth import DELEGATE, MAX_USER_NAME, Grant, Role, TokenSigner, name_problem
from huddle.server.cluster import Cluster
from huddle.server.config import HubConfig
from huddle.server.context import RoomContext
from huddle.server.errors import CloseCode, ConnectionRejected, StoreUnavailable
from huddle.server.metrics import HubMetrics
from huddle.server.postgres import PostgresDatabase
from huddle.server.room import Peer, Room
from huddle.server.store import Database, RoomRecord, SqlDatabase, Store
from huddle.server.summaries import Summaries
from huddle.server.web import WebClient

log = logging.getLogger("huddle.hub")

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~@+-]*(/[A-Za-z0-9._~@+-]+)*")
MAX_ROOM_NAME = 200


def parse_room(path: str) -> tuple[str, dict[str, list[str]]]:
    """Room name from the raw request target (the query string never changes the room) and the
    query. The target is split by hand: ``urlsplit`` reads ``//evil.example/webapp`` as a host
    and the room ``webapp``, so a path must start with exactly one slash."""
    raw, _, query = path.partition("?")
    if not raw.startswith("/") or raw.startswith("//"):
        raise ConnectionRejected(CloseCode.BAD_MESSAGE, "invalid room path")
    name = unquote(raw[1:]).removesuffix("/")
    if len(name) > MAX_ROOM_NAME or not ROOM_NAME.fullmatch(name) or ".." in name.split("/"):
        raise ConnectionRejected(CloseCode.BAD_MESSAGE, "invalid room name")
    return name, parse_qs(query)


def _page_room(target: str) -> str | None:
    """The room whose page a browser asks for, or None when the path names no room."""
    try:
        return parse_room(target)[0]
    except ConnectionRejected:
        return None


def bearer_token(query: dict[str, list[str]], headers: Headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    values = query.get("token")
    return values[0] if values else None


class _RoutineAtDebug(logging.Filter):
    """A load balancer asks /healthz every few seconds, and websockets logs each answer and
    each connection's open and close at INFO, with nothing that says who: that buries the log.
    Those go to DEBUG (the hub logs who joined and left which room at INFO itself); refused
    upgrades and every other answer keep their level."""

    def filter(self, record: logging.LogRecord) -> bool:
        routine = record.msg in ("connection open", "connection closed") or (
            record.msg == "HTTP response sent (%d %s)"
            and isinstance(record.args, tuple)
            and record.args[:1] == (200,)
        )
        if not routine or record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_WS_LOG = logging.getLogger("huddle.ws")
_WS_LOG.addFilter(_RoutineAtDebug())


async def _create_file(
    ctx: RoomContext, params: protocol.CreateFileParams, call: rpc.Call
) -> protocol.CreateFileResult:
    """Seed ``files[path]`` with ``content`` exactly once, however many editors ask at once."""
    if not ctx.grant.can_edit:
        raise RpcError("forbidden", "read-only members cannot add files")
    if not valid_path(params.path):
        raise RpcError("invalid_params", "path must be a relative POSIX path")
    created = await ctx.room.create_file(ctx.grant.user, params.path, params.content)
    return protocol.CreateFileResult(created=created)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])


def valid_path(path: str) -> bool:
    parts = path.split("/")
    return 0 < len(path) <= 1024 and "" not in parts and "." not in parts and ".." not in parts


class Hub:
    """``async with Hub(config) as hub:`` serves until the block exits."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.metrics = HubMetrics()
        datadir.private_dir(config.data_dir)
        self._lock = datadir.HubLock(config.data_dir)
        self._rooms: dict[str, Room] = {}
        self._by_id: dict[int, Room] = {}
        url = config.store.url
        # In a cluster the rooms and the signing key live in PostgreSQL; the data directory
        # keeps this node's own files (its lock, the model audit log).
        self.cluster: Cluster | None = None
        open_db: Callable[[], SqlDatabase]
        if url is None:
            self.signer = TokenSigner.for_data_dir(config.data_dir)
            data_dir, durability = config.data_dir, config.store.durability
            open_db = lambda: Database.in_dir(data_dir, durability)  # noqa: E731
        else:
            self.signer = TokenSigner(_cluster_key(url))
            self.cluster = Cluster(url, self._by_id.get, self._rooms.values, self.metrics)
            node = self.cluster.node
            open_db = lambda: PostgresDatabase(url, node=node)  # noqa: E731
        self.store = Store(
            open_db,
            config.store,
            config.limits.max_pending_updates,
            on_commit_seconds=self.metrics.on_commit,
        )
        self._rooms_lock = asyncio.Lock()
        self._idle: dict[str, asyncio.Task[None]] = {}
        self._server: Server | None = None
        self._stopped = asyncio.Event()
        # Revocation by key: set (and replaced) when hub.key changes on disk; every connection
        # admitted with the old key waits on the event of its key.
        self._key_id = self.signer.key_id
        self._key_revoked = asyncio.Event()
        self._exit = AsyncExitStack()  # what __aexit__ undoes, filled by __aenter__
        self.audit = AuditLog(config.data_dir, include_content=config.llm.audit_content)
        self.ai = AiService(
            config.llm, self.signer.derive("llm-cache-salt"), self.metrics, self.audit
        )
        self.summaries = Summaries(self.ai)
        self.web = WebClient()  # the browser client's page and assets (huddle/server/web)
        self.methods: dict[HubMethod, rpc.Handler] = {
            HubMethod.INVITE: self._invite,
            HubMethod.CREATE_FILE: _create_file,
            HubMethod.COMPLETE: self.ai.complete,
            HubMethod.COMPLETION_OUTCOME: self.ai.completion_outcome,
            HubMethod.SUMMARIZE: self.summaries.summarize,
        }

    # -- requests ------------------------------------------------------------------------

    async def _invite(
        self, ctx: RoomContext, params: protocol.InviteParams, call: rpc.Call
    ) -> protocol.InviteResult:
        """A join link for this room. An invite never outranks its minter (editors may invite
        editors or readers, readers nobody), never outlives the minter's token, and names the
        minter: the invited name is qualified by the minter's, ``ann/bob`` (bob, invited by ann),
        so an editor cannot mint a token for another member's name, and the journal, history and
        presence show who let the guest in."""
        minter = ctx.grant
        if not minter.can_edit:
            raise RpcError("forbidden", "read-only members cannot invite")
        problem = name_problem(params.user)
        if problem is None and DELEGATE in params.user:
            problem = f"a user name cannot contain {DELEGATE!r} (it separates minter and guest)"
        if problem is not None:
            raise RpcError("invalid_params", problem)
        user = f"{minter.user}{DELEGATE}{params.user}"
        if len(user) > MAX_USER_NAME:
            raise RpcError("invalid_params", "this chain of invites is too long")
        if (lapsed := self.lapsed(minter)) is not None:  # its connection is being closed
            raise RpcError("forbidden", lapsed.reason)
        ttl = timedelta(seconds=params.ttl_seconds)
        token = self.signer.issue(
            ctx.room.name, user, Role(params.role), ttl, not_after=minter.expires_at, by=minter.user
        )
        grant = self.signer.verify(token, ctx.room.name)
        log.info(
            "room %s: %r invited %r as %s until %s",
            ctx.room.name,
            minter.user,
            user,
            params.role,
            grant.expires_at.isoformat(timespec="seconds"),
        )
        return protocol.InviteResult(
            url=room_url(self.url, ctx.room.name, token),
            hub=self.url,
            room=ctx.room.name,
            token=token,
            role=params.role,
            user=user,
            invited_by=minter.user,
            expires_at=grant.expires_at.isoformat(timespec="seconds"),
            web_url=web_url(self.url, ctx.room.name, token),
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Hub:
        async with AsyncExitStack() as stack:
            stack.enter_context(self._lock)  # DataDirBusy: another hub writes this store
            datadir.check(self.config.data_dir)
            await stack.enter_async_context(self.store)
            if self.cluster is not None:
                await stack.enter_async_context(self.cluster)
                self.ai.cluster_slots = self.cluster.locks
            stack.push_async_callback(self._close_rooms)  # after serving stops, before the store
            self._server = await serve(
                self._serve,
                self.config.host,
                self.config.port,
                ssl=self._ssl_context(),
                process_request=self._http,
                max_size=self.config.limits.max_message_bytes,
                compression=None,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_interval,
                max_queue=64,
                logger=_WS_LOG,
            )
            stack.push_async_callback(self._stop_serving, self._server)
            self._lock.publish(self.url)
            key_watch = asyncio.create_task(self._watch_key(), name="hub.key watch")
            stack.push_async_callback(_cancelled, key_watch)
            self._exit = stack.pop_all()
        where = self.config.data_dir if self.cluster is None else "PostgreSQL"
        log.info("hub listening on %s (data in %s)", self.url, where)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # In the reverse order of starting: the key watch, serving, the rooms (and the model),
        # the store, the data directory's lock.
        await self._exit.aclose()

    @staticmethod
    async def _stop_serving(server: Server) -> None:
        server.close()
        await server.wait_closed()

    async def _close_rooms(self) -> None:
        for task in self._idle.values():
            task.cancel()
        await self.ai.aclose()
        async with self._rooms_lock:
            for room in self._rooms.values():
                await room.close()
            self._rooms.clear()
            self._by_id.clear()
            self.metrics.rooms.set(0)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("hub is not running")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return self.config.url(self.port)

    # -- HTTP endpoints ------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            problem = await self._health_problem()
            if problem is not None:
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{problem}\n")
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            body = self.metrics.render()
            headers = Headers([("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return Response(200, "OK", headers, body)
        return self.web.respond(request, _page_room)  # None: a websocket upgrade, served next

    async def _health_problem(self) -> str | None:
        """Why this node should get no clients now (a load balancer asks), or None."""
        if self.cluster is None:
            return None
        if not self.cluster.connected.is_set():
            return "not listening to the cluster's database"
        try:
            async with asyncio.timeout(2.0):
                await self.store.call(lambda db: db.ping())
        except (StoreUnavailable, TimeoutError) as exc:
            self.metrics.store_available.set(0)
            return f"the database does not answer: {exc or 'timeout'}"
        self.metrics.store_available.set(1)
        return None

    # -- rooms ---------------------------------------------------------------------------

    async def _acquire(self, name: str) -> Room:
        async with self._rooms_lock:
            idle = self._idle.pop(name, None)
            if idle is not None:
                idle.cancel()
            room = self._rooms.get(name)
            if room is None:
                limit = self.config.limits.max_rooms

                def load(db: SqlDatabase) -> RoomRecord | None:
                    return db.load_room(name, create=db.room_count() < limit)

                try:
                    record = await self.store.call(load)
                except StoreUnavailable as exc:
                    raise ConnectionRejected(CloseCode.STORE_UNAVAILABLE, str(exc)) from exc
                if record is None:
                    raise ConnectionRejected(CloseCode.SERVER_BUSY, "room limit reached")
                room = Room(
                    record,
                    self.store,
                    self.config.limits,
                    self.config.store.compact_every,
                    self.metrics,
                )
                self._rooms[name] = room
                self._by_id[room.room_id] = room
                if self.cluster is not None:
                    room.relay = self.cluster
                    self.cluster.joined(room)
                self.metrics.rooms.set(len(self._rooms))
            if len(room.peers) >= self.config.limits.max_connections_per_room:
                raise ConnectionRejected(CloseCode.SERVER_BUSY, "room is full")
            return room

    def _release(self, room: Room) -> None:
        if room.peers or room.name in self._idle:
            return
        self._idle[room.name] = asyncio.create_task(self._unload_when_idle(room))

    async def _unload_when_idle(self, room: Room) -> None:
        await asyncio.sleep(self.config.room_idle_seconds)  # a grace period, not a guess
        async with self._rooms_lock:
            self._idle.pop(room.name, None)
            if not room.peers and self._rooms.get(room.name) is room:
                del self._rooms[room.name]
                self._by_id.pop(room.room_id, None)
                await room.close()
                self.metrics.rooms.set(len(self._rooms))

    def room(self, name: str) -> Room | None:
        """The loaded room called ``name``, if any (for tests and the AI gateway)."""
        return self._rooms.get(name)

    # -- revocation ----------------------------------------------------------------------

    def _check_key(self) -> None:
        """Pick up a rotated (or deleted) hub.key: tokens of the old key are refused from now
        on, and the connections admitted with it are told to close."""
        self.signer.refresh()
        if self.signer.key_id == self._key_id:
            return
        log.warning("the signing key changed: tokens signed with the old key are revoked")
        self._key_id = self.signer.key_id
        self._key_revoked.set()
        self._key_revoked = asyncio.Event()

    async def _watch_key(self) -> None:
        while True:
            await asyncio.sleep(self.config.key_check_seconds)  # a polling period, not a guess
            if self.cluster is not None:  # `huddle keys rotate --store` changed it for all
                try:
                    key = await self.store.call(_signing_key)
                except StoreUnavailable:
                    continue
                self.signer.use_key(key)
            self._check_key()

    def lapsed(self, grant: Grant) -> ConnectionRejected | None:
        """Why a grant admitted earlier no longer holds (expired, or its key revoked); None
        while it does."""
        if grant.key_id != self._key_id:
            return ConnectionRejected(CloseCode.UNAUTHORIZED, "token revoked")
        if grant.expires_at.timestamp() <= time.time():
            return ConnectionRejected(CloseCode.UNAUTHORIZED, "token expired")
        return None

    async def _guard(self, peer: Peer, room: Room) -> None:
        """Close the connection (4401) when its token expires or its key is revoked. Owned by
        the connection's ``_serve``, which cancels it when the connection ends."""
        if peer.grant.key_id == self._key_id:
            revoked = self._key_revoked
            remaining = peer.grant.expires_at.timestamp() - time.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(remaining, 0.0)):
                    await revoked.wait()
        rejection = self.lapsed(peer.grant) or ConnectionRejected(
            CloseCode.UNAUTHORIZED, "token expired"
        )
        await self._close(peer, room, rejection)

    async def _close(self, peer: Peer, room: Room, rejection: ConnectionRejected) -> None:
        if peer.ws.state is not State.OPEN:  # already closing (the guard and a read raced):
            await peer.ws.wait_closed()  # let that close finish (it has its own timeout)
            return
        log.warning("closing %s in %s: %s", peer.label, room.name, rejection.reason)
        self.metrics.rejected.labels(rejection.code.name.lower()).inc()
        await peer.ws.close(rejection.code, rejection.reason[:120])

    # -- connections ---------------------------------------------------------------------

    async def _admit(self, ws: ServerConnection) -> tuple[Grant, Room]:
        name, query = parse_room(ws.request.path if ws.request else "/")
        headers = ws.request.headers if ws.request else Headers()
        self._check_key()
        grant = self.signer.verify(bearer_token(query, headers), name)
        return grant, await self._acquire(name)

    async def _serve(self, ws: ServerConnection) -> None:
        try:
            grant, room = await self._admit(ws)
        except ConnectionRejected as rejection:
            log.warning("refused a connection from %s: %s", ws.remote_address, rejection.reason)
            self.metrics.rejected.labels(rejection.code.name.lower()).inc()
            await ws.close(rejection.code, rejection.reason)
            return
        peer = Peer(ws, grant, self.config.limits)
        endpoint = rpc.RpcEndpoint(
            self.methods,
            RoomContext(room, peer.grant, self.store),
            lambda frame: room.send_to(peer, frame),
            self.config.limits.max_requests_per_connection,
        )
        self.metrics.connections.inc()
        room.join(peer)
        invited = "" if grant.invited_by is None else f" (invited by {grant.invited_by!r})"
        log.info("%s joined %s as %s%s", peer.label, room.name, grant.role.value, invited)
        guard = asyncio.create_task(self._guard(peer, room), name=f"token guard {peer.label}")
        try:
            await self._read(peer, room, endpoint)
        except ConnectionRejected as rejection:
            await self._close(peer, room, rejection)
        except ConnectionClosed:
            pass
        finally:
            guard.cancel()
            await asyncio.wait([guard])
            await endpoint.aclose()
            room.leave(peer)
            self.metrics.connections.dec()
            log.info("%s left %s", peer.label, room.name)
            self._release(room)
            await self._last_seen(room.name, grant.user)

    async def _last_seen(self, room: str, user: str) -> None:
        """A catch-up starts, by default, where the user's last connection ended."""
        try:
            await self.store.set_last_seen(room, user, time.time())
        except Exception as exc:  # the hub is closing, or the disk failed: not worth a crash
            log.warning("could not record when %r left %s: %s", user, room, exc)

    async def _read(self, peer: Peer, room: Room, endpoint: rpc.RpcEndpoint) -> None:
        counters = self.metrics
        async for frame in peer.ws:
            if isinstance(frame, str):
                raise ConnectionRejected(CloseCode.BAD_MESSAGE, "text frames are not y-websocket")
            counters.bytes_in.inc(len(frame))
            if (expired := self.lapsed(peer.grant)) is not None:
                raise expired  # whatever arrives after expiry or revocation is refused
            if not peer.bucket.take():
                raise ConnectionRejected(CloseCode.RATE_LIMITED, "message rate limit exceeded")
            try:
                message = wire.decode(frame)
                counters.message_in(type(message)).inc()
                if isinstance(message, wire.HuddleMessage):
                    endpoint.receive(message.payload)
                else:
                    await room.receive(peer, message)
            except wire.WireError as exc:
                raise ConnectionRejected(
                    CloseCode.BAD_MESSAGE, f"malformed message: {exc}"
                ) from exc


def _signing_key(db: SqlDatabase) -> bytes:
    assert isinstance(db, PostgresDatabase)  # a cluster's store
    return db.signing_key()


def _cluster_key(url: str) -> bytes:
    """The cluster's signing key, read once at start (a node that cannot reach its database
    cannot serve anyone: say so now)."""
    db = PostgresDatabase(url, node="start")
    try:
        return db.signing_key()
    finally:
        db.close()
