"""An edit the editor says it applied, reported in a shape no bridge can recognise, does not
hold the buffer up for good (Bridge.settle, run by huddle lsp's safety net once the editor is
quiet).

Found by the real-editor fuzzer (seed 206635569): VS Code shrank a teammate's replacement on
one text and applied the pieces to the next, after its user's cut, garbling it in its buffer.
The edit stayed in flight, and VS Code got none of the room's edits again; the user's typing
after it stayed out of the room. Here a scripted VS Code-like editor (tests/support/
lsp_editor.py) lands one edit with a character more than it was sent, and reports it so.
"""

from __future__ import annotations

from pathlib import Path

from huddle.collab.schema import file_texts
from huddle.server.hub import Hub
from tests.support.lsp_editor import Editor
from tests.support.peers import NodeClient, eventually, token

ROOM = "team/settle"
FILE = "notes.txt"


async def test_an_unrecognised_echo_is_settled_and_edits_flow_again(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    options = {"hub": hub.url, "room": ROOM, "user": "vera", "token": token(data_dir, ROOM, "vera")}

    def hub_text() -> str | None:
        room = hub.room(ROOM)
        return None if room is None else file_texts(room.doc).get(FILE)

    async with Editor(root, init_options=options, client_name="code-server") as vera:
        vera.open(FILE, "a\nb\n")
        await eventually(lambda: hub_text() == "a\nb\n", what="the file in the room")
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "tom")) as tom:
            await tom.wait_event("synced")
            vera.garble_echoes = 1
            await tom.request("insert", file=FILE, index=2, text="<t1>")
            await eventually(
                lambda: vera.text(FILE) == "a\n<t1>¿b\n", what="the edit in the editor"
            )
            vera.type(FILE, 0, "<v1>")  # the user types on
            await vera.flush()
            # Settled: the editor's text reaches the room, and the room's next edit the editor.
            await eventually(
                lambda: hub_text() == "<v1>a\n<t1>¿b\n", timeout=20, what="the editor's text"
            )
            await tom.request("insert", file=FILE, index=len("<v1>a\n<t1>¿b\n"), text="<t2>")
            expected = "<v1>a\n<t1>¿b\n<t2>"
            await eventually(lambda: vera.text(FILE) == expected, timeout=20, what="<t2>")
            assert (await tom.files())[FILE] == expected

        def repairs() -> int:
            return int(vera.notifications["huddle/status"][-1].repairs)

        await eventually(lambda: repairs() == 1, what="the repair in huddle/status")
