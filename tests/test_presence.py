"""Presence without pygls: ``Presence`` sees the language server only as a ``Workspace``, so
the work of one tick (teammates' cursors in the editor's coordinates) is checked here on its
own, with a real pycrdt document and real bridges. The editors' view of it is tested end to end
in test_lsp_e2e.py, test_neovim_plugin.py, test_emacs.py and the VS Code workbench."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text
from pydantic import BaseModel

from huddle.collab.bridge import TextChange
from huddle.collab.positions import LineIndex, PositionEncoding
from huddle.collab.schema import files
from huddle.collab.sticky import sticky_position
from huddle.lsp.documents import Buffer
from huddle.lsp.ignore import ShareRules
from huddle.lsp.presence import Presence
from huddle.protocol import EditorNotification, LspPosition, PeersParams
from tests.support.peers import eventually

TEXT = "é😀 = 1\nxyz\n"
ASCII = "a = 1\nxyz\n"


@dataclass
class _Client:
    peers: dict[int, dict[str, Any]] = field(default_factory=dict)
    local_state: dict[str, Any] | None = None

    def set_presence(self, state: dict[str, Any] | None) -> None:
        self.local_state = state


@dataclass
class _Session:
    doc: Doc[Any]
    client: _Client
    user: str = "me"
    color: str = "#123456"


class _Workspace:
    """The part of the language server that presence uses (huddle.lsp.workspace.Workspace)."""

    def __init__(self, root: Path, doc: Doc[Any], encoding: PositionEncoding) -> None:
        self.root = root
        self.rules = ShareRules(root)
        self.encoding = encoding
        self.settings = None
        self.buffers: dict[str, Buffer] = {}
        self.session = _Session(doc, _Client())
        self.sent: list[tuple[EditorNotification, BaseModel]] = []

    def notify(self, method: EditorNotification, params: BaseModel) -> None:
        self.sent.append((method, params))


def _scene(
    tmp_path: Path, encoding: PositionEncoding, content: str = TEXT
) -> tuple[_Workspace, Text, Presence]:
    doc: Doc[Any] = Doc()
    text = Text(content)
    files(doc)["m.py"] = text
    ws = _Workspace(tmp_path, doc, encoding)
    buffer = Buffer((tmp_path / "m.py").as_uri(), "m.py", 0, content)
    buffer.bind(text, "me", encoding)
    ws.buffers[buffer.uri] = buffer
    return ws, text, Presence(ws)  # type: ignore[arg-type]


async def _tick(ws: _Workspace, presence: Presence) -> PeersParams:
    ws.sent.clear()
    presence.schedule()
    await eventually(lambda: bool(ws.sent), timeout=5, what="a presence tick")
    method, params = ws.sent[-1]
    assert method is EditorNotification.PEERS and isinstance(params, PeersParams)
    return params


async def test_a_teammates_cursor_in_each_encoding(tmp_path: Path) -> None:
    for encoding, character in (
        (PositionEncoding.UTF16, 3),  # é, then 😀 as two units
        (PositionEncoding.UTF8, 6),  # é two bytes, 😀 four
        (PositionEncoding.UTF32, 2),
    ):
        ws, text, presence = _scene(tmp_path, encoding)
        at = sticky_position(text, LineIndex(TEXT), 2)  # after "é😀"
        ws.session.client.peers[7] = {
            "user": {"name": "tom", "color": "#e5534b"},
            "file": "m.py",
            "cursor": {"anchor": at, "head": at},
        }
        peers = (await _tick(ws, presence)).peers
        assert len(peers) == 1 and peers[0].name == "tom"
        assert peers[0].uri == (tmp_path / "m.py").as_uri()
        assert peers[0].position == LspPosition(line=0, character=character), encoding


async def test_what_a_teammate_cannot_make_presence_show(tmp_path: Path) -> None:
    ws, _, presence = _scene(tmp_path, PositionEncoding.UTF16)
    elsewhere: Doc[Any] = Doc()
    unseen = Text("not in this room")
    files(elsewhere)["m.py"] = unseen
    ahead = sticky_position(unseen, LineIndex(str(unseen)), 3)
    ws.session.client.peers.update(
        {
            1: {"user": {"name": "a"}, "file": "../../etc/passwd"},  # outside the workspace
            2: {"user": {"name": "b"}, "file": ".env"},  # private
            3: {"user": {"name": "c"}, "file": "m.py", "cursor": {"head": ahead}},  # unknown
            4: {"user": {"name": "d"}, "file": "m.py", "cursor": {"head": {"item": []}}},
            5: {"user": "not a dict", "file": 12},
        }
    )
    peers = {p.client_id: p for p in (await _tick(ws, presence)).peers}
    assert set(peers) == {1, 2, 3, 4, 5}
    assert all(p.uri is None for i, p in peers.items() if i in (1, 2, 5))
    assert all(p.position is None for p in peers.values())
    assert peers[5].name == "" and peers[5].file is None


async def test_the_users_cursor_is_published_as_relative_positions(tmp_path: Path) -> None:
    ws, text, presence = _scene(tmp_path, PositionEncoding.UTF16)
    buffer = next(iter(ws.buffers.values()))
    presence.bound(buffer)
    await _tick(ws, presence)
    state = ws.session.client.local_state
    assert state is not None and state["file"] == "m.py"
    assert state["user"] == {"name": "me", "color": "#123456"}
    assert state["cursor"]["head"] == sticky_position(text, LineIndex(TEXT), 0)


# -- what a tick keeps from the last one must never go stale ---------------------------------


def _teammate(doc: Doc[Any]) -> Doc[Any]:
    theirs: Doc[Any] = Doc()
    theirs.apply_update(doc.get_update())
    return theirs


def _send(theirs: Doc[Any], doc: Doc[Any]) -> None:
    doc.apply_update(theirs.get_update(doc.get_state()))


def _echo(ws: _Workspace) -> None:
    """The editor applies what the bridge sends it (edits of one applyEdit, last first)."""
    for buffer in ws.buffers.values():
        edit = buffer.next_edit()
        if edit is None:
            continue
        assert buffer.bridge is not None
        ordered = sorted(edit.edits, key=lambda e: (e.range.start.line, e.range.start.character))
        changes = [TextChange(e.range, e.new_text) for e in reversed(ordered)]
        buffer.change(buffer.version + 1, changes)
        buffer.bridge.edit_result(edit.id, True)


def _cursor_at(text: Text, offset: int, anchor: int | None = None) -> dict[str, Any]:
    index = LineIndex(str(text))
    head = sticky_position(text, index, offset)
    return {
        "anchor": sticky_position(text, index, offset if anchor is None else anchor),
        "head": head,
    }


async def test_a_remote_edit_before_a_teammates_cursor_moves_it_and_one_after_does_not(
    tmp_path: Path,
) -> None:
    for encoding in PositionEncoding:
        ws, _, presence = _scene(tmp_path, encoding, ASCII)
        theirs = _teammate(ws.session.doc)
        their_text = files(theirs)["m.py"]
        assert isinstance(their_text, Text)
        at = len("a = 1\nxy")
        ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(their_text, at)}
        shown = (await _tick(ws, presence)).peers[0]
        assert shown.position == LspPosition(line=1, character=2), encoding

        their_text.insert(len("a = 1\nxyz"), "é😀")  # after the cursor
        _send(theirs, ws.session.doc)
        _echo(ws)
        presence._tick()
        assert presence._published_peers is not None
        assert presence._published_peers.peers[0].position == shown.position, encoding

        their_text.insert(len("a = 1\n"), "ab")  # before it, on its line
        _send(theirs, ws.session.doc)
        _echo(ws)
        moved = (await _tick(ws, presence)).peers[0]
        assert moved.position == LspPosition(line=1, character=4), encoding

        their_text.insert(0, "\n")  # a line above it
        _send(theirs, ws.session.doc)
        _echo(ws)
        down = (await _tick(ws, presence)).peers[0]
        assert down.position == LspPosition(line=2, character=4), encoding
        assert down.selection is not None and down.selection.start == down.position

        del their_text[0:3]  # deleted before it: the line break and "a ="
        _send(theirs, ws.session.doc)
        _echo(ws)
        back = (await _tick(ws, presence)).peers[0]
        assert back.position == LspPosition(line=1, character=4), encoding


async def test_a_selection_follows_edits_between_its_anchor_and_head(tmp_path: Path) -> None:
    ws, _, presence = _scene(tmp_path, PositionEncoding.UTF16, ASCII)
    theirs = _teammate(ws.session.doc)
    their_text = files(theirs)["m.py"]
    assert isinstance(their_text, Text)
    # from the start of the text (the anchor) to after "xyz" (the head)
    ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(their_text, 9, 0)}
    peer = (await _tick(ws, presence)).peers[0]
    assert peer.selection is not None
    assert (peer.selection.start, peer.selection.end) == (
        LspPosition(line=0, character=0),
        LspPosition(line=1, character=3),
    )
    their_text.insert(2, "\n")  # between them: the head goes down a line, the anchor stays
    _send(theirs, ws.session.doc)
    _echo(ws)
    peer = (await _tick(ws, presence)).peers[0]
    assert peer.selection is not None
    assert peer.selection.start == LspPosition(line=0, character=0)
    assert peer.selection.end == LspPosition(line=2, character=3)


async def test_a_cursor_is_placed_again_when_the_editor_applies_the_edit(tmp_path: Path) -> None:
    """A tick between a remote edit and the editor's echo of it places cursors in the text the
    editor has; the echo alone (the shared text unchanged since) must move them."""
    ws, _, presence = _scene(tmp_path, PositionEncoding.UTF16, ASCII)
    theirs = _teammate(ws.session.doc)
    their_text = files(theirs)["m.py"]
    assert isinstance(their_text, Text)
    ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(their_text, 8)}
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=1, character=2)
    their_text.insert(0, "\n")
    _send(theirs, ws.session.doc)
    await _tick(ws, presence)  # the editor has not applied it yet
    _echo(ws)
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=2, character=2)


@pytest.mark.xfail(
    strict=True,
    reason="pycrdt 0.14 StickyIndex: once a text is split into several items, get_index counts "
    "UTF-8 bytes before the item, not UTF-16 units (old and new presence alike)",
)
async def test_non_ascii_typed_before_a_teammates_cursor(tmp_path: Path) -> None:
    ws, _, presence = _scene(tmp_path, PositionEncoding.UTF16)
    theirs = _teammate(ws.session.doc)
    their_text = files(theirs)["m.py"]
    assert isinstance(their_text, Text)
    cursor = _cursor_at(their_text, len("é😀 = 1\nxy"))
    ws.session.client.peers[7] = {"file": "m.py", "cursor": cursor}
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=1, character=2)
    their_text.insert(len("é😀 = 1\n".encode()), "中😀")
    _send(theirs, ws.session.doc)
    _echo(ws)
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=1, character=5)


async def test_teammates_moving_files_leaving_and_files_leaving_the_room(tmp_path: Path) -> None:
    ws, text, presence = _scene(tmp_path, PositionEncoding.UTF16)
    doc = ws.session.doc
    other = Text("not open here\n")
    files(doc)["n.py"] = other
    ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(text, 1)}
    ws.session.client.peers[8] = {"file": "n.py", "cursor": _cursor_at(other, 3)}
    peers = {p.client_id: p for p in (await _tick(ws, presence)).peers}
    assert peers[7].position == LspPosition(line=0, character=1)
    assert peers[8].uri == (tmp_path / "n.py").as_uri() and peers[8].position is None

    # 7 moves to the file this editor does not have open; 8 leaves
    ws.session.client.peers[7] = {"file": "n.py", "cursor": _cursor_at(other, 5)}
    del ws.session.client.peers[8]
    peers = {p.client_id: p for p in (await _tick(ws, presence)).peers}
    assert set(peers) == {7}
    assert peers[7].file == "n.py" and peers[7].uri == (tmp_path / "n.py").as_uri()
    assert peers[7].position is None and peers[7].selection is None

    # n.py leaves the room (a teammate deleted it): no URI to open any more; it comes back
    del files(doc)["n.py"]
    assert (await _tick(ws, presence)).peers[0].uri is None
    assert presence.uri_of("n.py") is None
    files(doc)["n.py"] = Text("back\n")
    assert (await _tick(ws, presence)).peers[0].uri == (tmp_path / "n.py").as_uri()

    # and back into m.py, where the editor shows it
    ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(text, 8)}
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=1, character=1)


async def test_a_cursor_in_an_edit_on_its_way_shows_once_the_edit_arrives(tmp_path: Path) -> None:
    ws, _, presence = _scene(tmp_path, PositionEncoding.UTF16)
    theirs = _teammate(ws.session.doc)
    their_text = files(theirs)["m.py"]
    assert isinstance(their_text, Text)
    their_text.insert(len(TEXT.encode()), "new line\n")
    ws.session.client.peers[7] = {"file": "m.py", "cursor": _cursor_at(their_text, len(TEXT) + 3)}
    assert (await _tick(ws, presence)).peers[0].position is None  # the item is not here yet
    _send(theirs, ws.session.doc)
    _echo(ws)
    assert (await _tick(ws, presence)).peers[0].position == LspPosition(line=2, character=3)


async def test_nothing_is_sent_again_when_nothing_changed(tmp_path: Path) -> None:
    ws, text, presence = _scene(tmp_path, PositionEncoding.UTF16)
    ws.session.client.peers[7] = {
        "user": {"name": "tom"},
        "file": "m.py",
        "cursor": _cursor_at(text, 9),
    }
    first = await _tick(ws, presence)
    ws.sent.clear()
    ws.session.client.peers[7] = dict(ws.session.client.peers[7])  # the same state, sent again
    presence._tick()
    assert ws.sent == []
    ws.session.client.peers[7] = {
        "user": {"name": "tom"},
        "file": "m.py",
        "cursor": _cursor_at(text, 10),
    }
    assert (await _tick(ws, presence)).peers[0].position != first.peers[0].position
