"""The hub's AI gateway, driven through a real hub connection (``HubClient.request``): the
prompt is built from the room's copy, which holds the asker's last keystrokes; streamed
partials come before the answer; the newest request wins and closes the older upstream;
read-only members may ask; backend failures are clear errors for that request only.

The backend is ``tests.support.replay.FakeBackend``, replaying vLLM-shaped streams on 127.0.0.1 and
observing what the hub sends and when it hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Assoc, Doc, StickyIndex, Text

from huddle.collab import schema
from huddle.lsp.hub_client import HubClient
from huddle.protocol import RpcError
from huddle.server.ai import FairLimiter
from huddle.server.hub import Hub
from tests.support.peers import HubProcess, eventually, token
from tests.support.replay import Conn, Endless, FakeBackend, Received, streaming, vllm_chunk

ROOM = "team/ai"


async def connect(hub: Hub, data_dir: Path, user: str, role: str = "edit") -> HubClient:
    client = HubClient(hub.url, ROOM, token(data_dir, ROOM, user, role))
    await client.__aenter__()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


@pytest.fixture
async def clients(ai_hub: Hub, data_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[HubClient] = []

    async def open_client(user: str, role: str = "edit") -> HubClient:
        client = await connect(ai_hub, data_dir, user, role)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.__aexit__(None, None, None)


def cursor(doc: Doc[Any], path: str, offset: int) -> dict[str, Any]:
    text = schema.files(doc)[path]
    assert isinstance(text, Text)
    assoc = Assoc.AFTER if offset < len(text) else Assoc.BEFORE
    return dict(StickyIndex.new(text, offset, assoc).to_json())


def params(client: HubClient, path: str, offset: int, **extra: Any) -> dict[str, Any]:
    import base64

    return {
        "path": path,
        "cursor": cursor(client.doc, path, offset),
        "state": base64.b64encode(client.doc.get_state()).decode(),
        **extra,
    }


async def seeded(client: HubClient, path: str, content: str) -> Text:
    assert await client.request("create_file", {"path": path, "content": content})
    await eventually(lambda: path in schema.files(client.doc), what="the file reaches the client")
    text = schema.files(client.doc)[path]
    assert isinstance(text, Text)
    return text


async def test_prompt_holds_the_keystrokes_typed_just_before_the_request(
    clients: Callable[..., Any], backend: FakeBackend, ai_hub: Hub
) -> None:
    ann = await clients("ann")
    text = await seeded(ann, "src/app.py", "def main():\n    \n")
    await seeded(ann, "src/util.py", "def helper():\n    return 42\n")
    schema.files(ann.doc)["src/util.py"].insert(0, "# edited\n")  # recently edited context
    text.insert(16, "value = compute_")  # typed, and asked about at once: no wait in between
    partials: list[str] = []
    answer = await ann.request(
        "complete",
        params(ann, "src/app.py", 16 + len("value = compute_")),
        lambda method, p: partials.append(p["text"]),
    )
    sent = backend.requests[-1].json()
    # Qwen2.5-Coder's repo-level FIM: other files first, then the current one, cursor last.
    assert sent["prompt"].startswith(f"<|repo_name|>{ROOM}\n<|file_sep|>src/util.py\n# edited\n")
    assert (
        "<|fim_prefix|>def main():\n    value = compute_<|fim_suffix|>\n<|fim_middle|>"
        in (sent["prompt"])
    )
    assert sent["stream"] is True and len(sent["cache_salt"]) == 64
    assert answer["text"] == "x = 1" and answer["model"] == "m"  # as the backend names it
    assert partials == ["x = 1"]


async def test_cache_salt_is_the_rooms_on_every_request(
    clients: Callable[..., Any], backend: FakeBackend, ai_hub: Hub, data_dir: Path
) -> None:
    ann = await clients("ann")
    await seeded(ann, "a.py", "a = ")
    for _ in range(2):
        await ann.request("complete", params(ann, "a.py", 4))
    other = HubClient(ai_hub.url, "team/other", token(data_dir, "team/other", "ann"))
    async with other:
        await asyncio.wait_for(other.synced.wait(), 10)
        assert await other.request("create_file", {"path": "a.py", "content": "a = "})
        await eventually(lambda: "a.py" in schema.files(other.doc), what="seeded")
        await other.request("complete", params(other, "a.py", 4))
    salts = [r.json()["cache_salt"] for r in backend.requests]
    assert salts[0] == salts[1] != salts[2]
    assert all(salts)


async def test_a_block_completion_stops_reading_the_model_at_the_blocks_end(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    backend.handler = streaming(
        "if x:\n", "        y()\n", "    return y\n", "\n", "def other", "():\n", delay=0.01
    )
    ann = await clients("ann")
    await seeded(ann, "m.py", "def f(x):\n    \n    pass\n")
    answer = await ann.request("complete", params(ann, "m.py", 14))
    assert answer["scope"] == "block" and answer["finish_reason"] == "stop"
    assert answer["text"] == "if x:\n        y()\n    return y"
    # The hub hung up as soon as the block ended: the backend never sent "():\n".
    await asyncio.wait_for(backend.hangups.get(), 2)


async def test_line_scope_and_text_already_after_the_cursor_is_not_repeated(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    backend.handler = streaming("a, b)", "\nprint(1)\n")
    ann = await clients("ann")
    await seeded(ann, "m.py", "total = add()\n")
    answer = await ann.request("complete", params(ann, "m.py", len("total = add(")))
    assert answer["scope"] == "line"
    assert answer["text"] == "a, b"  # the ")" already follows the cursor


async def test_the_newest_request_for_a_document_cancels_the_older_upstream(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "x = \n")
    backend.handler = endless = Endless()
    first = asyncio.ensure_future(ann.request("complete", params(ann, "m.py", 4)))
    await eventually(lambda: endless.closed_at is not None, what="the first request upstream")
    backend.handler = streaming("42")
    second = await ann.request("complete", params(ann, "m.py", 4))
    assert second["text"] == "42"
    with pytest.raises(RpcError) as cancelled:
        await first
    assert cancelled.value.code == "cancelled"
    assert endless.closed_at is not None
    await asyncio.wait_for(endless.closed_at, 2)  # the older generation was stopped upstream


async def test_cancelling_a_request_closes_the_upstream_stream(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "x = \n")
    backend.handler = endless = Endless()
    ask = asyncio.ensure_future(ann.request("complete", params(ann, "m.py", 4)))
    await eventually(lambda: endless.closed_at is not None, what="the request upstream")
    assert endless.closed_at is not None and not endless.closed_at.done()
    cancelled_at = asyncio.get_running_loop().time()
    ask.cancel()
    closed_at = await asyncio.wait_for(endless.closed_at, 2)
    assert closed_at - cancelled_at < 0.05


async def test_a_read_only_member_may_ask_for_completions(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "x = \n")
    reader = await clients("rita", "read")
    await eventually(lambda: "m.py" in schema.files(reader.doc), what="the reader syncs")
    answer = await reader.request("complete", params(reader, "m.py", 4))
    assert answer["text"] == "x = 1"


async def test_backend_failures_fail_that_request_only(
    clients: Callable[..., Any], backend: FakeBackend, ai_hub: Hub
) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "x = \n")

    async def error_midstream(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event(vllm_chunk("par"))
        await conn.event({"error": {"message": "CUDA out of memory", "code": 500}})

    async def bad_request(req: Received, conn: Conn) -> None:
        await conn.respond(400, {"object": "error", "message": "prompt too long", "code": 400})

    backend.handler = error_midstream
    with pytest.raises(RpcError) as failed:
        await ann.request("complete", params(ann, "m.py", 4))
    assert failed.value.code == "ai_failed" and "CUDA out of memory" in failed.value.message

    backend.handler = bad_request
    with pytest.raises(RpcError) as refused:
        await ann.request("complete", params(ann, "m.py", 4))
    assert refused.value.code == "ai_failed" and "prompt too long" in refused.value.message

    backend.handler = streaming("1")
    assert (await ann.request("complete", params(ann, "m.py", 4)))["text"] == "1"
    schema.files(ann.doc)["m.py"].insert(4, "1")  # the connection is still a good one
    await ann.flush()
    metrics = ai_hub.metrics.render().decode()
    assert 'huddle_ai_requests_total{kind="complete",outcome="failed"} 2.0' in metrics
    assert 'huddle_ai_requests_total{kind="complete",outcome="ok"} 1.0' in metrics
    assert "huddle_ai_first_token_seconds_count 2.0" in metrics  # "par" and "1"


async def test_invalid_requests_are_refused_clearly(clients: Callable[..., Any]) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "x = \n")
    good = params(ann, "m.py", 4)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "path": "nope.py"}, "not_found"),
        ({**good, "cursor": {"item": {"client": 1, "clock": 999}, "assoc": 0}}, "invalid_params"),
        ({**good, "state": "%%%"}, "invalid_params"),
        ({**good, "max_tokens": 10**6}, "invalid_params"),
        ({"path": "m.py"}, "invalid_params"),
    ]
    for request, code in cases:
        with pytest.raises(RpcError) as refused:
            await ann.request("complete", request)
        assert refused.value.code == code, request


async def test_fair_limiter_gives_a_freed_slot_to_the_user_with_fewest_running() -> None:
    limiter = FairLimiter(total=2, per_user=2)
    order: list[str] = []
    release = asyncio.Event()

    async def use(user: str) -> None:
        async with limiter.slot(user):
            order.append(user)
            await release.wait()

    tasks = [asyncio.ensure_future(use(u)) for u in ("ann", "ann", "ann", "ann", "bob")]
    await eventually(lambda: len(order) == 2 and limiter.waiting == 3, what="ann holds both")
    release.set()
    await asyncio.gather(*tasks)
    # When ann's slots free up, bob (running none) goes before ann's third and fourth.
    assert order[:3] == ["ann", "ann", "bob"]

    limiter = FairLimiter(total=4, per_user=1)
    release.clear()
    order.clear()
    tasks = [asyncio.ensure_future(use(u)) for u in ("ann", "ann", "bob")]
    await eventually(lambda: len(order) == 2, what="one slot each")
    assert sorted(order) == ["ann", "bob"] and limiter.waiting == 1
    tasks[1].cancel()  # a waiter that gives up leaves no slot taken
    await asyncio.gather(tasks[1], return_exceptions=True)
    assert limiter.waiting == 0
    release.set()
    await asyncio.gather(tasks[0], tasks[2])
    assert not limiter.running


@pytest.mark.timeout(120)
async def test_huddle_serve_starts_the_embedded_model_and_completes_with_it(
    tmp_path: Path,
) -> None:
    """The main job as users run it: no backend configured, the embedded model starts with
    the hub and a completion comes back from it."""
    data = tmp_path / "served"
    async with HubProcess(data, env={"HUDDLE_HUB__LLM__PRELOAD": "true"}) as served:
        assert served.proc is not None and served.proc.stdout is not None
        line = await asyncio.wait_for(served.proc.stdout.readline(), 60)
        assert line.startswith(b"AI: embedded smollm2-135m-instruct on http://127.0.0.1:"), line
        client = HubClient(served.url, ROOM, token(data, ROOM, "ann"))
        async with client:
            await asyncio.wait_for(client.synced.wait(), 10)
            await seeded(client, "calc.py", "def add(a, b):\n    return \n")
            answer = await client.request("complete", params(client, "calc.py", 26))
        assert answer["scope"] == "line" and answer["text"].strip()
        assert answer["model"] == "smollm2-135m-instruct", answer


async def test_private_files_never_reach_the_model_and_every_request_is_audited(
    clients: Callable[..., Any], backend: FakeBackend, ai_hub: Hub
) -> None:
    """A Node or browser client can put anything in a room; the hub still keeps secrets and
    the room's own .huddleignore away from the model."""
    ann = await clients("ann")
    await seeded(ann, ".env", "API_KEY=sk-live-123\n")
    await seeded(ann, ".huddleignore", "notes/\n")
    await seeded(ann, "notes/plan.md", "SECRET PLAN\n")
    await seeded(ann, "lib.py", "def lib():\n    pass\n")
    for path in (".env", "notes/plan.md", "lib.py"):
        schema.files(ann.doc)[path].insert(0, "# edited\n")  # all recently edited
    await seeded(ann, "main.py", "x = \n")
    answer = await ann.request("complete", params(ann, "main.py", 4))
    assert answer["text"] == "x = 1"
    prompt = backend.requests[-1].json()["prompt"]
    assert "<|file_sep|>lib.py" in prompt
    assert "sk-live-123" not in prompt and "SECRET PLAN" not in prompt
    for private in (".env", "notes/plan.md"):
        with pytest.raises(RpcError) as refused:
            await ann.request("complete", params(ann, private, 0))
        assert refused.value.code == "forbidden"
    assert len(backend.requests) == 1

    (record,) = ai_hub.audit.read()
    assert record["room"] == ROOM and record["user"] == "ann" and record["kind"] == "completion"
    assert record["files"] == [".huddleignore", "lib.py", "main.py"]
    assert record["outcome"] == "ok" and record["backend"] == backend.url
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] == 1
    assert "prompt" not in record and "completion" not in record  # content only if configured
    assert "sk-live" not in ai_hub.audit.path.read_text()


async def test_a_cursor_anchored_on_an_edit_still_on_its_way_falls_back_to_its_offset(
    clients: Callable[..., Any], backend: FakeBackend
) -> None:
    ann = await clients("ann")
    await seeded(ann, "m.py", "total = \n")
    unknown = {"item": {"client": 424242, "clock": 7}, "assoc": 0}  # not in the hub's doc
    answer = await ann.request(
        "complete", {**params(ann, "m.py", 8), "cursor": unknown, "offset": 8}
    )
    assert answer["text"] == "x = 1"
    assert "<|fim_prefix|>total = <|fim_suffix|>\n" in backend.requests[-1].json()["prompt"]
