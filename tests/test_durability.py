"""kill -9 the hub mid-burst: everything any peer saw is stored; reconnects converge, no doubles."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

from pycrdt import Doc, Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient, Status
from huddle.server.store import Database
from tests.support.peers import HubProcess, NodeClient, eventually, free_port, token

ROOM = "durable/room"
TOKEN = re.compile(r"<w\d+>")


def stored_text(data_dir: Path) -> str:
    """What the hub's store holds, read straight from SQLite while the hub is dead."""
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=False)
    finally:
        db.close()
    assert record is not None
    doc = Doc()
    for update in ([record.snapshot] if record.snapshot else []) + record.log:
        doc.apply_update(update)
    return file_texts(doc).get("log.txt", "")


async def test_sigkill_mid_burst_loses_nothing_seen(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    port = free_port()
    compact_often = {"HUDDLE_HUB__STORE__COMPACT_EVERY": "50"}  # kills land around snapshots too
    hub = HubProcess(data_dir, port, "--log-level", "warning", env=compact_often)
    await hub.start()
    writer_token = token(data_dir, ROOM, "writer")
    written: list[str] = []
    async with (
        HubClient(hub.url, ROOM, writer_token, min_backoff=0.05, max_backoff=0.5) as writer,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "observer", role="read")) as observer,
    ):
        await asyncio.wait_for(writer.synced.wait(), 10)
        await observer.wait_event("synced")
        files(writer.doc)["log.txt"] = Text("")
        text = files(writer.doc)["log.txt"]
        assert isinstance(text, Text)
        stop = asyncio.Event()

        async def burst() -> None:
            i = 0
            while not stop.is_set():
                piece = f"<w{i}>"
                text.insert(len(text.to_py().encode()), piece)
                written.append(piece)
                i += 1
                await asyncio.sleep(0.001)

        typing = asyncio.create_task(burst())
        await asyncio.sleep(random.uniform(0.4, 0.9))  # a random instant within the burst
        await hub.kill()
        seen = (await observer.files()).get("log.txt", "")
        stored = stored_text(data_dir)
        await asyncio.sleep(0.2)  # keep typing offline for a moment
        stop.set()
        await typing

        seen_tokens = TOKEN.findall(seen)
        stored_tokens = TOKEN.findall(stored)
        assert len(seen_tokens) > 50, "the observer should have seen part of the burst"
        assert len(stored_tokens) == len(set(stored_tokens)), "duplicated text in the store"
        missing = set(seen_tokens) - set(stored_tokens)
        assert not missing, f"{len(missing)} updates a peer saw are not in the store"
        assert len(written) > len(seen_tokens), "the kill should land mid-burst"

        # Restart on the same port: both clients reconnect by themselves and merge.
        restarted = HubProcess(data_dir, port, "--log-level", "warning", env=compact_often)
        await restarted.start()
        try:
            await asyncio.wait_for(writer.wait_status(Status.CONNECTED), 20)
            expected = "".join(written)

            async def converged() -> bool:
                return (
                    file_texts(writer.doc).get("log.txt") == expected
                    and (await observer.files()).get("log.txt") == expected
                )

            await eventually(converged, timeout=30, what="writer and observer to converge")
            async with HubClient(restarted.url, ROOM, token(data_dir, ROOM, "checker")) as checker:
                await asyncio.wait_for(checker.synced.wait(), 10)
                assert file_texts(checker.doc) == {"log.txt": expected}
        finally:
            await restarted.kill()
    assert stored_text(data_dir) == "".join(written)
