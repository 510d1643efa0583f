"""Spreads rooms over backend replicas. A room always goes to the same replica (rendezvous
hashing), so that replica's prefix cache stays warm with the room's files; when the replica
refuses connections it is skipped for a cooldown and the room's next-ranked replica serves."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self, TypeVar

from huddle.llm.client import BackendClient, CompletionStream
from huddle.llm.config import BackendConfig, LlmConfig
from huddle.llm.errors import BackendUnavailable, NoBackendAvailable
from huddle.llm.protocol import CompletionRequest

log = logging.getLogger(__name__)

RequestBuilder = Callable[[BackendConfig], CompletionRequest]
T = TypeVar("T")


def rendezvous_score(backend_key: str, room: str) -> int:
    digest = hashlib.blake2b(f"{backend_key}\0{room}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Router:
    """Owns one ``BackendClient`` per backend; an async context manager."""

    def __init__(
        self,
        config: LlmConfig,
        backends: Sequence[BackendConfig] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._backends = list(backends if backends is not None else config.backends)
        if not self._backends:
            raise ValueError("a Router needs at least one backend")
        self._clock = clock
        self._down_until: dict[str, float] = {}
        self._clients: dict[str, BackendClient] = {}
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for backend in self._backends:
                client = BackendClient(backend, self._config)
                self._clients[backend.key] = await stack.enter_async_context(client)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._clients.clear()
        if stack is not None:
            await stack.aclose()

    @property
    def backends(self) -> list[BackendConfig]:
        return list(self._backends)

    def ranked(self, room: str) -> list[BackendConfig]:
        """All backends in the room's order of preference (stable while the list is)."""
        return sorted(
            self._backends, key=lambda b: (rendezvous_score(b.key, room), b.key), reverse=True
        )

    def is_up(self, backend: BackendConfig) -> bool:
        until = self._down_until.get(backend.key)
        return until is None or self._clock() >= until

    def mark_down(self, backend: BackendConfig, reason: BaseException | str) -> None:
        self._down_until[backend.key] = self._clock() + self._config.failover_cooldown_s
        log.warning(
            "LLM backend %s marked down for %gs: %s",
            backend.url,
            self._config.failover_cooldown_s,
            reason,
        )

    def _mark_up(self, backend: BackendConfig) -> None:
        if self._down_until.pop(backend.key, None) is not None:
            log.info("LLM backend %s is back", backend.url)

    def client(self, backend: BackendConfig) -> BackendClient:
        try:
            return self._clients[backend.key]
        except KeyError:
            raise RuntimeError("Router is used outside its async with block") from None

    def candidates(self, room: str) -> list[BackendConfig]:
        """The room's backends to try in order: those up by preference, then those marked
        down, soonest to recover first: with every replica down (one model that is loading,
        say) a request still tries, so the first one after recovery succeeds."""
        ranked = self.ranked(room)
        down = [b for b in ranked if not self.is_up(b)]
        down.sort(key=lambda b: self._down_until.get(b.key, 0.0))
        return [b for b in ranked if self.is_up(b)] + down

    async def _first_working(
        self, room: str, attempt: Callable[[BackendConfig], Awaitable[T]]
    ) -> T:
        """``attempt`` on the room's backends in order until one is available: the one
        failover loop. An unavailable backend is marked down; the error names every failure."""
        failures: list[str] = []
        for backend in self.candidates(room):
            try:
                result = await attempt(backend)
            except BackendUnavailable as exc:
                self.mark_down(backend, exc)
                failures.append(str(exc))
                continue
            self._mark_up(backend)
            return result
        raise NoBackendAvailable("no LLM backend available: " + "; ".join(failures))

    async def open(self, room: str, build: RequestBuilder) -> CompletionStream:
        """Open a stream on the room's first working backend. The caller closes it."""

        async def opened(backend: BackendConfig) -> CompletionStream:
            stream = self.client(backend).stream(build(backend))
            await stream.open()
            return stream

        return await self._first_working(room, opened)

    @asynccontextmanager
    async def stream(self, room: str, build: RequestBuilder) -> AsyncIterator[CompletionStream]:
        """``async with router.stream(room, build) as s: async for chunk in s``. ``build``
        makes the request for the chosen backend (its model, template, priority)."""
        stream = await self.open(room, build)
        try:
            yield stream
        finally:
            await stream.aclose()

    async def tokenize(self, room: str, text: str, *, add_special: bool = False) -> list[int]:
        return await self._first_working(
            room, lambda backend: self.client(backend).tokenize(text, add_special=add_special)
        )
