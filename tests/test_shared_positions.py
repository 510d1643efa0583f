"""Editor positions mapped into the shared text while remote changes are on their way to the
editor: what completions, selections and presence anchor on."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, StickyIndex, Text

from huddle.collab.bridge import Bridge
from huddle.collab.ops import TextOp, map_offset
from huddle.collab.sticky import sticky_position


def test_map_offset_through_inserts_and_deletes() -> None:
    op = TextOp([2, "XY", 3, -2, 1])  # "abcdefgh" -> "abXYcdeh"
    assert op.apply("abcdefgh") == "abXYcdeh"
    assert [map_offset(op, i) for i in range(9)] == [0, 1, 2, 5, 6, 7, 7, 7, 8]
    assert map_offset(TextOp(["new "]), 0) == 0  # an insert at the cursor stays after it


def bridged(content: str) -> tuple[Text, Bridge]:
    doc: Doc[Any] = Doc()
    doc["t"] = text = Text(content)
    return text, Bridge(text, origin="lsp", version=1, editor_text=content)


def resolved(text: Text, cursor: dict[str, Any] | None) -> str:
    assert cursor is not None
    units = StickyIndex.from_json(cursor, text).get_index()
    before = str(text).encode("utf-16-le")[: 2 * units].decode("utf-16-le")
    return before


def test_a_completion_cursor_lands_where_the_user_is_despite_a_pending_remote_edit() -> None:
    text, bridge = bridged("total = \n")
    text.insert(0, "x = 1\n")  # a teammate's line, not yet applied in the editor
    assert bridge.shadow == "total = \n" and bridge.has_pending
    offset = len("total = ")  # the user asks here, in the editor's text
    shared = bridge.to_shared(offset)
    cursor = sticky_position(text, bridge.shared_index, shared)
    assert resolved(text, cursor) == "x = 1\ntotal = "


def test_with_emoji_the_cursor_never_falls_inside_a_character() -> None:
    text, bridge = bridged("a = '😀'\nb = \n")
    text.insert(0, "# 😀😀 party\n")
    offset = len("a = '😀'\nb = ")
    cursor = sticky_position(text, bridge.shared_index, bridge.to_shared(offset))
    assert resolved(text, cursor) == "# 😀😀 party\na = '😀'\nb = "
