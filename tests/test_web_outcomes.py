"""Acceptance in the browser client: the page tells the hub what became of each completion it
showed (``completion_outcome``, under the id the hub's answer carries), as ``huddle lsp`` does for
editors, so a browser guest's completions count in ``/metrics`` and the audit log. In a real
headless chromium against a real hub with the real embedded model (SmolLM2 through llama.cpp)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from huddle.protocol import web_url
from huddle.server.hub import Hub
from tests.support.browser import Browser
from tests.support.hubs import local_hub
from tests.support.peers import NodeClient, eventually, token
from tests.support.replay import FakeBackend, streaming

ROOM = "acme/webapp"
MODEL_TIMEOUT = 90.0  # the embedded model starts at the first AI request, on a busy machine


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    async with local_hub(data_dir) as running:
        yield running


async def scraped(hub: Hub, user: str) -> dict[str, float]:
    """``huddle_ai_completions_total`` of ``user`` by outcome, read from the hub's /metrics."""
    base = hub.url.replace("ws://", "http://")
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "huddle_ai_completions_total"
        and sample.labels.get("room") == ROOM
        and sample.labels.get("user") == user
    }


async def counted(hub: Hub, user: str, shown: int | None = None, **decided: float) -> None:
    """Until /metrics counts ``decided`` (outcome -> count; the others 0) and ``shown`` if given
    for ``user``."""
    seen: dict[str, float] = {}
    wanted = {k: decided.get(k, 0.0) for k in ("accepted", "partly", "ignored")}
    if shown is not None:
        wanted["shown"] = shown

    async def holds() -> bool:
        nonlocal seen
        seen = await scraped(hub, user)
        return {k: seen.get(k, 0.0) for k in wanted} == wanted

    try:
        await eventually(holds, what=f"{wanted} in /metrics")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; /metrics counts {seen}") from None


def ghost_of(state: dict[str, Any]) -> str | None:
    """The text of the one final ghost the page shows, if any."""
    ghost = state["ghost"]
    if len(ghost) == 1 and ghost[0]["final"] and ghost[0]["text"].strip():
        return str(ghost[0]["text"])
    return None


async def ask(browser: Browser, text: str, back: int = 0) -> str:
    """Erase ``back`` characters and type ``text``, in one go (a pause between the keys would
    ask too); the ghost text the page shows once the model has finished."""
    await browser.request("retype", page="amy", back=back, text=text)
    shown = await browser.wait("amy", "ghost text", ghost_of, MODEL_TIMEOUT)
    return str(ghost_of(shown))


async def opened(hub: Hub, data_dir: Path, node: NodeClient, browser: Browser, text: str) -> None:
    """amy's page with calc.py (``text``) and .env, the cursor at the end of calc.py. (.env:
    private, it never goes to a model, so the prompt is calc.py's alone whenever it is asked.)"""
    await node.wait_event("synced")
    await node.request("insert", file="calc.py", index=0, text=text)
    await node.request("insert", file=".env", index=0, text="# notes\n")
    await browser.open("amy", web_url(hub.url, ROOM, token(data_dir, ROOM, "amy")))
    await browser.wait("amy", "the files", lambda s: s["files"] == [".env", "calc.py"])
    await browser.request("clickFile", page="amy", path="calc.py")
    await browser.wait("amy", "calc.py", lambda s: s["current"] == "calc.py" and s["text"] == text)
    await browser.request("focusEnd", page="amy")


def decided(hub: Hub) -> list[tuple[str, str, int, str]]:
    """(user, outcome, accepted_chars, source) of each completion decided, from the audit log."""
    return [
        (r["user"], r["acceptance"], r["accepted_chars"], r["source"])
        for r in hub.audit.completions()
        if "acceptance" in r
    ]


async def test_the_page_reports_accepted_and_ignored_completions(
    model_hub: Hub, data_dir: Path
) -> None:
    """Escape and opening another file ignore a completion of the embedded model, Tab accepts
    it, and a key that does not continue it ignores it. Each is reported once, under the hub's
    id: /metrics counts it for the page's user, the audit log holds it beside its completion."""
    typed = "def add(a, b):\n    return "
    async with (
        NodeClient(model_hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        # One key typed (a pause between keys would ask too).
        await opened(model_hub, data_dir, node, browser, typed.removesuffix(" "))
        print(f"ghost text {await ask(browser, ' ')!r}")
        await counted(model_hub, "amy", shown=1)  # shown, nothing decided yet

        # Escape: ignored.
        await browser.request("press", page="amy", key="Escape")
        await browser.wait("amy", "dismissed", lambda s: s["ghost"] == [])
        await counted(model_hub, "amy", shown=1, ignored=1)

        # Another file opened: ignored.
        await ask(browser, " ", back=1)
        await browser.request("clickFile", page="amy", path=".env")
        await browser.wait("amy", ".env", lambda s: s["current"] == ".env")
        await counted(model_hub, "amy", shown=2, ignored=2)

        # Tab: accepted, all of it.
        await browser.request("clickFile", page="amy", path="calc.py")
        await browser.wait("amy", "calc.py", lambda s: s["current"] == "calc.py")
        await browser.request("focusEnd", page="amy")
        suggestion = await ask(browser, " ", back=1)
        await browser.request("press", page="amy", key="Tab")
        shown = await browser.wait("amy", "accepted", lambda s: s["text"] == typed + suggestion)
        await counted(model_hub, "amy", shown=3, ignored=2, accepted=1)

        # A key that does not continue it: ignored (the page asks again after it).
        again = await ask(browser, " ", back=len(suggestion) + 1)
        key = "@" if again.startswith("#") else "#"
        await browser.request("type", page="amy", text=key)
        await browser.wait("amy", "typed over", lambda s: s["text"] == typed + key)
        await counted(model_hub, "amy", ignored=3, accepted=1)
        assert shown["errors"] == []
    assert await scraped(model_hub, "ann") == {}  # counted for the page's user only
    assert decided(model_hub) == [
        ("amy", "ignored", 0, "editor"),
        ("amy", "ignored", 0, "editor"),
        ("amy", "accepted", len(suggestion), "editor"),  # code points (it is ASCII here)
        ("amy", "ignored", 0, "editor"),
    ]
    outcomes = [r for r in model_hub.audit.read() if r["kind"] == "outcome"]
    assert len(outcomes) == len({r["id"] for r in outcomes}) == 4  # once each


async def test_ctrl_right_takes_a_completion_a_word_at_a_time(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path
) -> None:
    """Ctrl+Right inserts the next word and leaves the rest on offer, under the same id: a part
    taken is *partly* (in code points), all of it word by word or finished with Tab *accepted*;
    a key that types its start takes that much, as huddle lsp reads an editor's changes; moving
    the cursor away ignores it."""
    answer = "prix * n\u00e9s\U0001f600"  # code points: 11; UTF-16: 12
    backend.handler = streaming("prix", " * ", "n\u00e9s\U0001f600")
    typed = "total = "
    async with (
        NodeClient(ai_hub.url, ROOM, token(data_dir, ROOM, "ann")) as node,
        Browser() as browser,
    ):
        await opened(ai_hub, data_dir, node, browser, typed.removesuffix(" "))
        assert await ask(browser, " ") == answer

        async def word(taken: str, rest: str) -> None:
            await browser.request("press", page="amy", key="Control+ArrowRight")
            await browser.wait(
                "amy",
                f"{taken!r} taken",
                lambda s: s["text"] == typed + taken and ghost_of(s) == rest,
            )

        # A word, then Escape: partly.
        await word("prix", " * n\u00e9s\U0001f600")
        await browser.request("press", page="amy", key="Escape")
        await browser.wait("amy", "dismissed", lambda s: s["ghost"] == [])
        await counted(ai_hub, "amy", shown=1, partly=1)

        # Word by word to its end: accepted.
        assert await ask(browser, " ", back=len("prix ")) == answer
        await word("prix", " * n\u00e9s\U0001f600")
        await word("prix *", " n\u00e9s\U0001f600")
        await word("prix * n\u00e9s", "\U0001f600")
        await browser.request("press", page="amy", key="Control+ArrowRight")
        await browser.wait("amy", "all taken", lambda s: s["text"] == typed + answer)
        await counted(ai_hub, "amy", shown=2, partly=1, accepted=1)

        # A word, then Tab: accepted.
        assert await ask(browser, " ", back=len(answer) + 1) == answer
        await word("prix", " * n\u00e9s\U0001f600")
        await browser.request("press", page="amy", key="Tab")
        await browser.wait("amy", "accepted", lambda s: s["text"] == typed + answer)
        await counted(ai_hub, "amy", shown=3, partly=1, accepted=2)

        # Its first character typed: partly (the page asks again after it).
        assert await ask(browser, " ", back=len(answer) + 1) == answer
        await browser.request("type", page="amy", text="p")
        shown = await browser.wait("amy", "typed", lambda s: s["text"] == typed + "p")
        await counted(ai_hub, "amy", partly=2, accepted=2)

        # The cursor moved away from the one asked after it: ignored.
        await browser.wait("amy", "asked after the key", lambda s: ghost_of(s) == answer)
        await browser.request("press", page="amy", key="ArrowLeft")
        shown = await browser.wait("amy", "dismissed", lambda s: s["ghost"] == [])
        await counted(ai_hub, "amy", shown=5, partly=2, accepted=2, ignored=1)
        assert shown["errors"] == []
        assert (await node.files())["calc.py"] == typed + "p"
    assert decided(ai_hub) == [
        ("amy", "partly", 4, "editor"),
        ("amy", "accepted", 11, "editor"),
        ("amy", "accepted", 11, "editor"),
        ("amy", "partly", 1, "editor"),
        ("amy", "ignored", 0, "editor"),
    ]
    outcomes = [r for r in ai_hub.audit.read() if r["kind"] == "outcome"]
    assert len(outcomes) == len({r["id"] for r in outcomes}) == 5  # once each
