"""The hub: a y-websocket server holding durable, access-controlled rooms."""

from __future__ import annotations

import asyncio
import http
import logging
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from huddle.collab import wire
from huddle.server import rpc
from huddle.server.ai import AiService
from huddle.server.audit import AuditLog
from huddle.server.auth import Grant, Role, TokenSigner
from huddle.server.client import room_url
from huddle.server.config import HubConfig
from huddle.server.errors import CloseCode, ConnectionRejected
from huddle.server.metrics import HubMetrics
from huddle.server.room import Peer, Room
from huddle.server.store import Database, RoomRecord, Store
from huddle.server.summaries import Summaries

log = logging.getLogger("huddle.hub")

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~@+-]*(/[A-Za-z0-9._~@+-]+)*")
MAX_ROOM_NAME = 200


def parse_room(path: str) -> tuple[str, dict[str, list[str]]]:
    """Room name from the URL path (the query string never changes the room) and the query."""
    parts = urlsplit(path)
    name = unquote(parts.path).strip("/")
    if len(name) > MAX_ROOM_NAME or not ROOM_NAME.fullmatch(name) or ".." in name.split("/"):
        raise ConnectionRejected(CloseCode.BAD_MESSAGE, "invalid room name")
    return name, parse_qs(parts.query)


def bearer_token(query: dict[str, list[str]], headers: Headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    values = query.get("token")
    return values[0] if values else None


MAX_INVITE_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class RpcContext:
    hub: Hub
    room: Room
    peer: Peer


async def _invite(ctx: RpcContext, call: rpc.Call) -> dict[str, Any]:
    """A join link for this room; editors may invite editors or readers, readers nobody."""
    if not ctx.peer.grant.can_edit:
        raise rpc.RpcError("forbidden", "read-only members cannot invite")
    try:
        role = Role(call.params.get("role", Role.EDIT.value))
        ttl = timedelta(seconds=float(call.params.get("ttl_seconds", 7 * 86400)))
        user = str(call.params.get("user", "guest"))[:64] or "guest"
    except (ValueError, TypeError) as exc:
        raise rpc.RpcError("invalid_params", str(exc)) from None
    if not timedelta(0) < ttl <= MAX_INVITE_TTL:
        raise rpc.RpcError("invalid_params", "ttl_seconds must be within 30 days")
    token = ctx.hub.signer.issue(ctx.room.name, user, role, ttl)
    return {
        "url": room_url(ctx.hub.url, ctx.room.name, token),
        "hub": ctx.hub.url,
        "room": ctx.room.name,
        "token": token,
        "role": role.value,
        "expires_at": (datetime.now(UTC) + ttl).isoformat(timespec="seconds"),
    }


async def _create_file(ctx: RpcContext, call: rpc.Call) -> dict[str, Any]:
    """Seed ``files[path]`` with ``content`` exactly once, however many editors ask at once."""
    if not ctx.peer.grant.can_edit:
        raise rpc.RpcError("forbidden", "read-only members cannot add files")
    path, content = call.params.get("path"), call.params.get("content")
    if not isinstance(path, str) or not isinstance(content, str) or not valid_path(path):
        raise rpc.RpcError("invalid_params", "path must be a relative POSIX path, content a string")
    created = await ctx.room.create_file(ctx.peer.grant.user, path, content)
    return {"created": created}


def valid_path(path: str) -> bool:
    parts = path.split("/")
    return 0 < len(path) <= 1024 and "" not in parts and "." not in parts and ".." not in parts


class Hub:
    """``async with Hub(config) as hub:`` serves until the block exits."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.metrics = HubMetrics()
        self.signer = TokenSigner.for_data_dir(config.data_dir)
        self.store = Store(
            config.data_dir,
            config.store,
            config.limits.max_pending_updates,
            on_commit_seconds=self.metrics.on_commit,
        )
        self._rooms: dict[str, Room] = {}
        self._rooms_lock = asyncio.Lock()
        self._idle: dict[str, asyncio.Task[None]] = {}
        self._server: Server | None = None
        self._stopped = asyncio.Event()
        self.audit = AuditLog(config.data_dir, include_content=config.llm.audit_content)
        self.ai = AiService(
            config.llm, self.signer.derive("llm-cache-salt"), self.metrics, self.audit
        )
        self.summaries = Summaries(self.ai)
        self.methods: dict[str, rpc.Handler] = {
            "invite": _invite,
            "create_file": _create_file,
            "complete": self.ai.complete,
            "summarize": self.summaries.summarize,
        }

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Hub:
        await self.store.__aenter__()
        try:
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
                logger=logging.getLogger("huddle.ws"),
            )
        except BaseException:
            await self.store.__aexit__(None, None, None)
            raise
        log.info("hub listening on %s (data in %s)", self.url, self.config.data_dir)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._idle.values():
            task.cancel()
        await self.ai.aclose()
        async with self._rooms_lock:
            for room in self._rooms.values():
                await room.__aexit__(None, None, None)
            self._rooms.clear()
            self.metrics.rooms.set(0)
        await self.store.__aexit__(exc_type, exc, tb)

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

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            body = self.metrics.render()
            headers = Headers([("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return Response(200, "OK", headers, body)
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

                def load(db: Database) -> RoomRecord | None:
                    return db.load_room(name, create=db.room_count() < limit)

                record = await self.store.call(load)
                if record is None:
                    raise ConnectionRejected(CloseCode.SERVER_BUSY, "room limit reached")
                room = Room(
                    record,
                    self.store,
                    self.config.limits,
                    self.config.store.compact_every,
                    self.metrics,
                )
                await room.__aenter__()
                self._rooms[name] = room
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
                await room.__aexit__(None, None, None)
                self.metrics.rooms.set(len(self._rooms))

    def room(self, name: str) -> Room | None:
        """The loaded room called ``name``, if any (for tests and the AI gateway)."""
        return self._rooms.get(name)

    # -- connections ---------------------------------------------------------------------

    async def _admit(self, ws: ServerConnection) -> tuple[Grant, Room]:
        name, query = parse_room(ws.request.path if ws.request else "/")
        headers = ws.request.headers if ws.request else Headers()
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
            RpcContext(self, room, peer),
            lambda frame: room.send_to(peer, frame),
            self.config.limits.max_requests_per_connection,
        )
        self.metrics.connections.inc()
        room.join(peer)
        log.info("%s joined %s as %s", peer.label, room.name, grant.role.value)
        try:
            await self._read(peer, room, endpoint)
        except ConnectionRejected as rejection:
            log.warning("closing %s in %s: %s", peer.label, room.name, rejection.reason)
            self.metrics.rejected.labels(rejection.code.name.lower()).inc()
            await ws.close(rejection.code, rejection.reason[:120])
        except ConnectionClosed:
            pass
        finally:
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
            log.warning("could not record when %s left %s: %s", user, room, exc)

    async def _read(self, peer: Peer, room: Room, endpoint: rpc.RpcEndpoint) -> None:
        counters = self.metrics
        async for frame in peer.ws:
            if isinstance(frame, str):
                raise ConnectionRejected(CloseCode.BAD_MESSAGE, "text frames are not y-websocket")
            counters.bytes_in.inc(len(frame))
            if not peer.bucket.take():
                raise ConnectionRejected(CloseCode.RATE_LIMITED, "message rate limit exceeded")
            try:
                message = wire.decode(frame)
                counters.messages_in.labels(type(message).__name__).inc()
                if isinstance(message, wire.HuddleMessage):
                    endpoint.receive(message.payload)
                else:
                    await room.receive(peer, message)
            except wire.WireError as exc:
                raise ConnectionRejected(
                    CloseCode.BAD_MESSAGE, f"malformed message: {exc}"
                ) from exc
