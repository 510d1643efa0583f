"""A teammate's replacement must keep its shape in the bridge's queue (issue 13, found by the
real-editor fuzzer beside the whole suite: 2 runs in 10 garbled a marker Emacs typed).

The queue (what the editor has not been sent yet) is also what the user's concurrent typing is
transformed over on its way into the CRDT, so its shape decides where that typing lands. A
teammate who replaces ``<y26>`` by ``ß<e20>`` deletes every old character and inserts new ones.
Trimmed to what differs (``<y26`` by ``ß<e20``, the old ``>`` kept), the queue takes the CRDT's
``>``, the teammate's new one, for the old: typing next to the old ``>`` then lands inside the
new marker (``<e20 >``), and a deletion of the old ``>`` takes the new one (``<e11`` followed by
the user's own ``<v7>``).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from huddle.collab.bridge import Bridge, TextChange
from huddle.collab.positions import Position as P
from huddle.collab.positions import Range as R


def _change(line: int, char: int, end_line: int, end_char: int, text: str) -> TextChange:
    return TextChange(R(P(line, char), P(end_line, end_char)), text)


def _replace(doc: Doc[Any], text: Text, start: int, end: int, new: str) -> None:
    """A teammate's replacement of code points [start, end) as the CRDT has it: every old
    character deleted, the new ones inserted (what Emacs's delete-region + insert made)."""
    current = str(text)
    first, last = len(current[:start].encode()), len(current[:end].encode())
    with doc.transaction(origin="teammate"):
        del text[first:last]
        text.insert(first, new)


def test_typing_under_a_stale_edit_stays_out_of_a_teammates_replacement() -> None:
    """Seed 1384944357 (CRLF), Neovim 0.7 on plain LSP, cut down from the hub's journal. The
    room's text has no final newline; Neovim keeps one (``eol``), so the edit it is sent is
    narrowed (the final line break it keeps is no change) and so was Emacs's replacement of
    ``<c30>\\r\\n<y26>`` by ``ß<e20>`` in it. The user had joined ``中<c30>`` and ``<y26>`` with a
    space a moment before: Neovim skipped the edit as stale (answering "applied: true"), and
    the trimmed edit went back into the queue. The space, transformed over it, reached the
    room between Emacs's ``0`` and ``>``: ``中ß<e20 >``."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    room = "<c29>\r\n中<c30>\r\n<y26>"
    text.insert(0, room)
    bridge = Bridge(
        text,
        origin="me",
        version=250,
        editor_text=room + "\r\n",
        final_newline=True,
        line_diffs=True,
    )
    assert bridge.next_apply_edit() is None  # the kept final newline is no change
    _replace(doc, text, room.index("<c30>"), len(room), "ß<e20>")
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 250
    # Sent narrowed: the editor's text ends the same either way.
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(1, 1), P(2, 4)), "ß<e20")]
    bridge.edit_result(edit.id, applied=True)  # skipped as stale: the join came first
    bridge.local_change(251, [_change(1, 6, 2, 0, " ")])
    assert bridge.shadow == "<c29>\r\n中<c30> <y26>\r\n"
    assert str(text) == "<c29>\r\n中ß<e20> ", "the user's space went inside the teammate's marker"
    # The editor gets the room's text, and nothing is left to repair.
    resend = bridge.next_apply_edit()
    assert resend is not None and resend.version == 251
    bridge.edit_result(resend.id, applied=True)
    bridge.local_change(
        252,
        [
            _change(
                e.range.start.line,
                e.range.start.character,
                e.range.end.line,
                e.range.end.character,
                e.new_text,
            )
            for e in reversed(resend.edits)
        ],
    )
    assert bridge.shadow == str(text) + "\r\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_a_cut_after_an_edit_applied_over_typing_leaves_a_teammates_replacement_whole() -> None:
    """The same trim in the other place the queue was narrowed: after VS Code applied an edit
    over typing it had reported first (``late_applies``), the whole queue, with a teammate's
    replacement of ``<y5>`` by ``中<e11>`` that arrived meanwhile, was narrowed to keep the old
    ``>``. The user then cut the line ``<y5>`` (its view was behind) and typed ``<v7>``: the cut
    took the teammate's ``>``. The fuzzer's seed 128283034 (LF) left ``中<e11<v7>``; its trace
    was not kept, so this one is built from the mechanism."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\n<y5>\n")
    bridge = Bridge(text, origin="me", version=1, late_applies=True, normalizes_eol=True)
    with doc.transaction(origin="teammate"):
        text.insert(0, "X")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 0), P(0, 0)), "X")]
    bridge.local_change(2, [_change(0, 1, 0, 1, "t")])  # a keystroke before the edit landed
    bridge.edit_result(edit.id, applied=True)
    _replace(doc, text, 3, 7, "中<e11>")  # "Xa\n<y5>\n": the teammate replaces <y5>
    bridge.local_change(3, [_change(0, 0, 0, 0, "X")])  # the edit, applied over the typing
    assert not bridge.in_flight and bridge.shadow == "Xat\n<y5>\n"
    # The user cuts the line's text and types a token, each key a notification.
    bridge.local_change(4, [_change(1, 0, 1, 4, "")])
    for k, key in enumerate("<v7>"):
        bridge.local_change(5 + k, [_change(1, k, 1, k, key)])
    assert str(text) == "Xat\n<v7>中<e11>\n", "the cut took the teammate's '>'"
    resend = bridge.next_apply_edit()
    assert resend is not None
    bridge.edit_result(resend.id, applied=True)
    bridge.local_change(
        9,
        [
            _change(
                e.range.start.line,
                e.range.start.character,
                e.range.end.line,
                e.range.end.character,
                e.new_text,
            )
            for e in reversed(resend.edits)
        ],
    )
    assert bridge.shadow == str(text)
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0
