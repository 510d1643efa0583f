"""Malformed input closes only the offending connection; the room and its peers carry on."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pycrdt
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from huddle.collab import wire
from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.config import Limits
from huddle.server.hub import Hub
from tests.support.peers import NodeClient, eventually, token

ROOM = "fuzz/room"
FRAMES = 1200
WORKERS = 6


@pytest.fixture
def limits() -> Limits:
    return Limits(max_message_bytes=64 * 1024)


def _valid_update() -> bytes:
    doc = Doc()
    files(doc)["victim.txt"] = Text("payload ✓ 😀")
    return doc.get_update()


def _invalid_update(rng: random.Random, valid: bytes) -> bytes:
    while True:
        candidate = (
            valid[: rng.randrange(1, len(valid))]
            if rng.random() < 0.5
            else rng.randbytes(rng.randrange(1, 40))
        )
        try:
            pycrdt.get_state(candidate)
        except ValueError:
            return candidate


def malformed_frames(seed: int) -> list[bytes | str]:
    rng = random.Random(seed)
    valid = _valid_update()
    makers = [
        lambda: rng.randbytes(rng.randrange(1, 64)),  # noise
        lambda: b"\x00\x02" + b"\xff" * rng.randrange(1, 9),  # truncated varint
        lambda: bytes([rng.randrange(4, 128)]) + rng.randbytes(rng.randrange(0, 8)),  # unknown type
        lambda: bytes([0, rng.randrange(3, 100)]) + b"\x00",  # unknown sync type
        lambda: wire.encode(wire.SyncUpdate(_invalid_update(rng, valid))),  # invalid update
        lambda: wire.encode(wire.SyncStep2(_invalid_update(rng, valid))),
        lambda: b"\x00\x02" + wire.write_varuint(10_000) + rng.randbytes(10),  # lying length
        lambda: wire.encode(wire.SyncStep1(b"\xff\xff\xff")),  # invalid state vector
        lambda: wire.encode(wire.AwarenessMessage(rng.randbytes(12))),  # broken awareness
        lambda: "a text frame",
        lambda: wire.encode(wire.SyncUpdate(valid)) + b"\x00",  # trailing garbage
        lambda: bytes(70 * 1024),  # over max_message_bytes
    ]
    return [rng.choice(makers)() for _ in range(FRAMES // WORKERS + 1)]


async def _attack(url: str, frames: list[bytes | str], closes: list[int]) -> int:
    """One malformed frame per connection, then read (broadcasts included) until the close."""
    for frame in frames:
        async with connect(url, max_size=None) as ws:
            await ws.send(frame)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 3)
            except ConnectionClosed as closed:
                closes.append(closed.rcvd.code if closed.rcvd else 1006)
            except TimeoutError:
                pass  # an accidentally valid frame: the hub rightly kept the connection
    return len(frames)


async def test_a_thousand_malformed_frames(hub: Hub, data_dir: Path) -> None:
    url = f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, 'fuzzer')}"
    async with (
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "good-py")) as good,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "good-node")) as node,
    ):
        await asyncio.wait_for(good.synced.wait(), 10)
        await node.wait_event("synced")
        files(good.doc)["main.py"] = Text("")

        async def keep_typing() -> None:
            text = files(good.doc)["main.py"]
            assert isinstance(text, Text)
            for i in range(200):
                text.insert(len(text.to_py().encode()), f"<{i}>")
                await asyncio.sleep(0.005)

        closes: list[int] = []
        typing = asyncio.create_task(keep_typing())
        sent = await asyncio.gather(
            *[_attack(url, malformed_frames(seed), closes) for seed in range(WORKERS)]
        )
        await typing
        await node.request("insert", file="main.py", index=0, text="node still here|")

        expected = "node still here|" + "".join(f"<{i}>" for i in range(200))

        async def converged() -> bool:
            room = hub.room(ROOM)
            return room is not None and file_texts(good.doc) == (await node.files()) == file_texts(
                room.doc
            ) == {"main.py": expected}

        await eventually(converged, what="well-behaved clients and the hub to agree")
    assert sum(sent) >= FRAMES
    assert len(closes) >= FRAMES * 0.95  # (nearly) every malformed frame closed its connection
    assert set(closes) <= {4400, 1009}, set(closes)
    assert {e.user for e in await hub.store.call(lambda db: db.journal(ROOM))} == {
        "good-py",
        "good-node",
    }
