"""End to end: real `huddle lsp` processes, driven by a real LSP client, sharing through a hub."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from lsprotocol import types as lsp

from huddle.collab.schema import file_texts
from huddle.protocol import Command
from huddle.server.config import HubConfig
from huddle.server.hub import Hub
from tests.support.lsp_editor import Editor
from tests.support.peers import NodeClient, eventually, free_port, token
from tests.support.soak import capture_stderr

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


def _random_edit(
    editor: Editor, path: str, rng: random.Random, tag: str, ledger: dict[str, set[str]]
) -> None:
    """Insert a unique token, or delete one whole token this editor typed earlier."""
    text = editor.text(path)
    own = [m for m in TOKEN.finditer(text) if m.group(1) == tag]
    if own and rng.random() < 0.25:
        victim = rng.choice(own)
        editor.replace(path, victim.start(), victim.end(), "")
        ledger["deleted"].add(victim.group(0))
        return
    # Insert only at boundaries between tokens, so deletions never cut into another's token.
    bounds = [0, len(text)] + [m.start() for m in TOKEN.finditer(text)]
    token_text = f"⟦{tag}{len(ledger['typed'])}{rng.choice(ALPHABET)}⟧"
    editor.type(path, rng.choice(bounds), token_text)
    ledger["typed"].add(token_text)


TOKEN = re.compile(r"⟦([a-z]+)\d+[^⟧]*⟧")
ALPHABET = ["", "é", "中", "😀", "👩‍💻", "\r\n", "\n", " "]


async def test_three_editors_typing_at_once_converge(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        Editor(
            root, style="neovim", encoding="utf-8", init_options=options(hub, data_dir, "bob")
        ) as bob,
        Editor(root, encoding="utf-32", init_options=options(hub, data_dir, "cy")) as cy,
    ):
        editors = {"ann": ann, "bob": bob, "cy": cy}
        files = {"a.txt": "line one\r\nline two\r\n", "b/ü.md": "# Títle 😀\n"}
        for path, content in files.items():
            ann.open(path, content)
        room = None

        async def seeded() -> bool:
            nonlocal room
            room = hub.room(ROOM)
            return room is not None and file_texts(room.doc) == files

        await eventually(seeded, what="ann seeds both files")
        for editor in (bob, cy):
            for path in files:
                editor.open(path, files[path])
        await eventually(
            lambda: all(e.text(p) == files[p] for e in editors.values() for p in files),
            what="everyone opened the same text",
        )

        rngs = {name: random.Random(name) for name in editors}
        ledgers = {name: {"typed": set[str](), "deleted": set[str]()} for name in editors}
        for _ in range(60):
            for name, editor in editors.items():
                path = rngs[name].choice(list(files))
                _random_edit(editor, path, rngs[name], name, ledgers[name])
            await asyncio.sleep(rngs["ann"].uniform(0, 0.01))
        for editor in editors.values():
            await editor.flush()

        assert room is not None

        def converged() -> bool:
            hub_texts = file_texts(room.doc)
            return all(e.text(p) == hub_texts[p] for e in editors.values() for p in files)

        await eventually(converged, timeout=30, what="three editors and the hub to converge")
        final = file_texts(room.doc)
        present = [m.group(0) for p in files for m in TOKEN.finditer(final[p])]
        assert len(present) == len(set(present)), "a typed token appears twice"
        alive = set().union(*(led["typed"] - led["deleted"] for led in ledgers.values()))
        assert set(present) == alive, "a typed token was lost, or a deleted one came back"
        assert sum(len(led["typed"]) for led in ledgers.values()) > 100
        assert "line one\r\n" in final["a.txt"]  # CRLF survived
        for editor in editors.values():
            status = await editor.client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command="huddle.status")
            )
            assert status["repairs"] == 0, "the safety net had to repair a divergence"
            assert status["shared"] == sorted(files)


async def test_offline_edits_merge_on_reconnect(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    config = HubConfig(port=free_port(), data_dir=data_dir)
    first = Hub(config)
    await first.__aenter__()
    async with (
        Editor(root, init_options=options(first, data_dir, "ann")) as ann,
        Editor(root, style="neovim", init_options=options(first, data_dir, "bob")) as bob,
    ):
        ann.open("notes.md", "shared start\n")
        await eventually(lambda: _room_text(first, "notes.md") == "shared start\n", what="seed")
        bob.open("notes.md", "shared start\n")
        await eventually(lambda: bob.text("notes.md") == "shared start\n", what="bob bound")
        await first.__aexit__(None, None, None)

        # The hub is gone: both keep editing, and hear that they are reconnecting.
        await _status(ann, "reconnecting")
        await _status(bob, "reconnecting")
        ann.type("notes.md", 0, "ann offline ✈\n")
        bob.type("notes.md", len(bob.text("notes.md")), "bob offline 🚆\n")
        await bob.flush()
        async with Hub(config) as again:
            await _status(ann, "connected")
            await _status(bob, "connected")
            parts = ("ann offline ✈\n", "shared start\n", "bob offline 🚆\n")

            def merged() -> bool:
                texts = {ann.text("notes.md"), bob.text("notes.md"), _room_text(again, "notes.md")}
                return texts == {"".join(parts)}

            await eventually(merged, timeout=30, what="offline edits to merge exactly once")


def _room_text(hub: Hub, path: str) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(path)


async def _status(editor: Editor, state: str) -> None:
    await editor.wait_status(state)


async def test_two_editors_opening_a_new_file_at_once_seed_it_once(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        Editor(root, init_options=options(hub, data_dir, "bob")) as bob,
    ):
        await _status(ann, "connected")
        await _status(bob, "connected")
        ann.open("new.py", "def main():\n    pass\n")
        bob.open("new.py", "def main():\n    pass\n")
        ann.type("new.py", 0, "# ann\n")
        bob.type("new.py", 0, "# bob\n")

        def settled() -> bool:
            room_text = _room_text(hub, "new.py")
            return room_text is not None and ann.text("new.py") == bob.text("new.py") == room_text

        await eventually(settled, what="both editors and the hub agree")
        final = ann.text("new.py")
        assert final.count("def main():") == 1, final
        assert final.count("# ann\n") == 1 and final.count("# bob\n") == 1, final


async def test_ignored_and_outside_files_are_never_shared(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / ".huddleignore").write_text("secret/\n*.log\n")
    outside = tmp_path / "elsewhere.py"
    async with Editor(root, init_options=options(hub, data_dir, "ann")) as ann:
        await _status(ann, "connected")
        for path in (".env", "deploy.pem", "id_ed25519", "secret/token.txt", "build.log"):
            ann.open(path, "SECRET=hunter2\n")
            ann.type(path, 0, "more ")
        ann.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(outside.as_uri(), "python", 1, "SECRET=outside\n")
            )
        )
        ann.open("shared.py", "visible = True\n")
        await eventually(lambda: _room_text(hub, "shared.py") == "visible = True\n", what="shared")
        room = hub.room(ROOM)
        assert room is not None
        assert set(file_texts(room.doc)) == {"shared.py"}
        journal = await hub.store.call(lambda db: db.journal(ROOM))
        assert all(b"hunter2" not in e.update and b"outside" not in e.update for e in journal)


async def test_bad_input_keeps_the_document_intact(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with Editor(root, init_options=options(hub, data_dir, "ann")) as ann:
        ann.open("a.txt", "héllo 😀\nworld\n")
        await eventually(lambda: _room_text(hub, "a.txt") == "héllo 😀\nworld\n", what="seeded")

        async def bound() -> bool:  # not just in the hub: a change before it is only recorded
            status = await ann.client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command=Command.STATUS)
            )
            return bool(status["shared"] == ["a.txt"])

        await eventually(bound, what="ann's huddle lsp shares a.txt")
        # didChange for a document that was never opened.
        ann.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=ann.uri("never.txt"), version=2),
                [lsp.TextDocumentContentChangePartial(range=_range(0, 0, 0, 0), text="x")],
            )
        )
        # A position inside the emoji's surrogate pair (UTF-16 offset 7 splits 😀).
        buf = ann.buffers[ann.uri("a.txt")]
        buf.version += 1
        ann.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=buf.uri, version=buf.version),
                [lsp.TextDocumentContentChangePartial(range=_range(0, 7, 0, 7), text="X")],
            )
        )
        await eventually(
            lambda: any("Huddle" in m.message for m in ann.client.messages), what="a clear message"
        )
        # Beyond the end of a line and of the file: clamped, as LSP specifies.
        buf.version += 1
        buf.text = "héllo 😀!\nworld\n"
        ann.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=buf.uri, version=buf.version),
                [lsp.TextDocumentContentChangePartial(range=_range(0, 99, 0, 99), text="!")],
            )
        )
        await eventually(lambda: _room_text(hub, "a.txt") == "héllo 😀!\nworld\n", what="clamped")
        assert "never.txt" not in file_texts(hub.room(ROOM).doc)  # type: ignore[union-attr]


def _range(l1: int, c1: int, l2: int, c2: int) -> lsp.Range:
    return lsp.Range(lsp.Position(l1, c1), lsp.Position(l2, c2))


async def test_malformed_initialization_options(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    bad_options: dict[str, object] = {"hub": "http://not-a-ws-url", "token": 5}
    async with Editor(root, init_options=bad_options) as ann:  # type: ignore[arg-type]
        await eventually(lambda: bool(ann.client.messages), what="an error message")
        message = ann.client.messages[0]
        assert message.type == lsp.MessageType.Error
        assert "hub" in message.message and "initializationOptions" in message.message
        ann.open("a.txt", "still editable\n")
        ann.type("a.txt", 0, "ok ")
        status = await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.status")
        )
        assert status["state"] == "offline"
        assert ann.text("a.txt") == "ok still editable\n"


async def test_presence_undo_follow_and_invite(hub: Hub, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        Editor(root, encoding="utf-8", init_options=options(hub, data_dir, "bob")) as bob,
        Editor(root, init_options=options(hub, data_dir, "rita", role="read")) as rita,
    ):
        ann.open("a.py", "x = 1\ny = 2\n")
        await eventually(lambda: _room_text(hub, "a.py") is not None, what="seeded")
        bob.open("a.py", "x = 1\ny = 2\n")
        rita.open("a.py", "x = 1\ny = 2\n")
        ann.client.protocol.notify(
            "huddle/cursor",
            {"uri": ann.uri("a.py"), "position": {"line": 1, "character": 3}},
        )

        def sees_ann(editor: Editor, line: int, character: int) -> bool:
            notes = editor.notifications.get("huddle/peers", [])
            for peer in notes[-1].peers if notes else []:
                if peer.name == "ann" and getattr(peer, "position", None) is not None:
                    return (peer.position.line, peer.position.character) == (line, character)
            return False

        await eventually(lambda: sees_ann(bob, 1, 3), what="bob sees ann's cursor at 1:3")
        # Text typed above it moves it, for the typist and for a reader, while ann stays put.
        bob.type("a.py", 0, "#\n")
        await eventually(lambda: sees_ann(bob, 2, 3), what="bob sees ann's cursor at 2:3")
        await eventually(lambda: sees_ann(rita, 2, 3), what="rita sees ann's cursor at 2:3")
        bob.replace("a.py", 0, 2, "")
        await eventually(lambda: sees_ann(rita, 1, 3), what="rita sees ann's cursor at 1:3")
        await eventually(lambda: ann.text("a.py") == "x = 1\ny = 2\n", what="ann has it back")

        # Undo my own change only, never a teammate's.
        ann.type("a.py", 0, "# ann\n")
        await eventually(lambda: bob.text("a.py").startswith("# ann\n"), what="bob has ann's line")
        bob.type("a.py", len(bob.text("a.py")), "z = 3\n")
        await eventually(lambda: ann.text("a.py").endswith("z = 3\n"), what="ann has bob's line")
        undone = await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.undoMine")
        )
        assert undone == {"undone": True}
        expected = "x = 1\ny = 2\nz = 3\n"
        await eventually(
            lambda: ann.text("a.py") == bob.text("a.py") == _room_text(hub, "a.py") == expected,
            what="ann's line undone, bob's kept",
        )

        # Follow: ann follows bob, bob moves to another file, ann is shown it.
        await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.follow", arguments=["bob"])
        )
        bob.open("b.py", "b = 1\n")
        bob.type("b.py", 0, "#")
        await eventually(
            lambda: any(d.uri == ann.uri("b.py") for d in ann.client.shown_documents),
            what="ann is shown bob's file",
        )

        # Invites: editors get a working link, readers are refused; read-only status shows.
        link = await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.invite", arguments=[{"role": "read"}])
        )
        assert link["url"].startswith(f"{hub.url}/{ROOM}?token=")
        assert hub.signer.verify(link["token"], ROOM).role.value == "read"
        with pytest.raises(Exception, match="read-only"):
            await rita.client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command="huddle.invite", arguments=[{}])
            )
        rita.type("a.py", 0, "rita was here\n")
        await _status(rita, "read-only")
        assert "rita" not in (_room_text(hub, "a.py") or "")


async def test_the_echo_of_a_teammates_edit_in_several_places_leaves_the_cursor_be(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    """A teammate's edit of two places reaches the editor as one applyEdit of two edits, and
    comes back as a didChange of two changes: that echo is not the user typing, so their
    cursor, as teammates see it, stays where they put it (it used to jump to the edit and be
    sent to the whole room)."""
    root = tmp_path / "ws"
    root.mkdir()
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "nina")) as nina,
    ):
        await nina.wait_event("synced")
        await nina.request("watchAwareness")
        ann.open("a.py", "x = 1\ny = 2\nz = 3\n")
        await eventually(lambda: _room_text(hub, "a.py") is not None, what="seeded")

        def cursor(line: int, character: int) -> None:
            ann.client.protocol.notify(
                "huddle/cursor",
                {"uri": ann.uri("a.py"), "position": {"line": line, "character": character}},
            )

        def anns() -> list[int | None]:
            return [
                e["head"] for e in nina.events if e["event"] == "awareness" and e["name"] == "ann"
            ]

        cursor(1, 3)  # "y =|"
        await eventually(lambda: 9 in anns(), what="nina sees ann's cursor after 'y ='")
        before = len(anns())
        await nina.request(
            "inserts",
            file="a.py",
            inserts=[{"index": 0, "text": "# top\n"}, {"index": 24, "text": "w = 4\n"}],
        )
        edited = "# top\nx = 1\ny = 2\nz = 3\nw = 4\n"
        await nina.request("cursor", file="a.py", index=len(edited), user={"name": "nina"})
        await eventually(lambda: ann.text("a.py") == edited, what="ann's editor applies it")
        assert ann.requests == 1, "the two inserts reach the editor as one applyEdit"

        def sees_nina_below() -> bool:
            notes = ann.notifications.get("huddle/peers", [])
            return any(
                p.name == "nina"
                and getattr(p, "position", None) is not None
                and (p.position.line, p.position.character) == (5, 0)
                for p in (notes[-1].peers if notes else [])
            )

        # Placed at 5:0 only once the echo has been taken: the tick that did it would have sent
        # a cursor moved by the echo before it.
        await eventually(sees_nina_below, what="ann is shown nina's cursor after the echo")
        cursor(2, 1)  # "y|"
        await eventually(lambda: 13 in anns()[before:], what="nina sees ann's cursor after 'y'")
        moved = anns()[before:]
        assert set(moved) <= {9, 15, 13}, f"ann's cursor as nina saw it: {moved}"


async def test_an_edit_answered_after_the_timeout_is_dropped_quietly(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    """An editor that applies the edits at once but answers them after huddle lsp stopped
    waiting: the edits are not applied twice, typing on both sides converges, and the late
    answers leave no error in the server's log (pygls used to fail on each)."""
    root = tmp_path / "ws"
    root.mkdir()
    log = tmp_path / "bob-lsp.log"
    slow = {"HUDDLE_APPLY_EDIT_TIMEOUT_S": "0.3", "HUDDLE_LOG_LEVEL": "info"}
    async with (
        Editor(root, init_options=options(hub, data_dir, "ann")) as ann,
        Editor(root, init_options=options(hub, data_dir, "bob"), env=slow, answer_delay=1.0) as bob,
    ):
        reading = asyncio.create_task(capture_stderr(bob, log))
        ann.open("a.py", "x = 1\n")
        await eventually(lambda: _room_text(hub, "a.py") == "x = 1\n", what="seeded")
        bob.open("a.py", "x = 1\n")
        await eventually(lambda: bob.text("a.py") == "x = 1\n", what="bob joined")
        for i in range(3):
            ann.type("a.py", 0, f"# ann {i}\n")
            await asyncio.sleep(0.4)  # each edit outlives its timeout in bob's editor
            bob.type("a.py", len(bob.text("a.py")), f"# bob {i}\n")
        expected_lines = {f"# ann {i}" for i in range(3)} | {f"# bob {i}" for i in range(3)}
        await eventually(
            lambda: ann.text("a.py") == bob.text("a.py") == _room_text(hub, "a.py"),
            timeout=20,
            what="both editors and the hub agree",
        )
        text = ann.text("a.py")
        assert sorted(text.splitlines()) == sorted(expected_lines | {"x = 1"}), text
        assert bob.applied >= 3
        await eventually(lambda: bob.answered == bob.requests, timeout=20, what="every answer")
        # The server reads bob's messages in order: once it answers this, it has read them all.
        await bob.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=Command.STATUS)
        )
    await asyncio.wait_for(reading, 20)  # the server's stderr, to its end
    records = log.read_text(errors="replace")
    assert "Traceback" not in records and " ERROR " not in records, records
