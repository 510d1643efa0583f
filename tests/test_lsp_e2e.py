"""End to end: real `huddle lsp` processes, driven by a real LSP client, sharing through a hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from huddle.collab.schema import file_texts
from huddle.server.hub import Hub
from tests.lsp_editor import Editor
from tests.peers import eventually, token

ROOM = "team/e2e"


def options(hub: Hub, data_dir: Path, user: str, role: str = "edit") -> dict[str, str]:
    return {"hub": hub.url, "room": ROOM, "user": user, "token": token(data_dir, ROOM, user, role)}


async def test_two_editors_share_a_file(hub: Hub, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        Editor(
            root, style="neovim", encoding="utf-8", init_options=options(hub, data_dir, "bob")
        ) as bob,
    ):
        ann.open("src/app.py", "print('hi')\n")
        room = None

        async def in_room() -> bool:
            nonlocal room
            room = hub.room(ROOM)
            return room is not None and file_texts(room.doc).get("src/app.py") == "print('hi')\n"

        await eventually(in_room, what="ann's buffer seeds the room")
        bob.open("src/app.py", "stale copy on bob's disk\n")
        await eventually(
            lambda: bob.text("src/app.py") == "print('hi')\n", what="room wins for bob"
        )

        ann.type("src/app.py", 0, "# héllo 😀\n")
        await eventually(
            lambda: bob.text("src/app.py").startswith("# héllo 😀\n"), what="bob follows"
        )
        bob.type("src/app.py", len(bob.text("src/app.py")), "bob()\n")
        await bob.flush()
        expected = "# héllo 😀\nprint('hi')\nbob()\n"
        await eventually(
            lambda: ann.text("src/app.py") == bob.text("src/app.py") == expected, what="converge"
        )
        assert room is not None
        await eventually(lambda: file_texts(room.doc)["src/app.py"] == expected, what="hub copy")
        await asyncio.sleep(0)
