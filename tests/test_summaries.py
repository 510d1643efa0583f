"""Summaries end to end: a real LSP client runs the commands through a real `huddle lsp`, the
hub rebuilds history and asks the model (the real embedded one, or a replay server where a test
must see the prompts or the upstream stream). Assertions are on what the hub computed (files,
authors, line counts, progress), never on the model's wording."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pycrdt import Text

from huddle.collab import schema
from huddle.collab.schema import file_texts
from huddle.llm import BackendConfig, LlmConfig, LlmTimeouts
from huddle.lsp.hub_client import HubClient
from huddle.server.hub import Hub
from tests.support.hubs import local_hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually, token
from tests.support.replay import Endless, FakeBackend, streaming

ROOM = "team/summaries"


def options(hub: Hub, data_dir: Path, user: str) -> dict[str, str]:
    return {"hub": hub.url, "room": ROOM, "user": user, "token": token(data_dir, ROOM, user)}


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    """The embedded model, answers kept short so the suite stays quick."""
    llm = LlmConfig(summary_max_tokens=24, audit_content=True)
    async with local_hub(data_dir, llm=llm) as running:
        yield running


@pytest.fixture
async def replay_hub(data_dir: Path, backend: FakeBackend) -> AsyncIterator[Hub]:
    llm = LlmConfig(
        backends=[BackendConfig(url=backend.url, model="m", context_tokens=150)],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=5, between_chunks_s=5),
        audit_content=True,
    )
    async with local_hub(data_dir, llm=llm) as running:
        yield running


class Teammate:
    """A Yjs peer editing the room directly (what a teammate's editor sends)."""

    def __init__(self, hub: Hub, data_dir: Path, user: str) -> None:
        self.client = HubClient(hub.url, ROOM, token(data_dir, ROOM, user))

    async def __aenter__(self) -> Teammate:
        await self.client.__aenter__()
        await asyncio.wait_for(self.client.synced.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    def text(self, path: str) -> Text:
        files = schema.files(self.client.doc)
        if path not in files:
            files[path] = Text()
        text = files[path]
        assert isinstance(text, Text)
        return text

    def append(self, path: str, content: str) -> None:
        text = self.text(path)
        text.insert(len(text), content)

    async def settled(self, hub: Hub) -> None:
        await self.client.flush()
        room = hub.room(ROOM)
        assert room is not None
        mine = file_texts(self.client.doc)
        await eventually(lambda: file_texts(room.doc) == mine, what="the hub has the edits")


async def command(editor: Editor, name: str, *args: Any) -> Any:
    return await editor.client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=name, arguments=list(args))
    )


def progress_of(editor: Editor, result: dict[str, Any]) -> list[Any]:
    return list(editor.client.progress_reports[result["token"]])


@pytest.mark.timeout(180)
async def test_catch_up_reports_exactly_who_changed_what_with_progress_and_streaming(
    model_hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    async with (
        Teammate(model_hub, data_dir, "ann") as ann,
        Teammate(model_hub, data_dir, "bob") as bob,
    ):
        ann.append("app.py", "def main():\n    print('hello')\n")
        ann.append("util.py", "def add(a, b):\n    return a + b\n")
        await ann.settled(model_hub)
        await eventually(lambda: "util.py" in schema.files(bob.client.doc), what="bob syncs")
        bob.append("util.py", "\n\ndef sub(a, b):\n    return a - b\n")
        bob.append("README.md", "# Tools\n")
        await bob.settled(model_hub)

        async with Editor(tmp_path, init_options=options(model_hub, data_dir, "cy")) as cy:
            await cy.wait_status("connected")
            result = await command(cy, "huddle.catchUp")

        files = {f["path"]: f for f in result["files"]}
        assert files == {
            "README.md": {
                "path": "README.md",
                "authors": ["bob"],
                "added": 1,
                "removed": 0,
                "created": True,
                "deleted": False,
            },
            "app.py": {
                "path": "app.py",
                "authors": ["ann"],
                "added": 2,
                "removed": 0,
                "created": True,
                "deleted": False,
            },
            "util.py": {
                "path": "util.py",
                "authors": ["ann", "bob"],
                "added": 6,
                "removed": 0,
                "created": True,
                "deleted": False,
            },
        }
        assert result["summary"].strip(), "the model wrote nothing"
        assert "| `util.py` (new) | ann, bob | 6 | 0 |" in result["markdown"]
        assert result["markdown"].startswith("## Catching up: the room's start to "), "cy's first"

        reports = progress_of(cy, result)
        assert isinstance(reports[0], lsp.WorkDoneProgressBegin)
        assert isinstance(reports[-1], lsp.WorkDoneProgressEnd) and reports[-1].message == "done"
        middle = [r for r in reports[1:-1] if isinstance(r, lsp.WorkDoneProgressReport)]
        assert middle and middle[-1].percentage == 100
        partials = cy.notifications.get("huddle/summaryPartial", [])
        assert partials and partials[-1].token == result["token"]
        assert result["summary"].startswith(partials[-1].text.strip()[:10])

        # Caught up: asking again right away finds nothing new.
        async with Editor(tmp_path, init_options=options(model_hub, data_dir, "cy")) as cy:
            await cy.wait_status("connected")
            again = await command(cy, "huddle.catchUp")
        assert again["files"] == [] and "No changes by teammates" in again["markdown"]
        assert again["since"] >= result["until"]


async def test_an_ignored_file_never_reaches_the_model(
    replay_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    backend.handler = streaming("Summary.")
    async with Teammate(replay_hub, data_dir, "ann") as ann:
        since = time.time() - 1
        ann.append(".huddleignore", "private/\n")
        ann.append("private/plan.txt", "TOP SECRET PLAN\n")
        ann.append(".env", "TOKEN=hunter2\n")
        ann.append("main.py", "print('public')\n")
        await ann.settled(replay_hub)
        async with Editor(tmp_path, init_options=options(replay_hub, data_dir, "cy")) as cy:
            await cy.wait_status("connected")
            session = await command(
                cy, "huddle.summarizeSession", {"since": since, "until": time.time() + 1}
            )
    paths = [f["path"] for f in session["files"]]
    assert paths == [".huddleignore", "main.py"]
    prompts = [r.json()["prompt"] for r in backend.requests]
    assert prompts and all("SECRET" not in p and "hunter2" not in p for p in prompts)
    audit = replay_hub.audit.read()
    assert audit and all("private/plan.txt" not in r["files"] for r in audit)
    assert all(".env" not in r["files"] for r in audit)
    assert all("SECRET" not in r.get("prompt", "") for r in audit)


async def test_large_input_is_summarised_in_parts_with_real_progress(
    replay_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    backend.handler = streaming("- a part")
    async with Teammate(replay_hub, data_dir, "ann") as ann:
        for n in range(4):
            ann.append(f"mod{n}.py", "".join(f"value_{n}_{i} = {i}\n" for i in range(20)))
        await ann.settled(replay_hub)
        async with Editor(tmp_path, init_options=options(replay_hub, data_dir, "cy")) as cy:
            await cy.wait_status("connected")
            result = await command(cy, "huddle.catchUp")
    calls = len(backend.requests)
    assert calls >= 3, "a prompt budget of 600 characters cannot hold four 20-line diffs"
    assert backend.requests[-1].json()["prompt"].startswith("Combine these partial summaries")
    reports = [r for r in progress_of(cy, result) if isinstance(r, lsp.WorkDoneProgressReport)]
    percentages = [r.percentage for r in reports if r.percentage is not None]
    assert percentages == sorted(percentages) and percentages[-1] == 100
    assert len(set(percentages)) >= calls  # one step per model call made
    budget = 150 * 4
    assert all(len(r.json()["prompt"]) <= budget + 400 for r in backend.requests)


async def test_summarize_file_and_selection(
    replay_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    backend.handler = streaming("It adds.")
    async with Editor(tmp_path, init_options=options(replay_hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = cy.open("calc.py", "def add(a, b):\n    return a + b\n\n\ndef unused():\n    pass\n")
        await eventually(
            lambda: (
                replay_hub.room(ROOM) is not None
                and "calc.py" in file_texts(replay_hub.room(ROOM).doc)
            ),  # type: ignore[union-attr]
            what="shared",
        )
        whole = await command(cy, "huddle.summarizeFile", uri)
        assert whole["markdown"] == "It adds."
        assert "def unused" in backend.requests[-1].json()["prompt"]
        selection = lsp.Range(lsp.Position(0, 0), lsp.Position(2, 0))
        part = await command(cy, "huddle.summarizeSelection", {"uri": uri, "range": selection})
        prompt = backend.requests[-1].json()["prompt"]
        assert part["summary"] == "It adds."
        assert "calc.py, lines 1-3" in prompt and "def unused" not in prompt


async def test_cancelling_a_summary_closes_the_upstream_stream(
    replay_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    backend.handler = endless = Endless()
    async with Editor(tmp_path, init_options=options(replay_hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = cy.open("calc.py", "def add(a, b):\n    return a + b\n")
        await eventually(lambda: replay_hub.room(ROOM) is not None, what="joined")
        await eventually(
            lambda: "calc.py" in file_texts(replay_hub.room(ROOM).doc),  # type: ignore[union-attr]
            what="shared",
        )
        asked = asyncio.ensure_future(
            cy.client.protocol.send_request_async(
                lsp.WORKSPACE_EXECUTE_COMMAND,
                lsp.ExecuteCommandParams(command="huddle.summarizeFile", arguments=[uri]),
                msg_id="summary-1",
            )
        )
        await eventually(lambda: endless.closed_at is not None, what="the model is asked")
        assert endless.closed_at is not None
        cy.cancel("summary-1")
        # Closed by the cancel: the stream never ends, and the hub's own timeout (5 s between
        # chunks) is the only other thing that would close it.
        await asyncio.wait_for(endless.closed_at, 4)
        with pytest.raises(Exception, match="cancel"):
            await asked
        (token_,) = [t for t in cy.client.progress_reports if str(t).startswith("huddle-")]
        assert cy.client.progress_reports[token_][-1].message == "cancelled"


async def test_cancelling_the_progress_stops_the_summary_upstream(
    replay_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    """The cancel button on a progress notification (window/workDoneProgress/cancel)."""
    backend.handler = endless = Endless()
    async with Editor(tmp_path, init_options=options(replay_hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = cy.open("calc.py", "def add(a, b):\n    return a + b\n")
        await eventually(
            lambda: (
                replay_hub.room(ROOM) is not None
                and "calc.py" in file_texts(replay_hub.room(ROOM).doc)
            ),  # type: ignore[union-attr]
            what="shared",
        )
        asked = asyncio.ensure_future(command(cy, "huddle.summarizeFile", uri))
        await eventually(lambda: endless.closed_at is not None, what="the model is asked")
        (progress_token,) = list(cy.client.progress_reports)
        assert isinstance(cy.client.progress_reports[progress_token][0], lsp.WorkDoneProgressBegin)
        assert cy.client.progress_reports[progress_token][0].cancellable
        assert endless.closed_at is not None
        cy.client.window_work_done_progress_cancel(
            lsp.WorkDoneProgressCancelParams(token=progress_token)
        )
        await asyncio.wait_for(endless.closed_at, 2)
        with pytest.raises(Exception, match="cancel"):
            await asked
        await eventually(
            lambda: (
                cy.client.progress_reports[progress_token][-1]
                == lsp.WorkDoneProgressEnd(message="cancelled")
            ),
            what="the progress ends as cancelled",
        )


def _steps_aside_once(summary_calls: list[str], closed: asyncio.Event) -> Any:
    """A llama.cpp-like backend: completions answer ``x = 1``; the first summary call streams
    "It adds" and waits for the hub to hang up (``closed``), later ones finish the sentence.
    Every summary prompt is appended to ``summary_calls``."""
    from tests.support.replay import Conn, Received, vllm_chunk

    async def handler(req: Received, conn: Conn) -> None:
        prompt = req.json()["prompt"]
        await conn.start()
        if not prompt.startswith("Explain"):
            await conn.event(vllm_chunk("x = 1", finish="stop"))
        elif not summary_calls:
            summary_calls.append(prompt)
            await conn.event(vllm_chunk("It adds"))
            await conn.wait_closed()
            closed.set()
            return
        else:
            summary_calls.append(prompt)
            await conn.event(vllm_chunk(" two numbers.", finish="stop"))
        await conn.event("[DONE]")
        await conn.finish()

    return handler


def _on_llamacpp(backend: FakeBackend, *, wait_s: float, **settings: Any) -> LlmConfig:
    """The hub's AI on ``backend`` taken for llama.cpp (no priorities: summaries step aside),
    waiting ``wait_s`` for a first token and between chunks."""
    return LlmConfig(
        backends=[BackendConfig(url=backend.url, model="m", kind="llamacpp")],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=wait_s, between_chunks_s=wait_s),
        **settings,
    )


async def _share_calc(hub: Hub, cy: Editor) -> str:
    """``calc.py`` opened in ``cy`` and in the hub's room; its URI."""
    uri = cy.open("calc.py", "def add(a, b):\n    return a + b\n")
    await eventually(
        lambda: hub.room(ROOM) is not None and "calc.py" in file_texts(hub.room(ROOM).doc),  # type: ignore[union-attr]
        what="shared",
    )
    return uri


async def test_on_the_embedded_model_a_summary_steps_aside_for_a_completion(
    data_dir: Path, backend: FakeBackend, tmp_path: Path
) -> None:
    """llama.cpp has no priorities: the hub stops the summary while a completion runs in the
    room, then resumes it from what it had written."""

    summary_calls: list[str] = []
    first_closed = asyncio.Event()
    backend.handler = _steps_aside_once(summary_calls, first_closed)
    hub = local_hub(data_dir, llm=_on_llamacpp(backend, wait_s=5))
    async with hub, Editor(tmp_path, init_options=options(hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = await _share_calc(hub, cy)
        summary = asyncio.ensure_future(command(cy, "huddle.summarizeFile", uri))
        await eventually(lambda: bool(summary_calls), what="the summary streams")
        assert await cy.inline("calc.py", 4) == "x = 1"
        await asyncio.wait_for(first_closed.wait(), 5)  # it stepped aside
        result = await summary
    assert result["summary"] == "It adds two numbers."
    assert len(summary_calls) == 2 and summary_calls[1] == summary_calls[0] + "It adds"


async def test_a_resumed_summary_steps_aside_again_for_every_completion(
    data_dir: Path, backend: FakeBackend, tmp_path: Path
) -> None:
    """Every completion of the room stops the summary, not only the first: a resumed summary
    steps aside again, also for a completion that starts while the summary is reopening its
    stream (llama.cpp sends the headers only once it has processed the prompt)."""
    from tests.support.replay import Conn, Received, vllm_chunk

    summary_calls: list[str] = []
    closed = [asyncio.Event() for _ in range(3)]
    asked = [asyncio.Event() for _ in range(3)]  # the backend has the n-th completion
    completions = 0

    async def handler(req: Received, conn: Conn) -> None:
        nonlocal completions
        prompt = req.json()["prompt"]
        if not prompt.startswith("Explain"):
            asked[completions].set()
            completions += 1
            await conn.start()
            await conn.event(vllm_chunk("x = 1", finish="stop"))
        else:
            call = len(summary_calls)
            summary_calls.append(prompt)
            if call < 2:  # streams a word, then waits for the hub to hang up
                await conn.start()
                await conn.event(vllm_chunk(["It", " adds"][call]))
            if call < 3:
                await conn.wait_closed()
                closed[call].set()
                return
            await conn.start()
            await conn.event(vllm_chunk(" two numbers.", finish="stop"))
        await conn.event("[DONE]")
        await conn.finish()

    backend.handler = handler
    hub = local_hub(data_dir, llm=_on_llamacpp(backend, wait_s=30))
    async with hub, Editor(tmp_path, init_options=options(hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = await _share_calc(hub, cy)
        summary = asyncio.ensure_future(command(cy, "huddle.summarizeFile", uri))
        for call, offset in enumerate((4, 19, 3)):  # spots apart: the lsp reuses none
            # the summary's call is at the backend (streaming, or waiting for its headers)
            await eventually(lambda: len(summary_calls) > call, what=f"summary call {call}")  # noqa: B023
            assert await cy.inline("calc.py", offset) == "x = 1"
            await asyncio.wait_for(closed[call].wait(), 10)  # it stepped aside
        result = await asyncio.wait_for(summary, 30)
    assert result["summary"] == "It adds two numbers."
    first = summary_calls[0]
    assert summary_calls[1:] == [first + "It", first + "It adds", first + "It adds"]


async def test_a_summary_waits_for_a_quiet_moment_before_resuming(
    data_dir: Path, backend: FakeBackend, tmp_path: Path
) -> None:
    """Completions asked one after another (someone typing) are not each preceded by the
    summary restarting: it resumes once the room has had none for ``summary_resume_s``, or
    after ``summary_max_pause_s``, and then completes from what it had written."""

    summary_calls: list[str] = []
    closed = asyncio.Event()
    backend.handler = _steps_aside_once(summary_calls, closed)
    llm = _on_llamacpp(
        backend,
        wait_s=30,
        summary_resume_s=3600,  # never quiet enough: it resumes after the longest pause
        summary_max_pause_s=5,
    )
    hub = local_hub(data_dir, llm=llm)
    async with hub, Editor(tmp_path, init_options=options(hub, data_dir, "cy")) as cy:
        await cy.wait_status("connected")
        uri = await _share_calc(hub, cy)
        summary = asyncio.ensure_future(command(cy, "huddle.summarizeFile", uri))
        await eventually(lambda: bool(summary_calls), what="the summary streams")
        assert await cy.inline("calc.py", 4) == "x = 1"
        await asyncio.wait_for(closed.wait(), 10)  # it stepped aside
        assert await cy.inline("calc.py", 19) == "x = 1"
        assert len(summary_calls) == 1  # not restarted between the two completions
        result = await asyncio.wait_for(summary, 30)
    assert result["summary"] == "It adds two numbers."
    assert summary_calls[1] == summary_calls[0] + "It adds"
