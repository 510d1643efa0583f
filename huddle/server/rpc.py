"""Huddle's request channel over the hub connection (wire type 100, JSON).

``huddle lsp`` asks the hub for things that need the hub's authority or its copy of the room
(invites now; completions and summaries later). A request may stream notifications tagged with
its id before the final response, and the caller may cancel it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from huddle.collab import wire
from huddle.server.errors import ServerError

log = logging.getLogger("huddle.rpc")


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RpcRequest(_Msg):
    kind: Literal["request"] = "request"
    id: int = Field(ge=0)
    method: str = Field(max_length=64)
    params: dict[str, Any] = {}


class RpcErrorBody(_Msg):
    code: str
    message: str


class RpcResponse(_Msg):
    kind: Literal["response"] = "response"
    id: int
    result: Any = None
    error: RpcErrorBody | None = None


class RpcNotification(_Msg):
    kind: Literal["notification"] = "notification"
    id: int | None = None  # the request it belongs to, if any
    method: str
    params: dict[str, Any] = {}


class RpcCancel(_Msg):
    kind: Literal["cancel"] = "cancel"
    id: int


RpcMessage = Annotated[
    RpcRequest | RpcResponse | RpcNotification | RpcCancel, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[RpcRequest | RpcResponse | RpcNotification | RpcCancel] = TypeAdapter(
    RpcMessage
)


def encode(message: RpcRequest | RpcResponse | RpcNotification | RpcCancel) -> bytes:
    return wire.encode(wire.HuddleMessage(message.model_dump_json(exclude_defaults=False).encode()))


def decode(payload: bytes) -> RpcRequest | RpcResponse | RpcNotification | RpcCancel:
    try:
        return _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        raise wire.WireError(f"invalid huddle message: {exc.error_count()} errors") from exc


class RpcError(ServerError):
    """A request failed; ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Call:
    """One request being served: its parameters and a way to stream notifications back."""

    def __init__(self, request: RpcRequest, send: Callable[[bytes], None]) -> None:
        self.request = request
        self._send = send

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send(encode(RpcNotification(id=self.request.id, method=method, params=params)))


Handler = Callable[[Any, Call], Awaitable[Any]]


class RpcEndpoint:
    """The hub side for one connection: runs each request as a task it owns."""

    def __init__(
        self,
        methods: dict[str, Handler],
        context: Any,
        send: Callable[[bytes], None],
        max_concurrent: int,
    ) -> None:
        self._methods = methods
        self._context = context
        self._send = send
        self._max = max_concurrent
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def receive(self, payload: bytes) -> None:
        message = decode(payload)
        if isinstance(message, RpcCancel):
            task = self._tasks.get(message.id)
            if task is not None:
                task.cancel()
            return
        if not isinstance(message, RpcRequest):
            raise wire.WireError(f"the hub does not accept {message.kind} messages")
        if message.id in self._tasks:
            raise wire.WireError(f"request id {message.id} is already in flight")
        handler = self._methods.get(message.method)
        if handler is None:
            self._reply_error(message.id, "unknown_method", f"no method {message.method!r}")
        elif len(self._tasks) >= self._max:
            self._reply_error(message.id, "busy", "too many requests in flight")
        else:
            self._tasks[message.id] = asyncio.create_task(self._serve(handler, message))

    async def _serve(self, handler: Handler, request: RpcRequest) -> None:
        try:
            result = await handler(self._context, Call(request, self._send))
        except asyncio.CancelledError:
            self._reply_error(request.id, "cancelled", "request cancelled")
            raise
        except RpcError as exc:
            self._reply_error(request.id, exc.code, exc.message)
        except Exception:
            log.exception("request %s failed", request.method)
            self._reply_error(request.id, "internal", f"{request.method} failed on the hub")
        else:
            self._send(encode(RpcResponse(id=request.id, result=result)))
        finally:
            self._tasks.pop(request.id, None)

    def _reply_error(self, request_id: int, code: str, message: str) -> None:
        self._send(
            encode(RpcResponse(id=request_id, error=RpcErrorBody(code=code, message=message)))
        )

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
