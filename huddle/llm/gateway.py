"""The hub's one object for the LLM: routes a room to a backend, builds its prompt with that
backend's template and budget, salts the prefix cache per room, prioritises interactive
completions over summaries. With no backend configured it starts the embedded model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Literal, Self

from pydantic import SecretStr

from huddle.llm.client import CompletionStream
from huddle.llm.config import BackendConfig, LlmConfig
from huddle.llm.embedded import EmbeddedEngine
from huddle.llm.fim import FimTemplate, template_for
from huddle.llm.prompt import CodeContext, Prompt, PromptBudget, TokenCounter, approx_tokens
from huddle.llm.prompt import build_prompt as _build_prompt
from huddle.llm.protocol import CompletionRequest
from huddle.llm.router import Router
from huddle.llm.salt import room_cache_salt

Purpose = Literal["completion", "summary"]


class LlmGateway:
    """``async with LlmGateway(config, secret) as llm:`` then
    ``async with llm.complete(room, context) as stream: async for chunk in stream``."""

    def __init__(
        self,
        config: LlmConfig,
        secret: bytes | SecretStr,
        *,
        count_tokens: TokenCounter = approx_tokens,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        raw = secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret
        if not raw:
            raise ValueError("the gateway needs a non-empty secret for cache salts")
        self._secret = raw
        self._count = count_tokens
        self._clock = clock
        self._stack: AsyncExitStack | None = None
        self._router: Router | None = None
        self.embedded: EmbeddedEngine | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            backends = list(self.config.backends)
            if not backends:
                engine = EmbeddedEngine(self.config.embedded)
                self.embedded = await stack.enter_async_context(engine)
                backends = [engine.backend(self.config)]
            router = Router(self.config, backends, clock=self._clock)
            self._router = await stack.enter_async_context(router)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._router = None
        self.embedded = None
        if stack is not None:
            await stack.aclose()

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("LlmGateway is used outside its async with block")
        return self._router

    @property
    def backends(self) -> list[BackendConfig]:
        return self.router.backends

    def cache_salt(self, room: str) -> str:
        return room_cache_salt(self._secret, room)

    def template(self, backend: BackendConfig) -> FimTemplate:
        return template_for(backend.fim_template, backend.model)

    def build_prompt(self, backend: BackendConfig, context: CodeContext) -> Prompt:
        budget = PromptBudget.from_config(self.config, backend.context_tokens)
        return _build_prompt(self.template(backend), context, budget, self._count)

    def request(
        self,
        room: str,
        backend: BackendConfig,
        prompt: str,
        *,
        purpose: Purpose,
        max_tokens: int,
        stop: Sequence[str] = (),
    ) -> CompletionRequest:
        priority = (
            self.config.completion_priority
            if purpose == "completion"
            else self.config.summary_priority
        )
        return CompletionRequest(
            model=backend.model,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=self.config.temperature,
            stop=list(dict.fromkeys(stop)),
            cache_salt=self.cache_salt(room),
            priority=priority if backend.priority else None,
        )

    def complete(
        self,
        room: str,
        context: CodeContext,
        *,
        max_tokens: int | None = None,
        on_prompt: Callable[[BackendConfig, Prompt], None] | None = None,
    ) -> AbstractAsyncContextManager[CompletionStream]:
        """Stream a code completion (fill-in-the-middle where the model supports it).
        ``on_prompt`` hears of the prompt built for the backend chosen (for the audit log)."""

        def build(backend: BackendConfig) -> CompletionRequest:
            prompt = self.build_prompt(backend, context)
            if on_prompt is not None:
                on_prompt(backend, prompt)
            return self.request(
                room,
                backend,
                prompt.text,
                purpose="completion",
                max_tokens=max_tokens or self.config.max_tokens,
                stop=prompt.stop,
            )

        return self.router.stream(room, build)

    def prompt_budget_chars(self, room: str) -> int:
        """Characters a summary prompt may hold on the room's backend, answer room kept."""
        backend = self.router.candidates(room)[0]
        tokens = backend.context_tokens or self.config.context_tokens
        return max(256, tokens * 4)

    def generate(
        self,
        room: str,
        prompt: str,
        *,
        purpose: Purpose = "summary",
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        on_prompt: Callable[[BackendConfig, str], None] | None = None,
    ) -> AbstractAsyncContextManager[CompletionStream]:
        """Stream a plain continuation of ``prompt`` (summaries). Put the shared, stable part
        of the prompt first so the prefix cache can serve it."""
        limit = max_tokens or (
            self.config.summary_max_tokens if purpose == "summary" else self.config.max_tokens
        )

        def build(backend: BackendConfig) -> CompletionRequest:
            if on_prompt is not None:
                on_prompt(backend, prompt)
            return self.request(room, backend, prompt, purpose=purpose, max_tokens=limit, stop=stop)

        return self.router.stream(room, build)

    async def tokenize(self, room: str, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids under the room's backend's tokenizer."""
        return await self.router.tokenize(room, text, add_special=add_special)
