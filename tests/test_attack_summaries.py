"""Summaries under attack (issue 12, item 4): a read-only member asks a real hub for session
summaries of a big room typed in many small updates, several at once. What one request may plan
is bounded, extra requests are admitted per member and per room, the hub keeps answering while
it rebuilds history, and a cancelled or finished summary leaves nothing behind.

The rooms are typed into a pycrdt doc and written straight into the store as the hub would have
committed them (one journal row per update): a fragmented journal of a few MB in a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from huddle.collab import schema, wire
from huddle.llm import BackendConfig, LlmConfig, LlmTimeouts
from huddle.lsp.hub_client import HubClient
from huddle.protocol import RpcError, room_url
from huddle.server.history import _page, live_rebuilds
from huddle.server.hub import Hub
from huddle.server.store import Database, Pending
from tests.support.hubs import local_hub
from tests.support.peers import eventually, token
from tests.support.replay import Conn, FakeBackend, Received, streaming

ROOM = "attack/summaries"
LINE = "value = compute(alpha, beta, gamma)  # one line of a big room typed in small updates\n"
SESSION = {"kind": "session", "since": 0}


class _Stored:
    """The sink of updates written straight into the store: nobody waits on them."""

    def committed(self, entries: list[Pending]) -> None:
        pass

    def failed(self, entries: list[Pending], error: Exception) -> None:
        raise error


def type_into(doc: Doc[Any], *, tag: str, files: int, edits: int) -> list[bytes]:
    """``edits`` lines appended one update at a time, round robin over ``files`` files."""
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    try:
        texts = []
        for number in range(files):
            path = f"{tag}/mod{number:03d}.py"
            schema.files(doc)[path] = Text()
            text = schema.files(doc)[path]
            assert isinstance(text, Text)
            texts.append(text)
        for edit in range(edits):
            text = texts[edit % files]
            text.insert(len(text), f"{edit:06d} {LINE}")
    finally:
        doc.unobserve(subscription)
    return updates


def store_rows(data_dir: Path, updates: list[bytes], *, start: float, user: str = "ann") -> int:
    """``updates`` committed as the hub would, a millisecond apart from ``start``; returns the
    last sequence number."""
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=True)
        assert record is not None
        first = record.next_seq
        db.append(
            [
                Pending(_Stored(), record.room_id, first + i, user, update, ts=start + i / 1000)
                for i, update in enumerate(updates)
            ]
        )
        return first + len(updates) - 1
    finally:
        db.close()


def store_history_point(data_dir: Path, seq: int, ts: float, state: bytes) -> None:
    """A history point as a compaction at ``ts`` would have kept it."""
    db = Database.in_dir(data_dir)
    try:
        room_id = db.room_id(ROOM)
        db._conn.execute(
            "INSERT INTO history (room_id, seq, ts, state) VALUES (?, ?, ?, ?)",
            (room_id, seq, ts, state),
        )
    finally:
        db.close()


def big_room(data_dir: Path, edits: int) -> None:
    updates = type_into(Doc(), tag="src", files=40, edits=edits)
    store_rows(data_dir, updates, start=time.time() - 3600)


def llm_config(backend: FakeBackend, **limits: Any) -> LlmConfig:
    return LlmConfig(
        backends=[BackendConfig(url=backend.url, model="m", context_tokens=150)],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=30, between_chunks_s=30),
        **limits,
    )


@asynccontextmanager
async def reader(hub: Hub, data_dir: Path, user: str) -> AsyncIterator[HubClient]:
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, user, role="read")) as client:
        await asyncio.wait_for(client.synced.wait(), 30)
        yield client


def recorder(into: list[dict[str, Any]]) -> Callable[[str, dict[str, Any]], None]:
    def record(method: str, params: dict[str, Any]) -> None:
        if method == "summary/progress":
            into.append(params)

    return record


async def answers_meanwhile(hub: Hub, data_dir: Path) -> None:
    """``/healthz``, and sync step 1 from another connection, answered."""
    base = hub.url.replace("ws://", "http://")
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{base}/healthz", timeout=30)
    assert (health.status_code, health.text) == (200, "ok\n")
    room = hub.room(ROOM)
    assert room is not None
    url = room_url(hub.url, ROOM, token(data_dir, ROOM, "watcher", role="read"))
    async with connect(url, max_size=None) as ws:
        # asking with the room's own state vector: the answer is small, whatever the room holds
        await ws.send(wire.encode(wire.SyncStep1(room.doc.get_state())))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 30)
            assert isinstance(frame, bytes)
            if isinstance(wire.decode(frame), wire.SyncStep2):
                return


@pytest.mark.timeout(120)
async def test_concurrent_session_summaries_of_a_big_room_are_bounded_and_admitted(
    data_dir: Path,
) -> None:
    big_room(data_dir, edits=20_000)  # 1.7 MB of text: thousands of 600-character prompts
    gate = asyncio.Event()
    answer = streaming("- a part")

    async def held(request: Received, conn: Conn) -> None:
        await gate.wait()
        await answer(request, conn)

    async with FakeBackend(held) as backend:
        llm = llm_config(backend, summary_max_calls=6)
        async with (
            local_hub(data_dir, llm=llm) as hub,
            reader(hub, data_dir, "rex") as rex,
            reader(hub, data_dir, "ida") as ida,
        ):
            progress: list[list[dict[str, Any]]] = [[] for _ in range(8)]
            asks = [
                asyncio.ensure_future(rex.request("summarize", SESSION, recorder(progress[i])))
                for i in range(8)
            ]
            await eventually(lambda: sum(a.done() for a in asks) >= 7, what="the extra asks")
            refused = [a for a in asks if a.done()]
            (running,) = [i for i, a in enumerate(asks) if not a.done()]
            assert len(refused) == 7
            for ask in refused:
                error = ask.exception()
                assert isinstance(error, RpcError) and error.code == "busy", error

            # Another member's summary waits for the room's turn, and says so.
            ida_progress: list[dict[str, Any]] = []
            ida_ask = asyncio.ensure_future(
                ida.request("summarize", SESSION, recorder(ida_progress))
            )
            await eventually(lambda: bool(ida_progress), what="ida hears from the hub")
            assert "waiting" in ida_progress[0]["message"]

            # The one running plans within the limit, from its first plan on.
            await eventually(lambda: bool(backend.requests), what="the first model call")
            assert all(p["total"] <= 6 for p in progress[running]), progress[running][-1]
            await answers_meanwhile(hub, data_dir)
            assert not asks[running].done() and not ida_ask.done()

            assert all("waiting" in p["message"] for p in ida_progress)  # still her turn to come
            gate.set()
            result = await asyncio.wait_for(asks[running], 60)
            ida_result = await asyncio.wait_for(ida_ask, 60)

    made = [seen[-1]["done"] for seen in (progress[running], ida_progress)]
    assert len(backend.requests) == sum(made)  # each model call made shows in its progress
    for calls, seen in zip(made, (progress[running], ida_progress), strict=True):
        assert 1 < calls <= 6
        assert all(p["total"] <= 6 for p in seen)
    assert all(len(r.json()["prompt"]) <= 600 + 400 for r in backend.requests)
    for summary in (result, ida_result):
        assert summary["truncated"] and "model calls" in summary["truncated"]
        assert len(summary["files"]) == 40  # the exact part is whole
        assert "> Note: Only part of the changes fit" in summary["markdown"]
    assert live_rebuilds() == 0


@pytest.mark.timeout(120)
async def test_the_hub_answers_while_it_rebuilds_history_and_a_cancelled_summary_frees_it(
    data_dir: Path,
) -> None:
    big_room(data_dir, edits=40_000)
    async with FakeBackend(streaming("- a part")) as backend:
        llm = llm_config(backend, summary_max_calls=3)
        async with (
            local_hub(data_dir, llm=llm) as hub,
            reader(hub, data_dir, "rex") as rex,
        ):
            assert live_rebuilds() == 0
            # Hold the rebuild at its first page of history (a pause, not a fake: the page is
            # then read from the real store), so "while it rebuilds" never depends on speed.
            paused, resume = asyncio.Event(), asyncio.Event()
            real_call = hub.store.call

            async def call(fn: Callable[..., Any]) -> Any:
                if getattr(fn, "func", None) is _page and not resume.is_set():
                    paused.set()
                    await resume.wait()
                return await real_call(fn)

            hub.store.call = call  # type: ignore[method-assign]
            ask = asyncio.ensure_future(rex.request("summarize", SESSION))
            await asyncio.wait_for(paused.wait(), 60)
            assert live_rebuilds() >= 1
            await answers_meanwhile(hub, data_dir)
            # answered before the rebuild was done: the model has not been asked yet
            assert live_rebuilds() >= 1 and not backend.requests

            ask.cancel()  # the client sends a cancel to the hub
            await eventually(lambda: live_rebuilds() == 0, what="the rebuilt doc is freed")
            assert not backend.requests  # it stopped before the model
            resume.set()

            result = await asyncio.wait_for(rex.request("summarize", SESSION), 60)
            assert live_rebuilds() == 0  # nothing kept once it is done
            assert 1 < len(backend.requests) <= 3 and result["truncated"]


@pytest.mark.timeout(120)
async def test_too_much_history_is_cut_to_its_most_recent_part_or_refused(
    data_dir: Path,
) -> None:
    """Three stretches of 600 edits with a history point after each of the first two. With
    room to replay 1,000 updates the summary covers the stretch after the second point and says
    so; with room for 500, no point is late enough: a clear ``too_large``."""
    doc: Doc[Any] = Doc()
    start = time.time() - 3600
    points = []
    for stretch, tag in enumerate(("old", "mid", "new")):
        updates = type_into(doc, tag=tag, files=10, edits=600)
        at = start + stretch * 600
        last = store_rows(data_dir, updates, start=at)
        if tag != "new":
            points.append(at + 599)
            store_history_point(data_dir, last, points[-1], doc.get_update())

    async with FakeBackend(streaming("- a part")) as backend:
        llm = llm_config(backend, summary_max_history_updates=500)
        async with (
            local_hub(data_dir, llm=llm) as hub,
            reader(hub, data_dir, "rex") as rex,
        ):
            with pytest.raises(RpcError) as refused:
                await rex.request("summarize", SESSION)
            assert refused.value.code == "too_large"
            assert "shorter period" in refused.value.message
            assert not backend.requests and live_rebuilds() == 0

        llm = llm_config(backend, summary_max_history_updates=1000)
        async with (
            local_hub(data_dir, llm=llm) as hub,
            reader(hub, data_dir, "rex") as rex,
        ):
            result = await rex.request("summarize", SESSION)
    assert result["since"] == points[1]
    assert sorted({f["path"].split("/")[0] for f in result["files"]}) == ["new"]
    assert result["truncated"] and "too long to read back" in result["truncated"]
    assert all("old/" not in r.json()["prompt"] for r in backend.requests)


@pytest.mark.parametrize("until", [1e300, 1e20, -1.0])
async def test_times_no_calendar_can_show_are_invalid_params(
    ai_hub: Hub, data_dir: Path, until: float
) -> None:
    """Not an internal error when the result's heading is written."""
    async with reader(ai_hub, data_dir, "rex") as rex:
        with pytest.raises(RpcError) as refused:
            await rex.request("summarize", {"kind": "session", "since": 0, "until": until})
    assert refused.value.code == "invalid_params"
