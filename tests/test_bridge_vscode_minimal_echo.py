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


def test_an_echo_shrunk_on_one_text_and_applied_to_the_next_is_settled() -> None:
    """Seed 206635569 (CRLF; here LF), from the VS Code tap. A teammate replaced ``<p14>`` on
    the last line by ``😀<p15>ß`` while the VS Code user cut the blank line above it. VS Code
    checked the edit's version before the cut reached its extension host, shrank the
    replacement on the text it had then (``😀`` before, ``4`` by ``5``, ``ß`` after) and
    applied the pieces to the text after the cut, where their line no longer was: all at the
    end of the text, ``<p14>😀5ß`` in its buffer, which no echo can be told from. The edit
    stayed in flight for good while the user typed on, and nothing more reached VS Code.
    Settled once the editor is quiet (huddle lsp's safety net): the editor's text goes to the
    room as it is, counted as a repair, and edits flow again."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "x\n\n<p14>")
    bridge = Bridge(text, origin="me", version=62, late_applies=True, normalizes_eol=True)
    _replace(doc, text, len("x\n\n"), len("x\n\n<p14>"), "😀<p15>ß")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(2, 0), P(2, 5)), "😀<p15>ß")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(63, [TextChange(R(P(1, 0), P(2, 0)), "")])  # the user's cut
    # VS Code's pieces, each clamped to the end of the text.
    end = R(P(1, 5), P(1, 5))
    garbled = [TextChange(end, "ß"), TextChange(end, "5"), TextChange(end, "😀")]
    bridge.local_change(64, garbled)
    bridge.local_change(65, [TextChange(R(P(0, 1), P(0, 1)), "<v7>")])  # typing on
    assert bridge.shadow == "x<v7>\n<p14>😀5ß"
    assert bridge.awaiting_echo, "the echo was recognised: this trace no longer reproduces"
    assert bridge.next_apply_edit() is None
    with doc.transaction(origin="teammate"):
        text.insert(0, "<n1>")
    assert bridge.next_apply_edit() is None, "an edit went out with another in flight"
    bridge.settle()
    assert not bridge.in_flight and bridge.repairs == 1
    assert str(text) == "<n1>x<v7>\n<p14>😀5ß", "the user's typing did not reach the room"
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 0), P(0, 0)), "<n1>")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(66, [TextChange(R(P(0, 0), P(0, 0)), "<n1>")])
    assert bridge.shadow == str(text)
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 1
