"""Regressions found by the real-Neovim tests, pinned at the bridge."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from huddle.collab.bridge import ApplyEdit, Bridge, TextChange
from huddle.collab.positions import Position as P
from huddle.collab.positions import Range as R


def _remote_two_places() -> tuple[Doc[Any], Text, Bridge, ApplyEdit]:
    """A remote transaction inserts "1" and "3" in two places of an idle buffer."""
    local, remote = Doc(), Doc()
    text = local.get("t", type=Text)
    text.insert(0, "one\ntwo\nthree\n")
    theirs = remote.get("t", type=Text)
    remote.apply_update(local.get_update())
    bridge = Bridge(text, origin="me", version=5)
    before = remote.get_state()
    with remote.transaction():
        theirs.insert(len(b"one\ntwo\nthree"), "3")
        theirs.insert(3, "1")
    local.apply_update(remote.get_update(before))
    edit = bridge.next_apply_edit()
    assert edit is not None and len(edit.edits) == 2
    return local, text, bridge, edit


def test_neovim_applies_a_multi_edit_piecewise() -> None:
    # Neovim applies the last TextEdit first and reports it before its answer; the rest of
    # the echo follows in the next notification. Nothing may be fed back as typing.
    _, text, bridge, edit = _remote_two_places()
    bridge.local_change(6, [TextChange(R(P(2, 5), P(2, 5)), "3")])
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(7, [TextChange(R(P(0, 3), P(0, 3)), "1")])
    assert str(text) == bridge.shadow == "one1\ntwo\nthree3\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None


def test_answer_after_the_user_deleted_under_the_edit() -> None:
    # The edit was skipped as stale (applied: true all the same) while the user deleted most
    # of the text: its offsets no longer fit the buffer. The answer must not raise, the
    # deletion and both remote inserts survive, and the editor is sent the remote text again.
    _, text, bridge, edit = _remote_two_places()
    bridge.local_change(6, [TextChange(R(P(0, 2), P(2, 5)), "")])
    bridge.edit_result(edit.id, applied=True)
    assert str(text) == "on13\n"
    resend = bridge.next_apply_edit()
    assert resend is not None and resend.version == 6


def test_line_break_reported_as_rewriting_the_rest_of_the_line() -> None:
    # Neovim reports "beta gamma" -> "beta \ngamma" as replacing "gamma" with "\ngamma"; only
    # the line break may reach the CRDT, so a concurrent edit of "gamma" is not undone.
    local, remote = Doc(), Doc()
    text = local.get("t", type=Text)
    text.insert(0, "beta gamma\n")
    bridge = Bridge(text, origin="me", version=1)
    remote.apply_update(local.get_update())
    theirs = remote.get("t", type=Text)
    before = remote.get_state()
    mine = local.get_state()
    bridge.local_change(2, [TextChange(R(P(0, 5), P(0, 10)), "\ngamma")])
    del theirs[len(b"beta ") : len(b"beta gamma")]  # a teammate deletes "gamma" meanwhile
    local.apply_update(remote.get_update(before))
    remote.apply_update(local.get_update(mine))
    assert str(text) == str(theirs) == "beta \n\n"
