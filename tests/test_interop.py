"""Stock Node yjs + y-websocket clients and a Python client converge through the hub."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.hub import Hub
from tests.support.peers import NodeClient, eventually, token

ROOM = "team/interop"
MARKER = re.compile(r"«[^»]*»")
# Every character tests/node/yclient.mjs's `random` may insert.
NODE_ALPHABET = frozenset("abc \né ß中😀\r👩\u200d💻")


async def test_node_and_python_clients_converge(hub: Hub, data_dir: Path) -> None:
    async with (
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "node-a")) as node_a,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "node-b")) as node_b,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "py")) as py,
    ):
        await node_a.wait_event("synced")
        await node_b.wait_event("synced")
        await asyncio.wait_for(py.synced.wait(), 10)

        first = "print('héllo 😀')\n"
        await node_a.request("insert", file="src/main.py", index=0, text=first)
        # The whole text, not just the key: the Node client may create the Y.Text and fill it
        # in two updates, and ``before`` below must count what was inserted.
        await eventually(
            lambda: file_texts(py.doc).get("src/main.py") == first, what="python sees the file"
        )
        await eventually(
            lambda: _has(node_b, "src/main.py", first), what="second node client sees the file"
        )

        # Everyone types into the same file at once: accents, CJK, emoji, ZWJ sequences, CRLF.
        text = files(py.doc)["src/main.py"]
        assert isinstance(text, Text)
        before = len(str(text))
        edits = [
            node_a.request("random", file="src/main.py", count=200, seed=1, deleteRatio=0),
            node_b.request("random", file="src/main.py", count=200, seed=2, deleteRatio=0),
        ]
        markers = [f"«py{i}✓»" for i in range(50)]  # nothing else in the room produces « or »
        for i, marker in enumerate(markers):
            text.insert(0 if i % 2 else len(text.to_py().encode()), marker)
        inserted = sum(reply["inserted"] for reply in await asyncio.gather(*edits))

        async def converged() -> bool:
            a, b = await node_a.files(), await node_b.files()
            room = hub.room(ROOM)
            assert room is not None
            return a == b == file_texts(py.doc) == file_texts(room.doc)

        await eventually(converged, what="all four copies to converge")
        final = file_texts(py.doc)["src/main.py"]
        # A Node client's random insert may land inside a marker the Python client already
        # synced, so markers are compared without the Node alphabet (none of its characters
        # is in a marker): each marker exactly once, in order, however the typing interleaved.
        found = ["".join(c for c in m if c not in NODE_ALPHABET) for m in MARKER.findall(final)]
        assert sorted(found) == sorted(markers)
        assert len(final) == before + inserted + sum(
            len(m) for m in markers
        )  # nothing lost or doubled

        # Then concurrent deletions too: still one text everywhere.
        await asyncio.gather(
            node_a.request("random", file="src/main.py", count=300, seed=3),
            node_b.request("random", file="src/main.py", count=300, seed=4),
        )
        await eventually(converged, what="convergence after concurrent deletes")


async def _has(client: NodeClient, path: str, text: str) -> bool:
    return (await client.files()).get(path) == text


async def test_presence_reaches_node_clients_and_leaves_with_them(hub: Hub, data_dir: Path) -> None:
    async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "watcher")) as watcher:
        await watcher.wait_event("synced")
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "py")) as py:
            py.set_presence({"user": {"name": "py", "color": "#ff0000"}})

            async def sees_py() -> bool:
                peers = (await watcher.request("peers"))["peers"]
                return any(p.get("user", {}).get("name") == "py" for p in peers)

            await eventually(sees_py, what="node client sees python presence")
            await watcher.request("awareness", state={"user": {"name": "watcher"}})
            await eventually(
                lambda: any(s.get("user", {}).get("name") == "watcher" for s in py.peers.values()),
                what="python sees node presence",
            )

        async def py_gone() -> bool:
            peers = (await watcher.request("peers"))["peers"]
            return not any(p.get("user", {}).get("name") == "py" for p in peers)

        await eventually(py_gone, what="hub to announce that python left")
