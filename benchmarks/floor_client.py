"""The floor for a teammate's cost per remote key: the least a Python Yjs client does with the
room's typing, for the room benchmark to measure beside the probe's ``huddle lsp``.

It joins the room over the same y-websocket protocol with the same libraries (websockets,
pycrdt, Huddle's wire codec), applies every update to its document, reads each change of the
file as a delta (what it would need to tell an editor anything), and parses every awareness
state as JSON. It has no editor, so no JSON-RPC, no bridge, no line index and no cursors placed
in anyone's coordinates: what ``huddle lsp`` spends above this is the price of being a
language server; this much is the price of being in the room at all, in Python.

Usage: python -m benchmarks.floor_client URL ROOM TOKEN FILE. It prints ``synced`` once it
holds the room; each line read on stdin is answered with the letters received so far.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pycrdt
from websockets.asyncio.client import connect

from huddle.collab import wire
from huddle.collab.schema import files
from huddle.protocol import room_url


class Floor:
    def __init__(self, file: str) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.file = file
        self.received = 0
        self.peers: dict[int, Any] = {}
        self._text: pycrdt.Text | None = None
        self._files = files(self.doc)
        self._files.observe(lambda _event: self._watch())

    def _watch(self) -> None:
        text = self._files.get(self.file) if self.file in self._files else None
        if isinstance(text, pycrdt.Text) and text is not self._text:
            self._text = text
            text.observe(self._changed)

    def _changed(self, event: pycrdt.TextEvent) -> None:
        for part in event.delta:  # type: ignore[attr-defined]
            inserted = part.get("insert")
            if isinstance(inserted, str):
                self.received += len(inserted)

    def handle(self, message: wire.Message) -> bytes | None:
        match message:
            case wire.SyncStep1(state_vector):
                return wire.encode(wire.SyncStep2(self.doc.get_update(state_vector)))
            case wire.SyncStep2(update) | wire.SyncUpdate(update):
                self.doc.apply_update(update)
            case wire.AwarenessMessage(payload):
                for entry in wire.decode_awareness(payload):
                    self.peers[entry.client_id] = entry.state
        return None


async def main(url: str, room: str, token: str, file: str) -> None:
    floor = Floor(file)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def answer() -> None:
        while await stdin.readline():
            print(json.dumps({"received": floor.received}), flush=True)

    async with connect(room_url(url, room, token), compression=None, max_size=None) as ws:
        await ws.send(wire.encode(wire.SyncStep1(floor.doc.get_state())))
        answering: asyncio.Task[None] | None = None
        async for frame in ws:
            if not isinstance(frame, bytes):
                continue
            message = wire.decode(frame)
            reply = floor.handle(message)
            if reply is not None:
                await ws.send(reply)
            if answering is None and isinstance(message, wire.SyncStep2):
                floor._watch()
                print("synced", flush=True)
                answering = asyncio.create_task(answer())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
