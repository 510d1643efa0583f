"""The store: journal queries, snapshots + log replay, compaction that keeps history."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pycrdt import Doc, Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server import store as store_module
from huddle.server.config import HubConfig, StoreConfig
from huddle.server.hub import Hub
from huddle.server.store import Database, Pending, Store
from tests.support.hubs import local_hub
from tests.support.peers import eventually, token

ROOM = "store/room"


async def test_journal_records_author_and_time_and_survives_compaction(data_dir: Path) -> None:
    config = HubConfig(port=0, data_dir=data_dir, store=StoreConfig(compact_every=10))
    started = time.time()
    async with Hub(config) as hub:
        async with (
            HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann,
            HubClient(hub.url, ROOM, token(data_dir, ROOM, "bob")) as bob,
        ):
            await asyncio.wait_for(ann.synced.wait(), 10)
            await asyncio.wait_for(bob.synced.wait(), 10)
            files(ann.doc)["a.py"] = Text("")
            await eventually(lambda: "a.py" in file_texts(bob.doc), what="bob sees a.py")
            a_text, b_text = files(ann.doc)["a.py"], files(bob.doc)["a.py"]
            assert isinstance(a_text, Text) and isinstance(b_text, Text)
            for i in range(15):
                a_text.insert(0, f"a{i};")
                await ann.flush()
                b_text.insert(0, f"b{i};")
                await bob.flush()
            room = hub.room(ROOM)
            assert room is not None
            await eventually(
                lambda: file_texts(ann.doc) == file_texts(bob.doc) == file_texts(room.doc),
                what="convergence",
            )
            expected = file_texts(room.doc)
            assert sorted(expected["a.py"].rstrip(";").split(";")) == sorted(
                [f"a{i}" for i in range(15)] + [f"b{i}" for i in range(15)]
            )
        journal = await hub.store.call(lambda db: db.journal(ROOM))
        assert {e.user for e in journal} == {"ann", "bob"}
        assert [e.seq for e in journal] == sorted(e.seq for e in journal)
        assert all(started <= e.ts <= time.time() for e in journal)
        bobs = await hub.store.call(lambda db: db.journal(ROOM, user="bob"))
        assert bobs and all(e.user == "bob" for e in bobs)
        later = await hub.store.call(lambda db: db.journal(ROOM, since=journal[5].ts))
        assert later[0].seq >= journal[5].seq - 1 and len(later) < len(journal)

    db = Database.in_dir(data_dir)
    try:
        snap = db._conn.execute("SELECT seq FROM snapshots").fetchone()
        assert snap is not None and snap[0] >= 10, "compaction wrote a snapshot"
        record = db.load_room(ROOM, create=False)
        assert record is not None
        # Replaying the whole journal gives the same document as snapshot + tail.
        from_journal, from_snapshot = Doc(), Doc()
        for entry in db.journal(ROOM):
            from_journal.apply_update(entry.update)
        for update in ([record.snapshot] if record.snapshot else []) + record.log:
            from_snapshot.apply_update(update)
        assert file_texts(from_journal) == file_texts(from_snapshot) == expected
        assert len(record.log) < len(db.journal(ROOM))  # the tail is shorter than the history
    finally:
        db.close()


async def test_rooms_come_back_after_restart(data_dir: Path) -> None:
    async with (
        local_hub(data_dir) as hub,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as client,
    ):
        await asyncio.wait_for(client.synced.wait(), 10)
        files(client.doc)["keep.md"] = Text("# kept ✓")
        await client.flush()
        room = hub.room(ROOM)
        assert room is not None
        await eventually(lambda: "keep.md" in file_texts(room.doc), what="stored")
    async with (
        local_hub(data_dir) as hub,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as client,
    ):
        await asyncio.wait_for(client.synced.wait(), 10)
        assert file_texts(client.doc) == {"keep.md": "# kept ✓"}


async def test_commits_on_the_event_loop_leave_the_checkpoints_to_the_store_thread(
    tmp_path: Path,
) -> None:
    """With ``durability=normal`` a commit runs on the event loop and SQLite's automatic
    checkpoint is off (it would sync the disk there): the store checkpoints the WAL on its
    thread instead, so the rows reach the database file itself."""
    path = tmp_path / "huddle.sqlite3"
    count = 2 * store_module._CHECKPOINT_EVERY + 3
    async with Store(lambda: Database(path), StoreConfig(), 10_000) as store:
        record = await store.call(lambda db: db.load_room(ROOM, create=True))
        assert record is not None
        sink = _Sink()
        for n in range(count):  # one at a time, as typing comes: each commit on the loop
            await store.append(Pending(sink, record.room_id, 0, "ann", bytes([n % 256]) * 1024))
            await sink.wait_for(n + 1)
        await store.call(lambda db: None)  # queued behind any checkpoint under way
        # The database file (not only its WAL) holds the rows: checkpoints ran meanwhile.
        assert path.stat().st_size > store_module._CHECKPOINT_EVERY * 1024
    db = Database(path)
    try:
        assert [e.seq for e in db.journal(ROOM)] == list(range(1, count + 1))
    finally:
        db.close()


class _Sink:
    """Counts committed entries (a ``CommitSink``)."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def committed(self, entries: list[Pending]) -> None:
        self.count += len(entries)
        self._changed.set()

    def failed(self, entries: list[Pending], error: Exception) -> None:
        raise AssertionError(f"a commit failed: {error}")

    async def wait_for(self, count: int) -> None:
        while self.count < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 30)
