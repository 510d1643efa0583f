"""AI completions in the editor, end to end: a real LSP client drives a real `huddle lsp`,
which asks the hub, which asks the model: the real embedded llama.cpp server, or a replay
server shaped like vLLM where a test needs to observe the upstream stream."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from huddle.collab.schema import file_texts
from huddle.protocol import Command
from huddle.server.hub import Hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually, token
from tests.support.replay import Conn, Endless, FakeBackend, Received, streaming

ROOM = "team/ai"


def options(hub: Hub, data_dir: Path, user: str, **extra: str) -> dict[str, str]:
    return {
        "hub": hub.url,
        "room": ROOM,
        "user": user,
        "token": token(data_dir, ROOM, user),
        **extra,
    }


async def opened(editor: Editor, hub: Hub, path: str, text: str) -> None:
    editor.open(path, text)

    def shared() -> bool:
        room = hub.room(ROOM)
        return room is not None and file_texts(room.doc).get(path) == text

    await eventually(shared, what=f"{path} in the room")

    # The room has the file before this editor's buffer is bound to it (its copy comes back
    # from the hub): a completion asked before then has no shared text to be read at.
    async def bound() -> bool:
        status = await editor.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=Command.STATUS)
        )
        return path in (status.get("shared") or [])

    await eventually(bound, what=f"{path} shared by the editor")


def partials(editor: Editor) -> list[Any]:
    return editor.notifications.get("huddle/inlineCompletionPartial", [])


@pytest.mark.timeout(120)
async def test_inline_completion_from_the_embedded_model_streams_partials_first(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    """LSP -> hub -> llama.cpp (xllamacpp, SmolLM2) and back, nothing faked."""
    async with Editor(tmp_path, init_options=options(hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        source = "def add(a, b):\n    return "
        await opened(ann, hub, "calc.py", source + "\n")
        asked = ann.ask_inline("calc.py", len(source))
        seen_first: list[list[Any]] = []
        asked.add_done_callback(lambda _: seen_first.append(list(partials(ann))))
        result = await asked
        assert isinstance(result, lsp.InlineCompletionList) and len(result.items) == 1
        item = result.items[0]
        assert isinstance(item.insert_text, str) and item.insert_text.strip()
        assert "\n" not in item.insert_text  # code before the cursor: a one-line completion
        here = ann.position("calc.py", len(source))
        assert item.range == lsp.Range(here, here)
        # Ghost text could show before the answer: partials came first, each growing.
        (before,) = seen_first
        assert before, "no huddle/inlineCompletionPartial before the response"
        texts = [p.text for p in before]
        assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
        assert before[0].textDocument.uri == ann.uri("calc.py")
        assert item.insert_text.startswith(texts[-1].rstrip())
        assert hub.ai.gateway is not None
        assert hub.ai.gateway.embedded is not None and hub.ai.gateway.embedded.running


async def test_the_prompt_holds_the_keystrokes_typed_just_before_asking(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "app.py", "def main():\n    \n")
        ann.type("app.py", 16, "total = compute_")
        text = await ann.inline("app.py", 16 + len("total = compute_"))
        assert text == "x = 1"
        prompt = backend.requests[-1].json()["prompt"]
        assert "<|fim_prefix|>def main():\n    total = compute_<|fim_suffix|>" in prompt


async def test_cancel_request_closes_the_upstream_stream(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    """The model's stream never ends by itself: only the editor's cancel closes it. How fast
    is a target, measured side by side in benchmarks/ai.py (p99 < 50 ms), not asserted here:
    on a loaded machine a timed assertion fails for reasons of its own (1 in 5 runs)."""
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "x = \n")
        for attempt in range(3):
            backend.handler = endless = Endless()
            answer = ann.ask_inline("m.py", 4, msg_id=f"ask-{attempt}")
            await eventually(lambda e=endless: e.closed_at is not None, what="the model is asked")
            assert endless.closed_at is not None and not endless.closed_at.done()
            ann.cancel(f"ask-{attempt}")
            await asyncio.wait_for(endless.closed_at, 10)
            with pytest.raises(Exception, match="cancel"):
                await answer


async def test_typing_into_a_completion_reuses_it(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "total = \n")
        backend.handler = streaming("price", " * ", "count")
        assert await ann.inline("m.py", 8) == "price * count"
        assert len(backend.requests) == 1
        ann.type("m.py", 8, "pri")
        assert await ann.inline("m.py", 11) == "ce * count"  # no second request
        ann.type("m.py", 11, "x")  # no longer matches: ask again
        backend.handler = streaming("_max")
        assert await ann.inline("m.py", 12) == "_max"
        assert len(backend.requests) == 2


async def test_a_cancelled_request_still_streaming_is_adopted_by_the_next_keystroke(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    """VS Code cancels its request on every keystroke and asks again at once."""
    release = asyncio.Event()

    async def slow(req: Received, conn: Conn) -> None:
        from tests.support.replay import vllm_chunk

        await conn.start()
        await conn.event(vllm_chunk("price"))
        await release.wait()
        await conn.event(vllm_chunk(" * count", finish="stop"))
        await conn.event("[DONE]")
        await conn.finish()

    backend.handler = slow
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "total = \n")
        first = ann.ask_inline("m.py", 8, msg_id="first")
        await eventually(lambda: any(p.text == "price" for p in partials(ann)), what="a partial")
        ann.type("m.py", 8, "p")
        ann.cancel("first")
        second = ann.ask_inline("m.py", 9)
        await asyncio.sleep(0.1)  # longer than the grace period: the stream was adopted
        release.set()
        result = await second
        assert result is not None and result.items[0].insert_text == "rice * count"
        assert len(backend.requests) == 1
        with pytest.raises(Exception, match="cancel"):
            await first


async def test_completion_item_for_editors_without_inline_completion(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    backend.handler = streaming("a, b)", "\n")
    async with (
        Editor(
            tmp_path, init_options=options(ai_hub, data_dir, "old"), inline_completion=False
        ) as old,
        Editor(tmp_path, init_options=options(ai_hub, data_dir, "new")) as new,
    ):
        await old.wait_status("connected")
        await opened(old, ai_hub, "m.py", "add()\n")
        here = old.position("m.py", 4)
        params = lsp.CompletionParams(lsp.TextDocumentIdentifier(old.uri("m.py")), here)
        result = await old.client.text_document_completion_async(params)
        assert isinstance(result, lsp.CompletionList) and result.is_incomplete
        (item,) = result.items
        assert item.text_edit == lsp.TextEdit(lsp.Range(here, here), "a, b")  # ")" is there
        assert item.label == "a, b" and item.detail == "Huddle AI"

        await new.wait_status("connected")
        new.open("m.py", "add()\n")
        empty = await new.client.text_document_completion_async(
            lsp.CompletionParams(lsp.TextDocumentIdentifier(new.uri("m.py")), here)
        )
        assert isinstance(empty, lsp.CompletionList) and not empty.items  # inline instead
        assert len(backend.requests) == 1


async def test_a_failing_backend_is_a_clear_error_and_editing_goes_on(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    async def unavailable(req: Received, conn: Conn) -> None:
        await conn.respond(503, {"object": "error", "message": "model is loading", "code": 503})

    backend.handler = unavailable
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "x = \n")
        with pytest.raises(Exception, match="model is loading") as failed:
            await ann.inline("m.py", 4)
        assert "Huddle AI" in str(failed.value)
        ann.type("m.py", 4, "1")
        await eventually(
            lambda: file_texts(ai_hub.room(ROOM).doc)["m.py"] == "x = 1\n",  # type: ignore[union-attr]
            what="editing still works",
        )
        backend.handler = streaming("2")
        assert await ann.inline("m.py", 5) == "2"


async def test_a_request_is_read_at_the_text_it_was_sent_for(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    """A request's position is in the text as of the changes sent before it, not after: a
    change sent right behind the request (typing goes on) must not move it. Here it would
    put UTF-16 character 2, between two emoji, inside the first one."""
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await opened(ann, ai_hub, "app.py", "😀😀\n")
        for _ in range(10):
            asked = ann.ask_inline("app.py", 1)  # between the emoji
            ann.type("app.py", 0, "a")  # in the same read as the request, on the server
            assert await asked is not None  # answered at its own text: no "invalid position"
            ann.replace("app.py", 0, 1, "")

            def undone() -> bool:
                room = ai_hub.room(ROOM)
                return room is not None and file_texts(room.doc).get("app.py") == "😀😀\n"

            await eventually(undone, what="the typed character removed again")
