"""Presence without pygls: ``Presence`` sees the language server only as a ``Workspace``, so
the work of one tick (teammates' cursors in the editor's coordinates) is checked here on its
own, with a real pycrdt document and real bridges. The editors' view of it is tested end to end
in test_lsp_e2e.py, test_neovim_plugin.py, test_emacs.py and the VS Code workbench."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text
from pydantic import BaseModel

from huddle.collab.positions import LineIndex, PositionEncoding
from huddle.collab.schema import files
from huddle.collab.sticky import sticky_position
from huddle.lsp.documents import Buffer
from huddle.lsp.ignore import ShareRules
from huddle.lsp.presence import Presence
from huddle.protocol import EditorNotification, LspPosition, PeersParams
from tests.support.peers import eventually

TEXT = "é😀 = 1\nxyz\n"


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


def _scene(tmp_path: Path, encoding: PositionEncoding) -> tuple[_Workspace, Text, Presence]:
    doc: Doc[Any] = Doc()
    text = Text(TEXT)
    files(doc)["m.py"] = text
    ws = _Workspace(tmp_path, doc, encoding)
    buffer = Buffer((tmp_path / "m.py").as_uri(), "m.py", 0, TEXT)
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
