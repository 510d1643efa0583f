"""A y-websocket client that keeps a pycrdt ``Doc`` in sync with a hub room.

It reconnects by itself (exponential backoff with full jitter) and resynchronises with the
two-step sync on every connection, so edits made while offline merge on reconnect. Given several
addresses (the nodes of a cluster) it tries them in turn, the next one at once when one fails:
it waits only after every address has failed, so a dead node costs nothing while another lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, TypeVar

import jwt
import pycrdt
from pycrdt import Doc, Subscription, TransactionEvent
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from huddle.collab import wire
from huddle.protocol import (
    HUB_METHODS,
    HUB_NOTIFICATIONS,
    HubMethod,
    HubNotification,
    RpcCancel,
    RpcError,
    RpcMessage,
    RpcNotification,
    RpcRequest,
    RpcResponse,
    parse_rpc,
    room_url,
    rpc_json,
)

log = logging.getLogger("huddle.client")

AWARENESS_RENEW_SECONDS = 15.0  # y-protocols drops a state not renewed within 30 s


NotificationHandler = Callable[[str, dict[str, Any]], None]
R = TypeVar("R", bound=BaseModel)


def _encode(message: RpcMessage) -> bytes:
    return wire.encode(wire.HuddleMessage(rpc_json(message)))


class Status(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    REJECTED = "rejected"
    CLOSED = "closed"


class HubClient:
    def __init__(
        self,
        hub_url: str | Sequence[str],
        room: str,
        token: str | None,
        doc: Doc[Any] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        on_status: Callable[[Status, str], None] | None = None,
        on_awareness: Callable[[dict[int, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self.room = room
        self._token = token
        self.hubs: tuple[str, ...] = ()
        self._current = 0
        self.use(hub_url)
        self.status = Status.CONNECTING
        self.status_reason = ""
        # Informational only: the hub enforces the role whatever the client believes.
        self.read_only = claimed(token, "role") == "read"
        self.synced = asyncio.Event()
        self.peers: dict[int, dict[str, Any]] = {}
        self._ssl = ssl_context
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._on_status = on_status
        self._on_awareness = on_awareness
        self._ws: ClientConnection | None = None
        self._outbox: list[bytes] = []
        self._outbox_ready = asyncio.Event()
        self._flushed = asyncio.Event()  # clear while a local update or presence is unsent
        self._flushed.set()
        self._presence_dirty = False
        self._applying_remote = False
        self._local_state: dict[str, Any] | None = None
        self._local_clock = 0
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._status_changed = asyncio.Event()
        self._request_ids = itertools.count(1)
        self._calls: dict[int, tuple[asyncio.Future[Any], NotificationHandler | None]] = {}

    async def __aenter__(self) -> HubClient:
        self._subscription = self.doc.observe(self._on_local_update)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"hub-client {self.room}"),
            asyncio.create_task(self._renew_presence(), name="presence renewal"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
        self._set_status(Status.CLOSED, "")

    # -- state ---------------------------------------------------------------------------

    def use(self, hub_url: str | Sequence[str]) -> None:
        """Connect to these addresses from the next attempt on (the first one first)."""
        self.hubs = (hub_url,) if isinstance(hub_url, str) else tuple(hub_url)
        if not self.hubs:
            raise ValueError("no hub address")
        self._current = 0

    @property
    def hub_url(self) -> str:
        """The address connected to, or being tried."""
        return self.hubs[self._current]

    @property
    def url(self) -> str:
        """The current address's room URL, with the token (the same for every node)."""
        return room_url(self.hub_url, self.room, self._token)

    def _set_status(self, status: Status, reason: str) -> None:
        if (status, reason) == (self.status, self.status_reason):
            return
        self.status, self.status_reason = status, reason
        self._status_changed.set()
        self._status_changed = asyncio.Event()
        if self._on_status is not None:
            self._on_status(status, reason)

    async def wait_status(self, *statuses: Status) -> Status:
        while self.status not in statuses:
            await self._status_changed.wait()
        return self.status

    async def flush(self) -> None:
        """Return once every local update has been written to the hub, or the connection is
        gone (a new one sends what the hub lacks in its first sync). Not on an empty outbox
        alone: the update being written (a large file, a slow hub) has left it already."""
        while not self._flushed.is_set() and self.status is Status.CONNECTED:
            flushed = asyncio.ensure_future(self._flushed.wait())
            changed = asyncio.ensure_future(self._status_changed.wait())
            try:
                await asyncio.wait({flushed, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                flushed.cancel()
                changed.cancel()

    # -- local changes -------------------------------------------------------------------

    def _on_local_update(self, event: TransactionEvent) -> None:
        if self._applying_remote:
            return
        self._outbox.append(event.update)
        self._flushed.clear()
        self._outbox_ready.set()

    def _apply_remote(self, update: bytes) -> None:
        self._applying_remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying_remote = False

    @property
    def local_state(self) -> dict[str, Any] | None:
        return self._local_state

    def set_presence(self, state: dict[str, Any] | None) -> None:
        self._local_state = state
        self._local_clock += 1
        self._send_presence()

    def _send_presence(self) -> None:
        self._presence_dirty = True
        self._flushed.clear()
        self._outbox_ready.set()

    def _presence_frame(self) -> bytes:
        entry = wire.AwarenessEntry(self.doc.client_id, self._local_clock, self._local_state)
        return wire.encode(wire.AwarenessMessage(wire.encode_awareness([entry])))

    async def _renew_presence(self) -> None:
        while True:
            await asyncio.sleep(AWARENESS_RENEW_SECONDS)
            if self._local_state is not None:
                self._local_clock += 1
                self._send_presence()

    # -- requests to the hub -------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        on_notification: NotificationHandler | None = None,
    ) -> Any:
        """Ask the hub, untyped (``call`` is the typed form); raises ``RpcError``. Cancelling
        the caller cancels it on the hub."""
        ws = self._ws
        if ws is None or self.status is not Status.CONNECTED:
            raise RpcError("offline", "not connected to the hub")
        request_id = next(self._request_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = (future, on_notification)
        try:
            await ws.send(_encode(RpcRequest(id=request_id, method=method, params=params or {})))
            return await future
        except asyncio.CancelledError:
            if self._ws is ws:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(_encode(RpcCancel(id=request_id)))
            raise
        except ConnectionClosed:
            # Not synced any more, from now: ``_run`` may not have seen the close yet, and a
            # caller that retries once synced again (the editor's binding of a file) would
            # otherwise retry at once, in a loop that never yields to let it (send raises at
            # once on a closed connection).
            if self._ws is ws:
                self.synced.clear()
            raise RpcError("disconnected", "lost the hub connection") from None
        finally:
            self._calls.pop(request_id, None)

    async def call(
        self,
        method: HubMethod,
        params: BaseModel,
        result: type[R],
        on_notification: Callable[[HubNotification, BaseModel], None] | None = None,
    ) -> R:
        """Ask the hub: ``params`` and ``result`` are the method's models in
        ``huddle.protocol``, and its notifications arrive parsed (a malformed one is dropped).
        Raises ``RpcError`` (``malformed`` when the answer does not match ``result``)."""
        assert HUB_METHODS[method].result is result, f"{method} answers with another model"

        def relay(name: str, payload: dict[str, Any]) -> None:
            if on_notification is None:
                return
            try:
                kind = HubNotification(name)
                parsed = HUB_NOTIFICATIONS[kind].model_validate(payload)
            except (ValueError, ValidationError):
                log.warning("dropped a malformed %r notification from the hub", name[:64])
                return
            on_notification(kind, parsed)

        answer = await self.request(method, params.model_dump(mode="json"), relay)
        try:
            return result.model_validate(answer)
        except ValidationError:
            raise RpcError("malformed", f"the hub's answer to {method} is malformed") from None

    def _on_rpc(self, payload: bytes) -> None:
        try:
            message = parse_rpc(payload)
        except ValidationError as exc:
            raise wire.WireError(f"invalid huddle message: {exc.error_count()} errors") from exc
        if isinstance(message, RpcResponse):
            call = self._calls.get(message.id)
            if call is None or call[0].done():
                return
            if message.error is not None:
                call[0].set_exception(RpcError(message.error.code, message.error.message))
            else:
                call[0].set_result(message.result)
        elif isinstance(message, RpcNotification) and message.id is not None:
            call = self._calls.get(message.id)
            if call is not None and call[1] is not None:
                call[1](message.method, message.params)

    def _fail_calls(self) -> None:
        for future, _ in self._calls.values():
            if not future.done():
                future.set_exception(RpcError("disconnected", "lost the hub connection"))

    # -- connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0  # rounds in a row without a connection: the backoff's exponent
        tried = 0  # addresses tried since the last wait
        while True:
            closed: tuple[int | None, str] = (None, "")
            hub_url = self.hub_url
            try:
                async with connect(
                    self.url, ssl=self._ssl, compression=None, max_size=None, open_timeout=10
                ) as ws:
                    attempt = 0
                    log.info("connected to the hub at %s (room %s)", hub_url, self.room)
                    await self._session(ws)
                closed = (ws.close_code, ws.close_reason or "")
            except ConnectionClosed as exc:
                if exc.rcvd is not None:
                    closed = (exc.rcvd.code, exc.rcvd.reason)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                log.debug("cannot reach the hub at %s: %s", hub_url, exc)
            except InvalidURI as exc:
                self._set_status(Status.REJECTED, f"invalid hub URL: {exc}")
                return
            except Exception:  # a bug must not end the reconnect loop silently
                log.exception("hub connection failed")
            finally:
                self._ws = None
                self.synced.clear()
                self._fail_calls()
            code, reason = closed
            if code is not None and 4400 <= code < 4500:  # see CloseCode.permanent
                self._set_status(Status.REJECTED, reason)
                log.error("hub refused %s: %s", self.room, reason)
                return
            if self.status is Status.CONNECTED:
                log.info("lost the hub at %s: %s", hub_url, reason or "connection closed")
            self._set_status(Status.RECONNECTING, reason or "hub unreachable")
            if hub_url == self.hub_url:  # not retargeted meanwhile (``use``): round robin
                self._current = (self._current + 1) % len(self.hubs)
            tried += 1
            if tried < len(self.hubs):
                continue  # another node may be live: no wait before it
            tried = 0
            attempt += 1
            ceiling = min(self._max_backoff, self._min_backoff * 2**attempt)
            await asyncio.sleep(random.uniform(self._min_backoff / 2, ceiling))  # full jitter

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        # Anything queued is covered by the two-step sync below.
        self._outbox.clear()
        if not self._presence_dirty:
            self._flushed.set()
        await ws.send(wire.encode(wire.SyncStep1(self.doc.get_state())))
        self._set_status(Status.CONNECTED, "")
        if self._local_state is not None:
            self._send_presence()
        sender = asyncio.create_task(self._drain_outbox(ws))
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    await self._handle(ws, wire.decode(frame))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _drain_outbox(self, ws: ClientConnection) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            if self._outbox:
                batch, self._outbox = self._outbox, []
                update = batch[0] if len(batch) == 1 else pycrdt.merge_updates(*batch)
                await ws.send(wire.encode(wire.SyncUpdate(update)))
            if self._presence_dirty:
                self._presence_dirty = False
                await ws.send(self._presence_frame())
            if not self._outbox and not self._presence_dirty:
                self._flushed.set()

    async def _handle(self, ws: ClientConnection, message: wire.Message) -> None:
        match message:
            case wire.SyncStep1(state_vector):
                await ws.send(wire.encode(wire.SyncStep2(self.doc.get_update(state_vector))))
            case wire.SyncStep2(update):
                self._apply_remote(update)
                self.synced.set()
            case wire.SyncUpdate(update):
                self._apply_remote(update)
            case wire.AwarenessMessage(payload):
                for entry in wire.decode_awareness(payload):
                    if entry.client_id == self.doc.client_id:
                        continue
                    if entry.state is None:
                        self.peers.pop(entry.client_id, None)
                    else:
                        self.peers[entry.client_id] = entry.state
                if self._on_awareness is not None:
                    self._on_awareness(self.peers)
            case wire.AuthDenied(reason):
                log.warning("hub: %s", reason)
                if not self.read_only:
                    self.read_only = True
                    self._set_status(self.status, reason)
            case wire.HuddleMessage(payload):
                self._on_rpc(payload)
            case wire.QueryAwareness():
                if self._local_state is not None:
                    self._send_presence()


def claimed(token: str | None, claim: str) -> str | None:
    """A string claim of ``token`` (``role``, ``sub``), read without verifying it: only the
    hub can verify, so this is for display, never for a decision."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    value = claims.get(claim)
    return value if isinstance(value, str) and value else None
