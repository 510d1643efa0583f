"""Streaming client for one OpenAI-compatible backend (vLLM, or llama.cpp's server).

``/v1/completions`` is read as a protocol: typed chunks, stop at ``[DONE]``, a typed error for
an error chunk, a timeout for a silent backend. Closing a stream (leaving its ``async with``,
also by cancellation) closes the HTTP connection, which makes vLLM abort the request and free
its KV blocks."""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import httpx
from pydantic import ValidationError

from huddle.llm.config import BackendConfig, LlmConfig, LlmTimeouts
from huddle.llm.errors import (
    BackendHTTPError,
    BackendOverloaded,
    BackendProtocolError,
    BackendStreamError,
    BackendTimeout,
    BackendUnavailable,
)
from huddle.llm.protocol import (
    Completion,
    CompletionChunk,
    CompletionRequest,
    ErrorResponse,
    LlamaCppTokenizeRequest,
    TokenizeResponse,
    Usage,
    VllmTokenizeRequest,
    is_error_payload,
)
from huddle.llm.sse import SseDecoder, SseEvent, SseTooLarge

_UNAVAILABLE_STATUS = frozenset({502, 503, 504})


class CompletionStream:
    """One streamed completion. Use as ``async with client.stream(req) as s: async for c in s``;
    the HTTP response is closed when the block is left, however it is left."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        backend: BackendConfig,
        request: CompletionRequest,
        config: LlmConfig,
    ) -> None:
        self.backend = backend
        self.request = request
        self._http = http
        self._timeouts: LlmTimeouts = config.timeouts
        self._max_error_body = config.max_error_body_bytes
        self._decoder = SseDecoder(config.max_event_bytes)
        self._pending: collections.deque[SseEvent] = collections.deque()
        self._response: httpx.Response | None = None
        self._bytes: AsyncIterator[bytes] | None = None
        self._opened = False
        self._done = False
        self._eof = False
        self._started = False
        self._first_deadline = 0.0
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model = request.model

    @property
    def url(self) -> str:
        return self.backend.url

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Send the request and check the status. Raises ``BackendUnavailable`` when nothing
        reached a working server (safe to retry elsewhere), ``BackendHTTPError`` otherwise."""
        if self._opened:
            raise RuntimeError("a CompletionStream is opened once")
        self._opened = True
        loop = asyncio.get_running_loop()
        self._first_deadline = loop.time() + self._timeouts.connect_s + self._timeouts.first_token_s
        headers = {"accept": "text/event-stream", "accept-encoding": "identity"}
        if self.backend.api_key is not None:
            headers["authorization"] = f"Bearer {self.backend.api_key.get_secret_value()}"
        request = self._http.build_request(
            "POST", f"{self.url}/v1/completions", json=self.request.body(), headers=headers
        )
        try:
            async with asyncio.timeout_at(self._first_deadline):
                response = await self._http.send(request, stream=True)
        except TimeoutError:
            raise self._timeout() from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendUnavailable(
                self.url, f"cannot connect: {exc or type(exc).__name__}"
            ) from None
        except httpx.PoolTimeout:
            raise BackendUnavailable(self.url, "no free connection (max_connections)") from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.url, f"no response: {exc or type(exc).__name__}") from exc
        if response.status_code != 200:
            try:
                message = await self._error_message(response)
            finally:
                await response.aclose()
            raise status_error(self.url, response.status_code, message)
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("text/event-stream"):
            await response.aclose()
            raise BackendProtocolError(self.url, f"expected an event stream, got {content_type!r}")
        self._response = response
        self._bytes = response.aiter_bytes()

    async def aclose(self) -> None:
        byte_iter, response = self._bytes, self._response
        self._bytes = self._response = None
        self._done = True
        if isinstance(byte_iter, collections.abc.AsyncGenerator):
            await byte_iter.aclose()
        if response is not None:
            await response.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> CompletionChunk:
        if not self._opened:
            raise RuntimeError("open the stream first: async with client.stream(...)")
        while not self._done:
            while self._pending:
                chunk = await self._handle(self._pending.popleft())
                if chunk is not None:
                    return chunk
                if self._done:
                    raise StopAsyncIteration
            if self._eof:
                await self.aclose()
                raise BackendProtocolError(self.url, "stream ended before [DONE]")
            await self._receive()
        raise StopAsyncIteration

    async def collect(self) -> Completion:
        """Read the rest of the stream and return it as one ``Completion``."""
        parts = [chunk.text async for chunk in self]
        return Completion(
            text="".join(parts),
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            backend_url=self.url,
        )

    async def _receive(self) -> None:
        assert self._bytes is not None
        loop = asyncio.get_running_loop()
        # The gap is measured while we wait on the server, not while the consumer is busy.
        deadline = (
            loop.time() + self._timeouts.between_chunks_s if self._started else self._first_deadline
        )
        try:
            async with asyncio.timeout_at(deadline):
                data = await anext(self._bytes, None)
        except TimeoutError:
            await self.aclose()
            raise self._timeout() from None
        except httpx.HTTPError as exc:
            await self.aclose()
            raise BackendProtocolError(
                self.url, f"stream broken: {exc or type(exc).__name__}"
            ) from exc
        try:
            if data is None:
                self._eof = True
                events = self._decoder.flush()
            else:
                events = self._decoder.feed(data)
        except SseTooLarge as exc:
            await self.aclose()
            raise BackendProtocolError(self.url, str(exc)) from None
        self._pending.extend(events)

    async def _handle(self, event: SseEvent) -> CompletionChunk | None:
        if event.data.strip() == "[DONE]":
            await self.aclose()
            return None
        try:
            raw: object = json.loads(event.data)
        except ValueError:
            await self.aclose()
            raise BackendProtocolError(self.url, f"not JSON: {event.data[:200]!r}") from None
        if event.event == "error" or is_error_payload(raw):
            await self.aclose()
            try:
                detail = ErrorResponse.model_validate(raw).detail
            except ValidationError:
                raise BackendStreamError(self.url, event.data[:1000]) from None
            raise BackendStreamError(self.url, detail.message or event.data[:1000], detail.code)
        try:
            chunk = CompletionChunk.model_validate(raw)
        except ValidationError as exc:
            await self.aclose()
            raise BackendProtocolError(self.url, f"bad chunk: {exc}") from None
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.model:
            self.model = chunk.model
        if (reason := chunk.finish_reason) is not None:
            self.finish_reason = reason
        if not chunk.text and reason is None and chunk.usage is None:
            return None  # llama.cpp's empty first chunk: not a token yet
        self._started = True
        return chunk

    def _timeout(self) -> BackendTimeout:
        if self._started:
            return BackendTimeout(self.url, "between_chunks", self._timeouts.between_chunks_s)
        return BackendTimeout(
            self.url, "first_token", self._timeouts.connect_s + self._timeouts.first_token_s
        )

    async def _error_message(self, response: httpx.Response) -> str:
        body = bytearray()
        try:
            async with asyncio.timeout(self._timeouts.request_s):
                async for data in response.aiter_bytes():
                    body += data
                    if len(body) >= self._max_error_body:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        return _error_text(bytes(body[: self._max_error_body]), response.reason_phrase)


def status_error(url: str, status: int, message: str) -> BackendOverloaded | BackendHTTPError:
    """The error for a non-200 answer: overloaded (another replica may serve) or a failure."""
    if status in _UNAVAILABLE_STATUS:
        return BackendOverloaded(url, status, message)
    return BackendHTTPError(url, status, message)


def _error_text(body: bytes, fallback: str) -> str:
    try:
        raw: object = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return text[:1000] or fallback
    if is_error_payload(raw):
        try:
            message = ErrorResponse.model_validate(raw).detail.message
        except ValidationError:
            message = ""
        if message:
            return message
    return body.decode("utf-8", errors="replace")[:1000] or fallback


class BackendClient:
    """The connection pool to one backend. An async context manager: it owns the pool."""

    def __init__(self, backend: BackendConfig, config: LlmConfig) -> None:
        self.backend = backend
        self._config = config
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        t = self._config.timeouts
        self._http = httpx.AsyncClient(
            # read=None: streams enforce first-token and between-chunk deadlines themselves.
            timeout=httpx.Timeout(connect=t.connect_s, read=None, write=t.write_s, pool=t.pool_s),
            limits=httpx.Limits(
                max_connections=self._config.max_connections,
                max_keepalive_connections=self._config.max_connections,
            ),
            trust_env=False,  # the backend URL is explicit; no proxy from the environment
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    @property
    def url(self) -> str:
        return self.backend.url

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("BackendClient is used outside its async with block")
        return self._http

    def stream(self, request: CompletionRequest) -> CompletionStream:
        return CompletionStream(self._client(), self.backend, request, self._config)

    async def complete(self, request: CompletionRequest) -> Completion:
        async with self.stream(request) as stream:
            return await stream.collect()

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of ``text`` under the backend's tokenizer (both servers have /tokenize)."""
        body: LlamaCppTokenizeRequest | VllmTokenizeRequest
        if self.backend.kind == "llamacpp":
            body = LlamaCppTokenizeRequest(content=text, add_special=add_special)
        else:
            body = VllmTokenizeRequest(
                model=self.backend.model, prompt=text, add_special_tokens=add_special
            )
        data = await self._post_json("/tokenize", body.model_dump(mode="json"))
        try:
            return TokenizeResponse.model_validate_json(data).tokens
        except ValidationError as exc:
            raise BackendProtocolError(self.url, f"bad /tokenize answer: {exc}") from None

    async def _post_json(self, path: str, body: dict[str, object]) -> bytes:
        headers = {"accept-encoding": "identity"}
        if self.backend.api_key is not None:
            headers["authorization"] = f"Bearer {self.backend.api_key.get_secret_value()}"
        try:
            async with asyncio.timeout(self._config.timeouts.request_s):
                response = await self._client().post(
                    f"{self.url}{path}", json=body, headers=headers
                )
        except TimeoutError:
            raise BackendUnavailable(
                self.url, f"{path}: no answer within {self._config.timeouts.request_s:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.url, f"{path}: {exc or type(exc).__name__}") from exc
        if response.status_code != 200:
            message = _error_text(response.content[: self._config.max_error_body_bytes], "")
            raise status_error(self.url, response.status_code, message)
        return response.content
