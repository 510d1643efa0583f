"""AI in the browser client: ghost-text completions and the summary panel, through the hub's RPC
on the page's own websocket (the requests huddle lsp makes), in a real headless chromium against
a real hub with the real embedded model (SmolLM2 through llama.cpp), or, to control timing, a
backend that streams and never finishes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from huddle.collab.schema import file_texts
from huddle.llm import BackendConfig, LlmConfig, LlmTimeouts
from huddle.protocol import HubMethod, HubNotification, web_url
from huddle.server.hub import Hub
from tests.conftest import AI_MODEL
from tests.support.browser import Browser
from tests.support.hubs import local_hub
from tests.support.peers import ROOT, NodeClient, eventually, token
from tests.support.replay import Endless, FakeBackend

ROOM = "acme/webapp"
MODEL_TIMEOUT = 90.0  # the embedded model starts at the first AI request, on a busy machine


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    """The hub with its default AI (the embedded model), summaries kept short."""
    async with local_hub(data_dir, llm=LlmConfig(summary_max_tokens=24)) as running:
        yield running


@pytest.fixture
async def endless() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(Endless()) as fake:
        yield fake


@pytest.fixture
async def endless_hub(data_dir: Path, endless: FakeBackend) -> AsyncIterator[Hub]:
    llm = LlmConfig(
        backends=[BackendConfig(url=endless.url, model=AI_MODEL)],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=5, between_chunks_s=60),
    )
    async with local_hub(data_dir, llm=llm) as running:
        yield running


RPC_TS = ROOT / "editor-clients" / "web" / "src" / "rpc.ts"


def test_the_page_spells_the_contracts_names() -> None:
    """rpc.ts's method and notification names are huddle.protocol's (the page's requests fail
    as unknown_method, and its partials go unseen, if they drift)."""
    source = RPC_TS.read_text()
    blocks = dict(
        re.findall(r"export const (HubMethod|HubNotification) = \{(.*?)\} as const", source, re.S)
    )
    methods = set(re.findall(r"'([^']+)'", blocks["HubMethod"]))
    notifications = set(re.findall(r"'([^']+)'", blocks["HubNotification"]))
    assert methods == {
        HubMethod.COMPLETE.value,
        HubMethod.COMPLETION_OUTCOME.value,
        HubMethod.SUMMARIZE.value,
    }
    assert notifications == {n.value for n in HubNotification}


def _hub_text(hub: Hub, path: str) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(path)


async def _seeded(client: NodeClient, contents: dict[str, str]) -> None:
    await client.wait_event("synced")
    for path, text in contents.items():
        await client.request("insert", file=path, index=0, text=text)


def _final_ghost(shown: dict[str, object]) -> bool:
    ghost = shown["ghost"]
    return (
        isinstance(ghost, list)
        and len(ghost) == 1
        and bool(ghost[0]["text"].strip())
        and ghost[0]["final"]
    )


async def test_ghost_text_from_the_model_is_accepted_with_tab(
    model_hub: Hub, data_dir: Path
) -> None:
    """The user pauses after typing: the model's completion shows as ghost text at the cursor;
    Escape dismisses it, typing asks again, Tab inserts exactly what was shown, through the CRDT
    into the hub."""
    start = "def add(a, b):\n"
    async with (
        NodeClient(model_hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        await _seeded(node, {"calc.py": start})
        await browser.open("amy", web_url(model_hub.url, ROOM, token(data_dir, ROOM, "amy")))
        await browser.wait("amy", "calc.py", lambda s: s["text"] == start)
        await browser.request("focusEnd", page="amy")
        await browser.request("type", page="amy", text="    return ")
        typed = start + "    return "
        await browser.wait("amy", "the model's ghost text", _final_ghost, MODEL_TIMEOUT)
        await browser.request("press", page="amy", key="Escape")
        shown = await browser.wait("amy", "dismissed", lambda s: s["ghost"] == [])
        assert shown["text"] == typed  # Escape only dismissed it

        # Typing on asks again (the space retyped: the same prompt).
        await browser.request("press", page="amy", key="Backspace")
        await browser.request("type", page="amy", text=" ")
        shown = await browser.wait("amy", "ghost text again", _final_ghost, MODEL_TIMEOUT)
        suggestion = shown["ghost"][0]["text"]
        print(f"ghost text {suggestion!r}")
        assert shown["text"] == typed  # shown beside the text, not in it
        await browser.request("press", page="amy", key="Tab")
        expected = typed + suggestion
        shown = await browser.wait(
            "amy", "accepted", lambda s: s["text"] == expected and s["ghost"] == []
        )
        await eventually(lambda: _hub_text(model_hub, "calc.py") == expected, what="in the hub")
        assert (await node.files())["calc.py"] == expected
        assert shown["errors"] == []
    audit = model_hub.audit.read()
    asked = [r for r in audit if r["kind"] == "completion" and r["user"] == "amy"]
    assert asked and asked[-1]["files"] == ["calc.py"]  # audited like an editor's request


async def test_the_next_key_cancels_the_completion_on_the_hub(
    endless_hub: Hub, endless: FakeBackend, data_dir: Path
) -> None:
    """A completion still streaming shows its partial; the next key (or Escape) dismisses it and
    cancels the request on the hub, which closes the model's stream. Readers get none."""
    async with (
        NodeClient(endless_hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        await _seeded(node, {"main.py": "x = 1\n"})
        await browser.open("amy", web_url(endless_hub.url, ROOM, token(data_dir, ROOM, "amy")))
        await browser.wait("amy", "main.py", lambda s: s["text"] == "x = 1\n")
        await browser.request("focusEnd", page="amy")
        await browser.request("type", page="amy", text="y = ")

        def partial(shown: dict[str, object]) -> bool:
            return shown["ghost"] == [{"text": "slow", "final": False}]

        await browser.wait("amy", "the streamed partial", partial)
        assert len(endless.requests) == 1 and endless.hangups.empty()
        await browser.request("type", page="amy", text="2")
        await browser.wait("amy", "dismissed by typing", lambda s: s["ghost"] == [])
        await eventually(lambda: not endless.hangups.empty(), what="the model's stream closed")
        # The key cancelled it (RpcCancel), before the pause that asks again.
        assert len(endless.requests) == 1
        await endless.hangups.get()

        await browser.wait("amy", "asked again after the pause", partial)
        assert len(endless.requests) == 2
        await browser.request("press", page="amy", key="Escape")
        await browser.wait("amy", "dismissed by Escape", lambda s: s["ghost"] == [])
        await eventually(lambda: not endless.hangups.empty(), what="the second stream closed")
        assert len(endless.requests) == 2
        shown = await browser.state("amy")
        assert shown["text"] == "x = 1\ny = 2" and shown["errors"] == []

        # A reader: read-only editor, no completion asked.
        link = web_url(endless_hub.url, ROOM, token(data_dir, ROOM, "rita", role="read"))
        await browser.open("rita", link)
        await browser.wait("rita", "read only", lambda s: s["readOnly"] is True)
    outcomes = [(r["user"], r["outcome"]) for r in endless_hub.audit.read()]
    assert outcomes == [("amy", "cancelled"), ("amy", "cancelled")]


async def test_summarize_file_and_catch_up_stream_into_the_panel(
    model_hub: Hub, data_dir: Path
) -> None:
    """Summarize file and Catch me up: the model's text streams into the panel (partials before
    the final), which then shows the hub's markdown; a private file is refused as it is to
    editors, and every request is audited under the page's user."""
    code = "def area(r):\n    return 3.14159 * r * r\n"
    async with (
        NodeClient(model_hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        await _seeded(node, {"geometry.py": code, ".env": "TOKEN=hunter2\n"})
        await browser.open("bea", web_url(model_hub.url, ROOM, token(data_dir, ROOM, "bea")))
        await browser.wait("bea", "the files", lambda s: "geometry.py" in s["files"])
        await browser.request("clickFile", page="bea", path="geometry.py")
        await browser.wait("bea", "geometry.py", lambda s: s["text"] == code)

        await browser.request("clickButton", page="bea", button="summarize-file")
        shown = await browser.wait(
            "bea",
            "the file's summary",
            lambda s: s["summary"] is not None and s["summary"]["state"] == "done",
            MODEL_TIMEOUT,
        )
        summary = shown["summary"]
        assert summary["title"] == "Summary of geometry.py"
        assert summary["partials"] >= 1  # streamed: partials came before the final answer
        assert summary["text"].strip(), summary

        await browser.request("clickButton", page="bea", button="catch-up")
        shown = await browser.wait(
            "bea",
            "caught up",
            lambda s: s["summary"]["title"] == "Catching up" and s["summary"]["state"] == "done",
            MODEL_TIMEOUT,
        )
        summary = shown["summary"]
        assert summary["partials"] >= 1
        assert "geometry.py" in summary["text"] and "ann" in summary["text"]
        assert ".env" not in summary["text"] and "hunter2" not in summary["text"]

        # A private file never goes to a model, whoever asks.
        await browser.request("clickFile", page="bea", path=".env")
        await browser.request("clickButton", page="bea", button="summarize-file")
        shown = await browser.wait(
            "bea",
            "refused",
            lambda s: (
                s["summary"]["title"] == "Summary of .env" and s["summary"]["state"] == "failed"
            ),
        )
        assert "private" in shown["summary"]["status"], shown["summary"]
        assert shown["errors"] == []
    audit = [r for r in model_hub.audit.read() if r["kind"] == "summary"]
    assert [r["user"] for r in audit] == ["bea", "bea"]
    assert all(".env" not in r["files"] for r in audit)
