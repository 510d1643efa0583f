"""The hub's end of the request channel (wire type 100, JSON): see ``huddle.protocol`` for the
contract. Each request runs as a task the endpoint owns; its params are validated against the
method's model once, here, so handlers get typed params and return typed results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from huddle.collab import wire
from huddle.protocol import (
    HUB_METHODS,
    HubMethod,
    HubNotification,
    RpcCancel,
    RpcError,
    RpcErrorBody,
    RpcMessage,
    RpcNotification,
    RpcRequest,
    RpcResponse,
    invalid_params,
    parse_rpc,
    rpc_json,
)

log = logging.getLogger("huddle.rpc")


def encode(message: RpcMessage) -> bytes:
    return wire.encode(wire.HuddleMessage(rpc_json(message)))


def decode(payload: bytes) -> RpcMessage:
    try:
        return parse_rpc(payload)
    except ValidationError as exc:
        raise wire.WireError(f"invalid huddle message: {exc.error_count()} errors") from exc


class Call:
    """One request being served: its id, and a way to stream notifications back."""

    def __init__(self, request: RpcRequest, send: Callable[[bytes], None]) -> None:
        self.request = request
        self._send = send

    def notify(self, method: HubNotification, params: BaseModel) -> None:
        payload = params.model_dump(mode="json")
        self._send(encode(RpcNotification(id=self.request.id, method=method, params=payload)))


# A handler gets the connection's context, the validated params and the call; it returns the
# method's result model (``HUB_METHODS``).
Handler = Callable[[Any, Any, Call], Awaitable[BaseModel]]


class RpcEndpoint:
    """The hub side for one connection: runs each request as a task it owns."""

    def __init__(
        self,
        methods: dict[HubMethod, Handler],
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
        try:
            method: HubMethod | None = HubMethod(message.method)
        except ValueError:
            method = None
        handler = self._methods.get(method) if method is not None else None
        if method is None or handler is None:
            self._reply_error(message.id, "unknown_method", f"no method {message.method!r}")
        elif len(self._tasks) >= self._max:
            self._reply_error(message.id, "busy", "too many requests in flight")
        else:
            self._tasks[message.id] = asyncio.create_task(self._serve(method, handler, message))

    async def _serve(self, method: HubMethod, handler: Handler, request: RpcRequest) -> None:
        spec = HUB_METHODS[method]
        try:
            try:
                params = spec.params.model_validate(request.params)
            except ValidationError as exc:
                raise invalid_params(exc) from None
            result = await handler(self._context, params, Call(request, self._send))
            assert isinstance(result, spec.result), f"{request.method} answered {type(result)}"
        except asyncio.CancelledError:
            self._reply_error(request.id, "cancelled", "request cancelled")
            raise
        except RpcError as exc:
            self._reply_error(request.id, exc.code, exc.message)
        except Exception:
            log.exception("request %s failed", request.method)
            self._reply_error(request.id, "internal", f"{request.method} failed on the hub")
        else:
            response = RpcResponse(id=request.id, result=result.model_dump(mode="json"))
            self._send(encode(response))
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
