"""Every limit in the config model is enforced on the one connection that exceeds it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from huddle.collab import wire
from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.config import Limits
from huddle.server.hub import Hub
from tests.support.hubs import local_hub
from tests.support.peers import close_of, eventually, token

ROOM = "lim/room"


def _update(content: str) -> bytes:
    doc = Doc()
    files(doc)["f.txt"] = Text(content)
    return doc.get_update()


async def _hub(data_dir: Path, **limits: object) -> Hub:
    return local_hub(data_dir, limits=Limits(**limits))  # type: ignore[arg-type]


async def test_oversized_message_is_refused(data_dir: Path) -> None:
    async with await _hub(data_dir, max_message_bytes=4096) as hub:
        url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'big')}"
        code, _ = await close_of(url, wire.encode(wire.SyncUpdate(_update("x" * 10_000))))
        assert code == 1009  # websockets: message too big
        assert await hub.store.call(lambda db: db.journal(ROOM)) == []


async def test_message_rate_limit(data_dir: Path) -> None:
    async with await _hub(data_dir, messages_per_second=5, message_burst=10) as hub:
        url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'spammer')}"
        frames = [wire.encode(wire.QueryAwareness())] * 50
        assert await close_of(url, *frames) == (4529, "message rate limit exceeded")


async def test_room_capacity_and_room_count(data_dir: Path) -> None:
    async with await _hub(data_dir, max_connections_per_room=2, max_rooms=2) as hub:
        url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'u')}"
        async with connect(url), connect(url):
            assert await close_of(url) == (4503, "room is full")
        other = f"{hub.url}/lim/second?token={token(data_dir, 'lim/second', 'u')}"
        async with connect(other) as ws:
            await ws.recv()
        third = f"{hub.url}/lim/third?token={token(data_dir, 'lim/third', 'u')}"
        assert await close_of(third) == (4503, "room limit reached")


async def test_document_size_limit_keeps_the_document(data_dir: Path) -> None:
    async with await _hub(data_dir, max_document_bytes=2048) as hub:
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "a")) as client:
            await asyncio.wait_for(client.synced.wait(), 10)
            files(client.doc)["small.txt"] = Text("fits")
            room = hub.room(ROOM)
            assert room is not None
            await eventually(lambda: file_texts(room.doc) == {"small.txt": "fits"}, what="small")
        url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'b')}"
        code, reason = await close_of(url, wire.encode(wire.SyncUpdate(_update("y" * 3000))))
        assert (code, reason) == (4413, "document size limit reached")
        assert file_texts(room.doc) == {"small.txt": "fits"}


@pytest.mark.timeout(60)
async def test_slow_consumer_is_cut_off_without_hurting_others(data_dir: Path) -> None:
    async with await _hub(data_dir, max_send_buffer_bytes=64 * 1024) as hub:
        url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'slow')}"
        # A client that never reads (tiny receive buffer): the hub's write buffer fills up.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", hub.port))
        slow = await connect(url, sock=sock, max_queue=1, max_size=None)
        slow.transport.pause_reading()
        async with (
            HubClient(hub.url, ROOM, token(data_dir, ROOM, "fast")) as fast,
            HubClient(hub.url, ROOM, token(data_dir, ROOM, "watcher")) as watcher,
        ):
            await asyncio.wait_for(fast.synced.wait(), 10)
            await asyncio.wait_for(watcher.synced.wait(), 10)
            files(fast.doc)["blob.txt"] = Text("")
            blob = files(fast.doc)["blob.txt"]
            assert isinstance(blob, Text)
            chunk = "z" * 65536
            for _ in range(500):  # up to 32 MB through the room
                blob.insert(0, chunk)
                await fast.flush()
                if hub.metrics.rejected.labels("slow_consumer")._value.get() >= 1:
                    break
            assert hub.metrics.rejected.labels("slow_consumer")._value.get() >= 1
            await eventually(
                lambda: file_texts(watcher.doc) == file_texts(fast.doc), what="watcher keeps up"
            )
        slow.transport.abort()
