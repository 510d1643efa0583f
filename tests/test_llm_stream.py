"""The backend client at the wire: a small HTTP/1.1 server on 127.0.0.1 replays streams shaped
like vLLM's and llama.cpp's, and observes what the client sends and when it hangs up.
Also: per-room cache salts, priority, and the router's hashing, failover and recovery."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from huddle.llm import (
    BackendClient,
    BackendConfig,
    BackendHTTPError,
    BackendOverloaded,
    BackendProtocolError,
    BackendStreamError,
    BackendTimeout,
    BackendUnavailable,
    CodeContext,
    CompletionChunk,
    CompletionRequest,
    LlmConfig,
    LlmGateway,
    LlmTimeouts,
    NoBackendAvailable,
    Router,
    room_cache_salt,
)
from huddle.llm.sse import SseDecoder, SseEvent, SseTooLarge
from tests.support.replay import (
    Conn,
    FakeBackend,
    Handler,
    Received,
    llamacpp_stream,
    vllm_chunk,
    vllm_stream,
)


def config(**timeouts: float) -> LlmConfig:
    values = {"connect_s": 1.0, "first_token_s": 5.0, "between_chunks_s": 5.0} | timeouts
    return LlmConfig(timeouts=LlmTimeouts(**values))


def request(prompt: str = "def f") -> CompletionRequest:
    return CompletionRequest(model="m", prompt=prompt, max_tokens=8, cache_salt="salt")


@pytest.fixture
async def backend_of() -> AsyncIterator[Callable[[Handler], Awaitable[FakeBackend]]]:
    started: list[FakeBackend] = []

    async def start(handler: Handler) -> FakeBackend:
        backend = await FakeBackend(handler).__aenter__()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.__aexit__()


async def stream_all(client: BackendClient, req: CompletionRequest) -> list[CompletionChunk]:
    async with client.stream(req) as stream:
        return [chunk async for chunk in stream]


# --- streams ------------------------------------------------------------------------------


async def test_vllm_stream_with_usage_only_final_chunk(backend_of: Any) -> None:
    fake = await backend_of(vllm_stream)
    backend = BackendConfig(url=fake.url + "/v1/", model="m", api_key="sk-test")
    async with BackendClient(backend, config()) as client, client.stream(request()) as stream:
        texts = [chunk.text async for chunk in stream]
        assert texts == ["def", " f", "(x)", ":", ""]
        assert stream.finish_reason == "length"
        assert stream.usage is not None and stream.usage.completion_tokens == 4
    sent = fake.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "m" and body["prompt"] == "def f" and body["max_tokens"] == 8
    assert "priority" not in body and "suffix" not in body
    assert "sk-test" not in repr(backend)


async def test_llamacpp_stream_empty_first_chunk_usage_on_finish(backend_of: Any) -> None:
    fake = await backend_of(llamacpp_stream)
    backend = BackendConfig(url=fake.url, model="smollm2", kind="llamacpp")
    async with BackendClient(backend, config()) as client:
        completion = await client.complete(request())
    assert completion.text == "hello world"
    assert completion.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 5
    assert completion.usage.cached_tokens == 1
    assert completion.model == "smollm2" and completion.backend_url == fake.url


@pytest.mark.parametrize(
    ("payload", "field_name", "message", "code"),
    [
        # vLLM >= 0.9 (ErrorResponse with an ErrorInfo)
        (
            {"error": {"message": "boom", "type": "BadRequestError", "param": None, "code": 400}},
            "data",
            "boom",
            400,
        ),
        # older vLLM: a flat error object
        (
            {
                "object": "error",
                "message": "flat boom",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            },
            "data",
            "flat boom",
            500,
        ),
        # llama.cpp writes "error: {...}"
        ({"code": 500, "message": "slot died", "type": "server_error"}, "error", "slot died", 500),
    ],
)
async def test_error_chunk_mid_stream(
    backend_of: Any, payload: dict[str, Any], field_name: str, message: str, code: int
) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event(vllm_chunk("partial"))
        await conn.event(payload, field_name)
        await conn.event("[DONE]")
        await conn.finish()

    fake = await backend_of(handler)
    got: list[str] = []
    async with BackendClient(BackendConfig(url=fake.url, model="m"), config()) as client:
        with pytest.raises(BackendStreamError) as caught:
            async with client.stream(request()) as stream:
                async for chunk in stream:
                    got.append(chunk.text)
    assert got == ["partial"]
    assert caught.value.detail == message and caught.value.code == code


async def test_stall_mid_stream_times_out_quickly(backend_of: Any) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event(vllm_chunk("one"))
        await conn.send(b": ping\n\n")  # a keep-alive comment is not progress

    fake = await backend_of(handler)
    loop = asyncio.get_running_loop()
    async with (
        BackendClient(
            BackendConfig(url=fake.url, model="m"), config(between_chunks_s=0.2)
        ) as client,
        client.stream(request()) as stream,
    ):
        assert (await anext(stream)).text == "one"
        started = loop.time()
        with pytest.raises(BackendTimeout) as caught:
            await anext(stream)
        elapsed = loop.time() - started
    assert caught.value.phase == "between_chunks"
    assert 0.15 < elapsed < 1.0
    hung_up = await asyncio.wait_for(fake.hangups.get(), 1)
    assert hung_up - started < 1.0


async def test_no_first_token_times_out(backend_of: Any) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event({"choices": [{"text": "", "index": 0, "finish_reason": None}]})

    fake = await backend_of(handler)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with BackendClient(
        BackendConfig(url=fake.url, model="m"), config(connect_s=0.1, first_token_s=0.2)
    ) as client:
        with pytest.raises(BackendTimeout) as caught:
            await stream_all(client, request())
    assert caught.value.phase == "first_token"
    assert loop.time() - started < 1.5


async def test_a_server_that_never_answers_times_out(backend_of: Any) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        pass  # reads the request, sends nothing

    fake = await backend_of(handler)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with BackendClient(
        BackendConfig(url=fake.url, model="m"), config(connect_s=0.1, first_token_s=0.2)
    ) as client:
        with pytest.raises(BackendTimeout, match=r"no first token within 0\.3s"):
            await stream_all(client, request())
    assert loop.time() - started < 1.5
    await asyncio.wait_for(fake.hangups.get(), 1)


def test_sse_decoder_framing() -> None:
    decoder = SseDecoder(max_event_bytes=1024)
    events = decoder.feed(b': ping\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\ndata: ')
    assert events == [SseEvent(data='{"a":\n1}')]
    assert decoder.feed(b"[DONE]") == []
    assert decoder.flush() == [SseEvent(data="[DONE]", event="x")]
    assert SseDecoder(1024).feed(b'error: {"message": "m"}\n\n') == [
        SseEvent(data='{"message": "m"}', event="error")
    ]
    with pytest.raises(SseTooLarge):
        SseDecoder(1024).feed(b"data: " + b"x" * 2000 + b"\n")


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            400,
            {
                "error": {
                    "message": "maximum context length is 2048 tokens",
                    "code": 400,
                    "type": "BadRequestError",
                    "param": None,
                }
            },
            BackendHTTPError,
            "maximum context length is 2048 tokens",
        ),
        (
            503,
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
            BackendOverloaded,
            "Loading model",
        ),
        (
            400,
            {
                "object": "error",
                "message": "priority not enabled",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            BackendHTTPError,
            "priority not enabled",
        ),
    ],
)
async def test_http_errors_carry_the_body_message(
    backend_of: Any,
    status: int,
    body: dict[str, Any],
    error: type[BackendHTTPError],
    message: str,
) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.respond(status, body)

    fake = await backend_of(handler)
    async with BackendClient(BackendConfig(url=fake.url, model="m"), config()) as client:
        with pytest.raises(BackendHTTPError) as caught:
            await stream_all(client, request())
    assert type(caught.value) is error
    assert caught.value.status == status and caught.value.detail == message
    assert isinstance(caught.value, BackendUnavailable) == (status == 503)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([b'data: {"choices": [{"text": "a"}]}\n\n'], "ended before \\[DONE\\]"),
        ([b"data: {not json\n\n"], "not JSON"),
        ([b'data: {"choices": "nope"}\n\n'], "bad chunk"),
        ([b"data: " + b"x" * 3000], "larger than 2048 bytes"),
    ],
)
async def test_misbehaving_backend_gives_protocol_errors(
    backend_of: Any, script: list[bytes], expected: str
) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        for data in script:
            await conn.send(data)
        await conn.finish()

    fake = await backend_of(handler)
    cfg = config().model_copy(update={"max_event_bytes": 2048})
    async with BackendClient(BackendConfig(url=fake.url, model="m"), cfg) as client:
        with pytest.raises(BackendProtocolError, match=expected):
            await asyncio.wait_for(stream_all(client, request()), 5)


async def test_json_answer_instead_of_a_stream_is_a_protocol_error(backend_of: Any) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.respond(200, {"choices": [{"text": "not streamed"}]})

    fake = await backend_of(handler)
    async with BackendClient(BackendConfig(url=fake.url, model="m"), config()) as client:
        with pytest.raises(BackendProtocolError, match="expected an event stream"):
            await stream_all(client, request())


async def test_cancelling_the_consumer_closes_the_connection_within_50ms(
    backend_of: Any,
) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event(vllm_chunk("first"))
        # then nothing: a long generation in progress; the server waits for the hang-up

    fake = await backend_of(handler)
    got_first = asyncio.Event()

    async def consume(client: BackendClient) -> None:
        async with client.stream(request()) as stream:
            async for _ in stream:
                got_first.set()

    loop = asyncio.get_running_loop()
    async with BackendClient(BackendConfig(url=fake.url, model="m"), config()) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(got_first.wait(), 5)
        cancelled_at = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        hung_up = await asyncio.wait_for(fake.hangups.get(), 1)
    assert hung_up - cancelled_at < 0.05


async def test_leaving_the_block_early_closes_the_connection(backend_of: Any) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        for i in range(1000):
            await conn.event(vllm_chunk(str(i)))

    fake = await backend_of(handler)
    async with BackendClient(BackendConfig(url=fake.url, model="m"), config()) as client:
        async with client.stream(request()) as stream:
            async for chunk in stream:
                if chunk.text == "2":
                    break
        left_at = asyncio.get_running_loop().time()
        # The pool is still open: only the stream's own close can end the connection.
        hung_up = await asyncio.wait_for(fake.hangups.get(), 1)
    assert hung_up - left_at < 0.05


async def test_connection_refused_is_unavailable() -> None:
    port = free_port()
    async with BackendClient(
        BackendConfig(url=f"http://127.0.0.1:{port}", model="m"), config()
    ) as client:
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await stream_all(client, request())


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("llamacpp", {"content": "def f", "add_special": False}),
        ("vllm", {"model": "m", "prompt": "def f", "add_special_tokens": False}),
    ],
)
async def test_tokenize_speaks_each_servers_dialect(
    backend_of: Any, kind: str, expected: dict[str, Any]
) -> None:
    async def handler(req: Received, conn: Conn) -> None:
        await conn.respond(200, {"tokens": [1, 2, 3], "count": 3})

    fake = await backend_of(handler)
    backend = BackendConfig(url=fake.url, model="m", kind=kind)  # type: ignore[arg-type]
    async with BackendClient(backend, config()) as client:
        assert await client.tokenize("def f") == [1, 2, 3]
    assert fake.requests[0].path == "/tokenize" and fake.requests[0].json() == expected


# --- cache salt and priority through the gateway -------------------------------------------


def test_cache_salt_is_per_room_and_per_secret() -> None:
    a1, a2 = room_cache_salt(b"hub-secret", "team-a"), room_cache_salt(b"hub-secret", "team-a")
    b = room_cache_salt(b"hub-secret", "team-b")
    other_hub = room_cache_salt(b"another-secret", "team-a")
    assert a1 == a2 and a1 != b and a1 != other_hub
    assert "team-a" not in a1 and len(a1) == 64
    with pytest.raises(ValueError):
        room_cache_salt(b"", "team-a")


async def test_salt_sent_on_every_request_and_priority_only_when_enabled(
    backend_of: Any,
) -> None:
    plain = await backend_of(vllm_stream)
    prioritised = await backend_of(vllm_stream)
    context = CodeContext(path="a.py", prefix="def f", suffix="\n")
    for fake, enabled in ((plain, False), (prioritised, True)):
        cfg = config().model_copy(
            update={
                "backends": [BackendConfig(url=fake.url, model="m", priority=enabled)],
                "completion_priority": -5,
                "summary_priority": 7,
            }
        )
        async with LlmGateway(cfg, b"hub-secret") as llm:
            for room in ("team-a", "team-b", "team-a"):
                async with llm.complete(room, context) as stream:
                    await stream.collect()
            async with llm.generate("team-a", "Summarise:") as stream:
                await stream.collect()
    for fake, enabled in ((plain, False), (prioritised, True)):
        bodies = [r.json() for r in fake.requests]
        assert len(bodies) == 4
        salts = [body["cache_salt"] for body in bodies]
        assert salts[0] == salts[2] == salts[3] == room_cache_salt(b"hub-secret", "team-a")
        assert salts[1] == room_cache_salt(b"hub-secret", "team-b") != salts[0]
        priorities = [body.get("priority") for body in bodies]
        assert priorities == ([-5, -5, -5, 7] if enabled else [None] * 4)
        assert bodies[3]["max_tokens"] == cfg.summary_max_tokens
        assert bodies[0]["max_tokens"] == cfg.max_tokens


# --- router --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def backends(n: int) -> list[BackendConfig]:
    return [BackendConfig(url=f"http://127.0.0.1:{9000 + i}", model="m") for i in range(n)]


async def test_rendezvous_assignment_is_consistent_and_spread() -> None:
    three = backends(3)
    async with Router(config(), three) as router, Router(config(), three[::-1]) as reordered:
        rooms = [f"room-{i}" for i in range(300)]
        first = {room: router.ranked(room)[0].url for room in rooms}
        assert first == {room: reordered.ranked(room)[0].url for room in rooms}
        assert first == {room: router.ranked(room)[0].url for room in rooms}
        counts = {b.url: list(first.values()).count(b.url) for b in three}
        assert all(60 < c < 140 for c in counts.values()), counts
    # Adding a replica only moves the rooms it wins; the others keep their warm cache.
    async with Router(config(), backends(4)) as grown:
        moved = [room for room in rooms if grown.ranked(room)[0].url != first[room]]
        assert all(grown.ranked(room)[0].url.endswith(":9003") for room in moved)
        assert 40 < len(moved) < 110


async def test_failover_when_a_port_is_closed_and_recovery_after_cooldown(
    backend_of: Any,
) -> None:
    healthy = await backend_of(vllm_stream)
    dead_port = free_port()
    dead = BackendConfig(url=f"http://127.0.0.1:{dead_port}", model="m")
    alive = BackendConfig(url=healthy.url, model="m")
    now = [1000.0]
    cfg = config().model_copy(update={"failover_cooldown_s": 10.0})
    req = CompletionRequest(model="m", prompt="x", max_tokens=4)
    async with Router(cfg, [alive, dead], clock=lambda: now[0]) as router:
        room = next(r for r in (f"room-{i}" for i in range(100)) if router.ranked(r)[0] == dead)
        async with router.stream(room, lambda b: req) as stream:
            assert stream.url == healthy.url
            assert (await stream.collect()).text == "def f(x):"
        assert not router.is_up(dead) and router.is_up(alive)
        assert len(healthy.requests) == 1

        # While down, the dead replica is skipped without a connection attempt.
        now[0] += 9.0
        async with router.stream(room, lambda b: req) as stream:
            assert stream.url == healthy.url
            await stream.collect()

        # The replica comes back on its port; after the cooldown the room returns to it.
        async with FakeBackend(vllm_stream, port=dead_port) as back:
            assert not router.is_up(dead)
            now[0] += 1.5
            assert router.is_up(dead)
            async with router.stream(room, lambda b: req) as stream:
                assert stream.url == dead.url
                assert (await stream.collect()).finish_reason == "length"
            assert len(back.requests) == 1
        assert len(healthy.requests) == 2


async def test_all_backends_down_is_a_clear_error() -> None:
    down = [BackendConfig(url=f"http://127.0.0.1:{free_port()}", model="m") for _ in range(2)]
    async with Router(config(), down) as router:
        with pytest.raises(NoBackendAvailable, match="cannot connect"):
            async with router.stream("room", lambda b: request()):
                pass
        assert not any(router.is_up(b) for b in down)
        # Every replica is down: still tried (a model that finished loading answers at once),
        # soonest to recover first, and the error names each.
        first_back = min(down, key=lambda b: router._down_until[b.key])
        assert router.candidates("room")[0] == first_back
        with pytest.raises(NoBackendAvailable, match="cannot connect") as again:
            async with router.stream("room", lambda b: request()):
                pass
        assert all(b.url in str(again.value) for b in down)


async def test_a_single_backend_that_was_down_serves_as_soon_as_it_is_back(
    backend_of: Any,
) -> None:
    calls = 0

    async def loading_then_ready(req: Received, conn: Conn) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await conn.respond(503, {"object": "error", "message": "loading", "code": 503})
        else:
            await vllm_stream(req, conn)

    fake = await backend_of(loading_then_ready)
    only = BackendConfig(url=fake.url, model="m")
    async with Router(config(), [only]) as router:
        with pytest.raises(NoBackendAvailable, match="loading"):
            async with router.stream("room", lambda b: request()):
                pass
        assert not router.is_up(only)
        async with router.stream("room", lambda b: request()) as stream:
            assert (await stream.collect()).text == "def f(x):"
        assert router.is_up(only)


async def test_http_error_does_not_fail_over(backend_of: Any) -> None:
    async def bad_request(req: Received, conn: Conn) -> None:
        await conn.respond(400, {"error": {"message": "bad prompt"}})

    first = await backend_of(bad_request)
    second = await backend_of(bad_request)
    pair = [BackendConfig(url=first.url, model="m"), BackendConfig(url=second.url, model="m")]
    async with Router(config(), pair) as router:
        with pytest.raises(BackendHTTPError, match="bad prompt"):
            async with router.stream("room", lambda b: request()):
                pass
        assert all(router.is_up(b) for b in pair)
    assert len(first.requests) + len(second.requests) == 1
