"""VS Code reports a teammate's replacement as the smallest changes that make it.

Captured from the real workbench (code-server 4.100.3, VS Code 1.100.3) in the real-editor
fuzzer (tests/editor_fuzz.py): huddle lsp sent one TextEdit, ``(3,2)-(3,8)`` replaced by
``<y20>``, and VS Code answered ``applied: true`` and reported it in one ``didChange`` as three
changes, last first, each on the text the one before left: a deletion at ``(3,7)``, ``0``
inserted at ``(3,6)``, a deletion at ``(3,4)``. The bridge bounded an echo at one change per
TextEdit (Neovim's way), so it took the first change for the user's typing under the edit and
fed it to the room: a teammate's ``<a15>`` replaced by ``<p19>`` reached every editor as
``<p199>``, and ``\\n<a21>`` replaced by ``😀<p25>`` as ``😀<p25p5>`` (from Huddle's Neovim
plugin and from a Node Yjs client alike). No concurrency is needed: an idle VS Code did it.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from huddle.collab.bridge import Bridge, TextChange
from huddle.collab.positions import Position as P
from huddle.collab.positions import Range as R


def _replace(doc: Doc[Any], text: Text, start: int, end: int, inserted: str) -> None:
    """A teammate's replacement (another origin); offsets in an ASCII text."""
    with doc.transaction(origin="teammate"):
        del text[start:end]
        text.insert(start, inserted)


def test_a_replacement_echoed_as_its_smallest_changes_is_not_typed_again() -> None:
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "x<a15>z\n")
    bridge = Bridge(text, origin="me", version=7, late_applies=True)
    _replace(doc, text, 1, 6, "<p19>")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 1), P(0, 6)), "<p19>")]
    bridge.edit_result(edit.id, applied=True)
    # VS Code's report: "5" -> "9", then "a" -> "p".
    bridge.local_change(
        8, [TextChange(R(P(0, 4), P(0, 5)), "9"), TextChange(R(P(0, 2), P(0, 3)), "p")]
    )
    assert bridge.shadow == "x<p19>z\n"
    assert str(text) == "x<p19>z\n", "a piece of the echo was fed back as typing"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_the_traced_replacement_of_three_changes() -> None:
    """The trace's shape (its text in ASCII): six characters at (3,2) replaced by ``<y20>``,
    reported as three changes."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    before = "a\nb\nc\nab<y12>qcd\nd\n"
    text.insert(0, before)
    line3 = before.index("ab<y12>qcd")
    bridge = Bridge(text, origin="me", version=174, late_applies=True)
    _replace(doc, text, line3 + 2, line3 + 8, "<y20>")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(3, 2), P(3, 8)), "<y20>")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(
        175,
        [
            TextChange(R(P(3, 7), P(3, 8)), ""),
            TextChange(R(P(3, 6), P(3, 6)), "0"),
            TextChange(R(P(3, 4), P(3, 5)), ""),
        ],
    )
    after = "a\nb\nc\nab<y20>cd\nd\n"
    assert bridge.shadow == after
    assert str(text) == after, "a piece of the echo was fed back as typing"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_typing_then_a_replacement_echoed_as_its_smallest_changes() -> None:
    """A keystroke reported before the answer, then the edit applied over it (at its sent
    positions) and reported as two changes: the keystroke is the user's, the rest the echo."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "x<a15>z\n")
    bridge = Bridge(text, origin="me", version=7, late_applies=True)
    _replace(doc, text, 1, 6, "<p19>")
    edit = bridge.next_apply_edit()
    assert edit is not None
    bridge.local_change(8, [TextChange(R(P(0, 7), P(0, 7)), "k")])  # "x<a15>zk"
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(
        9, [TextChange(R(P(0, 4), P(0, 5)), "9"), TextChange(R(P(0, 2), P(0, 3)), "p")]
    )
    assert bridge.shadow == "x<p19>zk\n"
    assert str(text) == "x<p19>zk\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0
