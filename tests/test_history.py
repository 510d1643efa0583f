"""History: a room as of any kept time and who changed what, against a real hub and real peers."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.config import HubConfig, StoreConfig
from huddle.server.errors import StoreError
from huddle.server.history import FileChange, HistoryGap, file_changes, texts_at
from huddle.server.hub import Hub
from huddle.server.store import DB_FILE, Database, Pending
from tests.support.peers import eventually, token

ROOM = "history/room"
Point = tuple[float, dict[str, str]]  # time.time() and what the hub served then

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@\n")


def compacting(data_dir: Path) -> HubConfig:
    return HubConfig(
        port=0, data_dir=data_dir, store=StoreConfig(compact_every=5, history_every_s=0)
    )


@asynccontextmanager
async def peer(hub: Hub, user: str) -> AsyncIterator[HubClient]:
    async with HubClient(hub.url, ROOM, token(hub.config.data_dir, ROOM, user)) as client:
        await asyncio.wait_for(client.synced.wait(), 10)
        yield client


def text(client: HubClient, path: str) -> Text:
    value = files(client.doc)[path]
    assert isinstance(value, Text)
    return value


async def sees(client: HubClient, path: str, part: str = "") -> None:
    def there() -> bool:
        texts = file_texts(client.doc)
        return path in texts and part in texts[path]

    await eventually(there, what=f"{path} reaches the peer")


async def create(client: HubClient, path: str, content: str) -> None:
    files(client.doc)[path] = Text(content)
    await client.flush()


async def replace(client: HubClient, path: str, old: str, new: str) -> None:
    """One update that turns the first ``old`` in ``path`` into ``new`` (byte offsets)."""
    current = str(text(client, path))
    start = len(current[: current.index(old)].encode())
    with client.doc.transaction():
        del text(client, path)[start : start + len(old.encode())]
        if new:
            text(client, path).insert(start, new)
    await client.flush()


async def append(client: HubClient, path: str, more: str) -> None:
    value = text(client, path)
    value.insert(len(str(value).encode()), more)
    await client.flush()


async def checkpoint(hub: Hub, *clients: HubClient) -> Point:
    """Once nothing is in flight: the time, and the hub's texts, which every update before
    that time made and no later one did."""
    room = hub.room(ROOM)
    assert room is not None
    for client in clients:
        await client.flush()
    await eventually(
        lambda: all(file_texts(c.doc) == file_texts(room.doc) for c in clients),
        what="the hub and its peers agree",
    )
    served = file_texts(room.doc)
    return time.time(), served


async def history_points(hub: Hub) -> list[tuple[int, float]]:
    return await hub.store.call(
        lambda db: [
            (int(s), float(t))
            for s, t in db._conn.execute(
                "SELECT h.seq, h.ts FROM history h JOIN rooms r ON r.id = h.room_id "
                "WHERE r.name = ? ORDER BY h.seq",
                (ROOM,),
            )
        ]
    )


async def compacted(hub: Hub, count: int) -> list[tuple[int, float]]:
    """Wait for ``count`` history points. Only for counts that do not depend on how the group
    commit batched updates or when a compaction task started: after k * compact_every updates
    there is at least one point, not necessarily k (one compaction may cover them all)."""

    async def enough() -> bool:
        return len(await history_points(hub)) >= count

    await eventually(enough, what=f"{count} history points")
    return await history_points(hub)


async def compactions_done(hub: Hub) -> list[tuple[int, float]]:
    """The history points once the room has compacted everything that was due: no compaction
    running and fewer than ``compact_every`` updates since the last one. How many points that
    makes depends on batching and scheduling, so callers never assert on the count."""
    room = hub.room(ROOM)
    assert room is not None
    await eventually(
        lambda: room._compaction is None and room._since_compact < room._compact_every,
        what="the room's due compactions",
    )
    return await history_points(hub)


def apply_patch(path: str, source: str, diff: str) -> str:
    """A strict unified-diff applier: every context and removed line must match the source."""
    if not diff:
        return source
    lines = _LINE.findall(diff)
    assert lines[:2] == [f"--- a/{path}\n", f"+++ b/{path}\n"]
    src, out, at, i = _LINE.findall(source), [], 0, 2
    while i < len(lines):
        hunk = _HUNK.fullmatch(lines[i])
        assert hunk is not None, f"not a hunk header: {lines[i]!r}"
        i += 1
        old_start, old_len = int(hunk[1]), int(hunk[2] or 1)
        new_len = int(hunk[4] or 1)
        body: list[tuple[str, str]] = []
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            i += 1
            if line == "\\ No newline at end of file\n":
                op, content = body[-1]
                assert content.endswith("\n")
                body[-1] = (op, content[:-1])
            else:
                body.append((line[0], line[1:]))
        assert sum(op in " -" for op, _ in body) == old_len
        assert sum(op in " +" for op, _ in body) == new_len
        start = old_start - 1 if old_len else old_start
        assert start >= at
        out += src[at:start]
        at = start
        for op, content in body:
            assert op in " -+"
            if op in " -":
                assert src[at] == content, f"{src[at]!r} != {content!r}"
                at += 1
            if op in " +":
                out.append(content)
    return "".join(out + src[at:])


async def test_texts_at_is_what_the_hub_served_across_compactions_and_a_restart(
    data_dir: Path,
) -> None:
    points: list[Point] = [(time.time(), {})]
    async with Hub(compacting(data_dir)) as hub:
        async with peer(hub, "ann") as ann, peer(hub, "bob") as bob:
            await create(ann, "a.py", "def f():\n    return 1\n")
            await create(bob, "b.py", "B = '✓'\n")
            await create(ann, "c.py", "")
            points.append(await checkpoint(hub, ann, bob))
            for i in range(3):  # both type at once
                await append(ann, "a.py", f"x{i} = {i}\n")
                await append(bob, "b.py", f"y{i} = '✓{i}'\n")
            points.append(await checkpoint(hub, ann, bob))
            await replace(bob, "a.py", "return 1", "return 'ü'")
            await replace(ann, "b.py", "y1 = '✓1'\n", "")
            await append(bob, "c.py", "print('c')\n")
            points.append(await checkpoint(hub, ann, bob))
        # 12 updates at compact_every=5: one or more compactions, as the batches fell
        assert len(await compactions_done(hub)) >= 1
    async with (
        Hub(compacting(data_dir)) as hub,
        peer(hub, "ann") as ann,
        peer(hub, "bob") as bob,
    ):
        assert file_texts(ann.doc) == points[-1][1]
        before_restart_points = len(await history_points(hub))
        del files(ann.doc)["c.py"]
        await ann.flush()
        await create(bob, "d.py", "D = 4\n")
        points.append(await checkpoint(hub, ann, bob))
        for i in range(12):  # keystrokes
            await append(ann, "a.py", "é" if i % 2 else "a")
            await append(bob, "d.py", f"{i}\n")
        points.append(await checkpoint(hub, ann, bob))
        # 26 updates since the restart: at least one compaction, however they were batched
        assert len(await compactions_done(hub)) > before_restart_points

        for ts, served in points:
            assert await texts_at(hub.store, ROOM, ts) == served
        assert await texts_at(hub.store, ROOM, time.time()) == points[-1][1]
        assert await texts_at(hub.store, "history/none", time.time()) == {}

    # Trim everything before now: the room rebuilds from its newest point only.
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=False)
        assert record is not None and not record.log
        assert record.snapshot is not None
        db.compact(record.room_id, record.next_seq - 1, record.snapshot, time.time() + 3600)
        [(_, kept)] = db._conn.execute("SELECT seq, ts FROM history").fetchall()
    finally:
        db.close()
    async with Hub(compacting(data_dir)) as hub, peer(hub, "ann") as ann:
        with pytest.raises(HistoryGap) as gap:
            await texts_at(hub.store, ROOM, points[-2][0])
        assert gap.value.kept_from == kept and "no longer kept" in str(gap.value)
        assert await texts_at(hub.store, ROOM, max(kept, points[-1][0])) == points[-1][1]
        await append(ann, "a.py", "\n# after\n")
        after = await checkpoint(hub, ann)
        assert await texts_at(hub.store, ROOM, after[0]) == after[1]


async def test_file_changes_attributes_and_diffs_each_file(data_dir: Path) -> None:
    async with (
        Hub(compacting(data_dir)) as hub,
        peer(hub, "ann") as ann,
        peer(hub, "bob") as bob,
    ):
        await create(ann, "a.py", "import os\n\ndef main():\n    return 1\n\nmain()")
        await create(bob, "b.py", "B = 1\n")
        await create(ann, "c.py", "x = 1\ny = 2\nz = 3\n")
        await create(bob, "e.txt", "untouched\n")
        since, start = await checkpoint(hub, ann, bob)
        before_window = len(await history_points(hub))

        await replace(ann, "a.py", "return 1", "return 2")
        await sees(bob, "a.py", "return 2")
        await append(bob, "a.py", "\nprint('done')\n")
        await append(bob, "b.py", "tmp")  # typed, then taken back: b.py ends identical
        await replace(bob, "b.py", "tmp", "")
        del files(ann.doc)["c.py"]
        await ann.flush()
        await create(bob, "d.md", "# notes\n- a\n")
        await compacted(hub, before_window + 1)  # the window crosses a compaction
        await create(ann, "gone.txt", "brief\n")  # created and removed within the window
        await sees(bob, "gone.txt")
        del files(bob.doc)["gone.txt"]
        await bob.flush()
        until, end = await checkpoint(hub, ann, bob)

        await replace(ann, "b.py", "B = 1", "B = 10")
        latest = await checkpoint(hub, ann, bob)

        changes = await file_changes(hub.store, ROOM, since, until)
        assert [c.path for c in changes] == ["a.py", "c.py", "d.md"]
        a, c, d = changes
        assert (a.before, a.after) == (start["a.py"], end["a.py"])
        assert a.after == "import os\n\ndef main():\n    return 2\n\nmain()\nprint('done')\n"
        assert a.authors == ("ann", "bob")
        assert (a.added_lines, a.removed_lines) == (3, 2)  # "main()" gained its line break
        assert "\\ No newline at end of file\n" in a.diff
        assert c == FileChange(
            path="c.py",
            before="x = 1\ny = 2\nz = 3\n",
            after=None,
            authors=("ann",),
            added_lines=0,
            removed_lines=3,
            diff="--- a/c.py\n+++ b/c.py\n@@ -1,3 +0,0 @@\n-x = 1\n-y = 2\n-z = 3\n",
        )
        assert (d.before, d.after, d.authors) == (None, "# notes\n- a\n", ("bob",))
        assert (d.added_lines, d.removed_lines) == (2, 0)
        for change in changes:
            source, target = change.before or "", change.after or ""
            assert apply_patch(change.path, source, change.diff) == target

        to_now = await file_changes(hub.store, ROOM, since)
        assert [c.path for c in to_now] == ["a.py", "b.py", "c.py", "d.md"]
        b = to_now[1]
        # bob's typing in b.py counts now that b.py changed over the longer window
        assert (b.before, b.after, b.authors) == ("B = 1\n", latest[1]["b.py"], ("ann", "bob"))
        assert (b.added_lines, b.removed_lines) == (1, 1)
        assert b.diff == "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-B = 1\n+B = 10\n"
        assert await file_changes(hub.store, ROOM, until, until) == []
        later = await file_changes(hub.store, ROOM, until, latest[0])
        assert [(c.path, c.authors) for c in later] == [("b.py", ("ann",))]
        with pytest.raises(ValueError):
            await file_changes(hub.store, ROOM, until, since)


async def test_trimming_keeps_the_newest_base_before_the_boundary_and_what_follows_it(
    data_dir: Path,
) -> None:
    async with Hub(compacting(data_dir)) as hub, peer(hub, "ann") as ann:
        await create(ann, "a.py", "")
        await append(ann, "a.py", "one\n")
        first = await checkpoint(hub, ann)
        for i in range(4):
            await append(ann, "a.py", f"{i}\n")
        [(base_seq, base_ts)] = await compacted(hub, 1)
        await append(ann, "a.py", "two\n")  # journal rows after the base, before the boundary
        second = await checkpoint(hub, ann)
        for i in range(5):
            await append(ann, "a.py", f"{i}\n")
        await compacted(hub, 2)
        third = await checkpoint(hub, ann)
    assert first[0] < base_ts < second[0]

    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=False)
        assert record is not None
        doc: Doc[dict[str, Text]] = Doc()
        for update in [record.snapshot or b"", *record.log]:
            doc.apply_update(update)
        db.compact(record.room_id, record.next_seq - 1, doc.get_update(), keep_after=second[0])
        points = db._conn.execute("SELECT seq, ts FROM history ORDER BY seq").fetchall()
        journal = db.journal(ROOM)
    finally:
        db.close()
    assert points[0] == (base_seq, base_ts) and all(ts >= second[0] for _, ts in points[1:])
    assert journal[0].seq == base_seq + 1 and journal[0].ts < second[0]

    async with Hub(compacting(data_dir)) as hub:
        assert await texts_at(hub.store, ROOM, second[0]) == second[1]
        assert await texts_at(hub.store, ROOM, third[0]) == third[1]
        for ask in (
            texts_at(hub.store, ROOM, first[0]),
            file_changes(hub.store, ROOM, first[0], third[0]),
        ):
            with pytest.raises(HistoryGap) as gap:
                await ask
            assert gap.value.kept_from == base_ts
        [change] = await file_changes(hub.store, ROOM, second[0], third[0])
        assert (change.path, change.authors, change.added_lines) == ("a.py", ("ann",), 5)


async def test_a_journal_trimmed_before_history_was_kept_is_refused_not_guessed(
    data_dir: Path,
) -> None:
    async with Hub(compacting(data_dir)) as hub, peer(hub, "ann") as ann:
        await create(ann, "a.py", "")
        for i in range(6):
            await append(ann, "a.py", f"{i}\n")
        early = await checkpoint(hub, ann)
        await compacted(hub, 1)
    # What a store from before history looked like after an old compaction.
    conn = sqlite3.connect(data_dir / DB_FILE)
    with conn:
        conn.execute("DROP TABLE history")
        conn.execute("DROP TABLE journal_trimmed")
        conn.execute("DELETE FROM updates WHERE seq <= (SELECT seq FROM snapshots)")
    conn.close()

    async with Hub(compacting(data_dir)) as hub, peer(hub, "ann") as ann:
        for ask in (early[0], time.time()):
            with pytest.raises(HistoryGap):
                await texts_at(hub.store, ROOM, ask)
        for i in range(5):
            await append(ann, "a.py", f"more {i}\n")
        await compacted(hub, 1)
        now = await checkpoint(hub, ann)
        assert await texts_at(hub.store, ROOM, now[0]) == now[1]
        with pytest.raises(HistoryGap):
            await texts_at(hub.store, ROOM, early[0])


async def test_last_seen_round_trips_and_survives_a_restart(data_dir: Path) -> None:
    seen = time.time()
    async with Hub(compacting(data_dir)) as hub, peer(hub, "ann"):  # the room exists
        # Users that never connect here: the hub may record its own last_seen for a peer.
        assert await hub.store.last_seen(ROOM, "bob") is None
        await hub.store.set_last_seen(ROOM, "bob", seen - 60)
        await hub.store.set_last_seen(ROOM, "bob", seen)
        await hub.store.set_last_seen(ROOM, "cid", seen - 5)
        assert await hub.store.last_seen(ROOM, "bob") == seen
        with pytest.raises(StoreError):
            await hub.store.set_last_seen("history/none", "bob", seen)
    async with Hub(compacting(data_dir)) as hub:
        assert await hub.store.last_seen(ROOM, "bob") == seen
        assert await hub.store.last_seen(ROOM, "cid") == seen - 5
        assert await hub.store.last_seen(ROOM, "dan") is None
        assert await hub.store.last_seen("history/none", "bob") is None


def test_history_points_are_spaced_but_every_time_stays_rebuildable(data_dir: Path) -> None:
    """With ``history_every`` a compaction stores a point only if the last is old enough; the
    journal in between is kept, so texts still rebuild exactly (from the older point)."""
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=True)
        assert record is not None
        doc: Doc[Any] = Doc()
        room_files = files(doc)
        room_files["a.py"] = Text("")
        for seq in range(1, 7):
            before = doc.get_state()
            room_files["a.py"] += f"{seq}\n"
            update = doc.get_update(before)
            db.append([Pending(None, record.room_id, seq, "ann", update)])  # type: ignore[arg-type]
            if seq % 2 == 0:
                db.compact(record.room_id, seq, doc.get_update(), keep_after=0.0, history_every=600)
        points = db._conn.execute("SELECT seq FROM history").fetchall()
        assert points == [(2,)]  # the later compactions came within 600 s of it
        assert [e.seq for e in db.journal(ROOM)] == [1, 2, 3, 4, 5, 6]
        db.compact(record.room_id, 6, doc.get_update(), keep_after=0.0, history_every=0)
        assert db._conn.execute("SELECT seq FROM history ORDER BY seq").fetchall() == [(2,), (6,)]
    finally:
        db.close()
