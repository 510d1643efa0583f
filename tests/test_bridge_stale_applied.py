"""VS Code applies a versioned edit over a keystroke it made meanwhile, and says so.

Captured from the real workbench (code-server 4.100.3, VS Code 1.100.3): vscode-languageclient
checks an applyEdit's version against the extension host's copy of the document, then the
workbench applies the edit to the buffer as it is by then. A keystroke typed in between is
reported first (``didChange`` V+1), then the answer ``applied: true``, then the edit, at the
positions it was sent with, as its own ``didChange`` (V+2; several TextEdits reported last
first). Taken for "not applied, then typing", the edit's text was fed back to the room as the
user's: every teammate line in it ended up twice (and more, as the loop went on)."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from huddle.collab.bridge import LATE_ECHO_WAIT, Bridge, TextChange
from huddle.collab.positions import Position as P
from huddle.collab.positions import Range as R


def _remote(doc: Doc[Any], text: Text, edits: list[tuple[int, str]]) -> None:
    """A teammate's transaction (another origin): inserts at code-point offsets (ASCII)."""
    with doc.transaction(origin="teammate"):
        for offset, inserted in edits:
            text.insert(offset, inserted)


def test_stale_edit_applied_over_a_keystroke_is_not_typed_again() -> None:
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\nb\nv2")
    bridge = Bridge(text, origin="me", version=14, late_applies=True)
    # The teammate appends lines, and one before "b" (the trace's earlier, re-sent line).
    _remote(doc, text, [(len("a\nb\nv2"), "n5y\nn6y\n"), (2, "n4y\n")])
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 14
    assert [(e.range.start, e.new_text) for e in edit.edits] == [
        (P(1, 0), "n4y\n"),
        (P(2, 2), "n5y\nn6y\n"),
    ]
    # The user types "x" at the end before the workbench applies the edit.
    bridge.local_change(15, [TextChange(R(P(2, 2), P(2, 2)), "x")])
    bridge.edit_result(edit.id, applied=True)
    # The edit, applied at its sent positions on version 15, reported last first.
    bridge.local_change(
        16,
        [
            TextChange(R(P(2, 2), P(2, 2)), "n5y\nn6y\n"),
            TextChange(R(P(1, 0), P(1, 0)), "n4y\n"),
        ],
    )
    editor = "a\nn4y\nb\nv2n5y\nn6y\nx"
    assert bridge.shadow == editor
    assert str(text) == editor, "the edit's text was fed back as typing"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_stale_edit_answered_applied_that_was_not_still_feeds_the_typing() -> None:
    # The same answer from an editor that skipped the edit after all (Neovim says "applied"
    # for a stale edit it skipped): the next change is the user's, and everything reaches the
    # room once; the edit is sent again.
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\nb\nv2")
    bridge = Bridge(text, origin="me", version=14, late_applies=True)
    _remote(doc, text, [(len("a\nb\nv2"), "n5y\n")])
    edit = bridge.next_apply_edit()
    assert edit is not None
    bridge.local_change(15, [TextChange(R(P(2, 2), P(2, 2)), "x")])
    bridge.edit_result(edit.id, applied=True)
    # VS Code may report keystrokes after its answer and before the edit (see below): a few
    # notifications wait for the echo on top of them, then the typing goes to the room.
    typed = "z" * (LATE_ECHO_WAIT + 1)
    for k in range(len(typed)):
        assert str(text) == "a\nb\nv2n5y\n", "typing reached the room while the echo may come"
        bridge.local_change(16 + k, [TextChange(R(P(2, 3 + k), P(2, 3 + k)), "z")])
    assert str(text) == "a\nb\nv2x" + typed + "n5y\n"
    resend = bridge.next_apply_edit()
    assert resend is not None and resend.version == 16 + LATE_ECHO_WAIT
    assert [(e.range.start, e.new_text) for e in resend.edits] == [(P(2, 3 + len(typed)), "n5y\n")]
    assert bridge.check() and bridge.repairs == 0


def test_stale_edit_applied_over_a_keystroke_reported_before_the_answer() -> None:
    # The same, with the edit's didChange arriving before the answer (the server reads both
    # at once; the answer's future resumes after the notification was handled).
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\nb\nv0x\n")
    bridge = Bridge(text, origin="me", version=5, late_applies=True)
    _remote(doc, text, [(len("a\nb\nv0x\n"), "n0y\nn1y\n")])
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range.start, e.new_text) for e in edit.edits] == [(P(2, 3), "\nn0y\nn1y")]
    bridge.local_change(6, [TextChange(R(P(3, 0), P(3, 0)), "v")])
    bridge.local_change(7, [TextChange(R(P(2, 3), P(2, 3)), "\nn0y\nn1y")])
    bridge.edit_result(edit.id, applied=True)
    assert bridge.shadow == str(text) == "a\nb\nv0x\nn0y\nn1y\nv"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_stale_edit_applied_over_keystrokes_reported_around_the_answer() -> None:
    # Shape C, from the real workbench: applyEdit v5; "v" typed (v6); "applied: true"; "1"
    # typed (v7); then the edit at its sent positions (v8). The keystroke after the answer is
    # not the echo, but the echo is still to come on top of it.
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\nb\nv0x\n")
    bridge = Bridge(text, origin="me", version=5, late_applies=True)
    _remote(doc, text, [(len("a\nb\nv0x\n"), "n0y\nn1y\nn2y\nn3y\n")])
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 5
    assert [(e.range.start, e.new_text) for e in edit.edits] == [(P(2, 3), "\nn0y\nn1y\nn2y\nn3y")]
    bridge.local_change(6, [TextChange(R(P(3, 0), P(3, 0)), "v")])
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(7, [TextChange(R(P(3, 1), P(3, 1)), "1")])
    bridge.local_change(8, [TextChange(R(P(2, 3), P(2, 3)), "\nn0y\nn1y\nn2y\nn3y")])
    editor = "a\nb\nv0x\nn0y\nn1y\nn2y\nn3y\nv1"
    assert bridge.shadow == editor
    assert str(text) == editor, "the edit's text was fed back as typing"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0
