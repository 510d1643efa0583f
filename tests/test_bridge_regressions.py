"""Regressions found by the real-Neovim tests, pinned at the bridge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pycrdt import Doc, Text

from huddle.collab.bridge import ApplyEdit, Bridge, TextChange
from huddle.collab.positions import LineIndex, PositionEncoding
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


# --- Neovim applies an edit for version 0 without checking it --------------------------------


class _Neovim:
    """A Neovim buffer opened at version 0 with debounced ``didChange``: it applies an edit for
    version 0 at the positions sent, whatever it typed since, and reports each TextEdit it
    applied (the last first) and each keystroke as a change of its own."""

    def __init__(self, text: str) -> None:
        self.buffer = text
        self.version = 0
        self.unsent: list[TextChange] = []

    def _position(self, offset: int) -> P:
        return LineIndex(self.buffer).position_at(offset)

    def type(self, offset: int, text: str) -> None:
        where = self._position(offset)
        self.unsent.append(TextChange(R(where, where), text))
        self.buffer = self.buffer[:offset] + text + self.buffer[offset:]
        self.version += 2

    def receive(self, edit: ApplyEdit) -> None:
        assert edit.version in (0, self.version), "a stale edit for a checked version"
        for sent in reversed(edit.edits):
            index = LineIndex(self.buffer)
            start = index.offset_at(sent.range.start)
            end = index.offset_at(sent.range.end)
            self.unsent.append(TextChange(R(sent.range.start, sent.range.end), sent.new_text))
            self.buffer = self.buffer[:start] + sent.new_text + self.buffer[end:]
            self.version += 2

    def flush(self, bridge: Bridge) -> None:
        changes, self.unsent = self.unsent, []
        bridge.local_change(self.version, changes)


def _opened_at_version_0(initial: str) -> tuple[Doc[Any], Text, Bridge, _Neovim]:
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, initial)
    return doc, text, Bridge(text, origin="me", version=0), _Neovim(initial)


def _remote_edit(doc: Doc[Any], start: int, end: int, inserted: str) -> None:
    """A teammate replaces code points [start, end) of the room's text; the update arrives."""
    remote: Doc[Any] = Doc()
    theirs = remote.get("t", type=Text)
    remote.apply_update(doc.get_update())
    current = str(theirs)
    first, last = len(current[:start].encode()), len(current[:end].encode())
    state = doc.get_state()
    with remote.transaction():
        if last > first:
            del theirs[first:last]
        if inserted:
            theirs.insert(first, inserted)
    doc.apply_update(remote.get_update(state))


def _settle(text: Text, bridge: Bridge, editor: _Neovim) -> None:
    """Send, apply and echo edits until nothing is pending."""
    for _ in range(10):
        edit = bridge.next_apply_edit()
        if edit is None:
            break
        editor.receive(edit)
        bridge.edit_result(edit.id, applied=True)
        editor.flush(bridge)
    assert not bridge.has_pending
    assert str(text) == bridge.shadow == editor.buffer
    assert bridge.check() and bridge.repairs == 0


def test_neovim_applies_a_version_0_edit_on_top_of_unreported_typing() -> None:
    # Neovim has typed "B" (debounced, not reported) when our edit for version 0 arrives: it
    # applies "A" at 0:3 of "Bone", right after "Bon", and reports both changes at once.
    doc, text, bridge, nvim = _opened_at_version_0("one\ntwo\n")
    nvim.type(0, "B")
    _remote_edit(doc, 3, 3, "A")  # "oneA"
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 0
    nvim.receive(edit)
    assert nvim.buffer == "BonAe\ntwo\n"
    bridge.edit_result(edit.id, applied=True)
    nvim.flush(bridge)
    assert str(text) == "BoneA\ntwo\n"  # the typing once, the misplaced "A" not fed
    fix = bridge.next_apply_edit()  # the "A" moved: from after "Bon" to after "Bone"
    assert fix is not None and fix.version == nvim.version
    assert [(e.range, e.new_text) for e in fix.edits] == [
        (R(P(0, 3), P(0, 4)), ""),
        (R(P(0, 5), P(0, 5)), "A"),
    ]
    nvim.receive(fix)
    bridge.edit_result(fix.id, applied=True)
    nvim.flush(bridge)
    _settle(text, bridge, nvim)
    assert nvim.buffer == "BoneA\ntwo\n"


def test_version_0_edit_misplaced_by_a_new_line_then_more_typing() -> None:
    # The typing adds a line above the edit, so Neovim puts the remote "X" (sent for 1:3, the
    # end of "two") on the wrong line; the user goes on typing before the debounce fires.
    doc, text, bridge, nvim = _opened_at_version_0("one\ntwo\nsix\n")
    nvim.type(0, "zero\n")
    _remote_edit(doc, 7, 7, "X")
    edit = bridge.next_apply_edit()
    assert edit is not None
    nvim.receive(edit)
    assert nvim.buffer == "zero\noneX\ntwo\nsix\n"
    bridge.edit_result(edit.id, applied=True)
    nvim.type(len("zero\noneX\ntwo\nsix"), "!")
    nvim.flush(bridge)
    assert str(text) == "zero\none\ntwoX\nsix!\n"
    _settle(text, bridge, nvim)


def test_misplaced_edit_that_lands_in_place_is_not_sent_again() -> None:
    # Typing after the edit's position does not move it: nothing to correct.
    doc, text, bridge, nvim = _opened_at_version_0("one\ntwo\n")
    nvim.type(len("one\ntwo"), "s")
    _remote_edit(doc, 0, 0, "A")
    edit = bridge.next_apply_edit()
    assert edit is not None
    nvim.receive(edit)
    bridge.edit_result(edit.id, applied=True)
    nvim.flush(bridge)
    assert str(text) == bridge.shadow == "Aone\ntwos\n"
    assert not bridge.has_pending


def test_checked_versions_are_not_taken_for_misplaced_edits() -> None:
    # Past version 0 Neovim skips a stale edit: a change that looks like it applied at the
    # sent positions is the user's own and must reach the CRDT.
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "one\ntwo\n")
    bridge = Bridge(text, origin="me", version=2)
    _remote_edit(doc, 3, 3, "A")
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 2
    bridge.edit_result(edit.id, applied=True)  # skipped as stale
    bridge.local_change(4, [TextChange(R(P(0, 0), P(0, 0)), "B")])
    bridge.local_change(6, [TextChange(R(P(0, 3), P(0, 3)), "A")])
    assert str(text) == "BonAeA\ntwo\n"


def test_version_0_echo_split_around_its_answer_is_not_typing() -> None:
    # No typing: Neovim applies the last TextEdit (which rewrites the rest of the line), reports
    # it before its answer, and the first one after. Applied at its positions on the text
    # after that first report, the edit would give the same text: it is still the echo.
    doc, text, bridge, _ = _opened_at_version_0("!\r\n")
    _remote_edit(doc, 0, 0, '"')
    _remote_edit(doc, 2, 4, "#\n")
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 0 and len(edit.edits) == 2
    last = edit.edits[1]
    bridge.local_change(2, [TextChange(last.range, last.new_text)])
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(4, [TextChange(R(P(0, 0), P(0, 0)), '"')])
    assert str(text) == bridge.shadow == '"!#\n'
    assert not bridge.has_pending


def test_version_0_edit_placed_before_typing_at_the_same_place_stays_there() -> None:
    # Neovim puts the remote text before the line break the user typed at the same place, a
    # merge as good as the other order: it is kept, so that the user's deletion of what they
    # saw deletes the remote text too.
    doc, text, bridge, nvim = _opened_at_version_0("")
    nvim.type(0, "\n")
    _remote_edit(doc, 0, 0, "hi")
    edit = bridge.next_apply_edit()
    assert edit is not None
    nvim.receive(edit)
    assert nvim.buffer == "hi\n"
    bridge.edit_result(edit.id, applied=True)
    nvim.unsent.append(TextChange(R(P(0, 0), P(1, 0)), ""))
    nvim.buffer = ""
    nvim.flush(bridge)
    assert str(text) == bridge.shadow == ""
    assert not bridge.has_pending


def test_version_0_edit_reported_shifted_needs_no_correction() -> None:
    # Neovim puts "\n!" before the user's "\nA" and reports it as "!\n" after the first line
    # break: the same text. Moving it where it belongs changes nothing, so nothing is sent.
    doc, text, bridge, _ = _opened_at_version_0("")
    _remote_edit(doc, 0, 0, "\n!")
    edit = bridge.next_apply_edit()
    assert edit is not None
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(
        4, [TextChange(R(P(0, 0), P(0, 0)), "\nA"), TextChange(R(P(1, 0), P(1, 0)), "!\n")]
    )
    assert str(text) == bridge.shadow == "\n!\nA"
    assert not bridge.has_pending


@dataclass(frozen=True)
class Version0:
    """Neovim types (``typed``: offset, text), a teammate replaces ``remote`` (start, end,
    text) of the room's text, and Neovim applies the edit for version 0 at the positions sent.
    ``reported``: its typing was reported before the edit arrived (the notifications crossed);
    else it was still unreported (debounced). ``buffer``: Neovim's text once it applied the
    edit; ``text``: the room's once Neovim reported it; ``waits``: whether the answer waits
    for the echo in Neovim's next report."""

    why: str
    initial: str
    typed: tuple[tuple[int, str], ...]
    remote: tuple[int, int, str]
    reported: bool
    buffer: str
    text: str
    waits: bool = True


VERSION_0 = [
    Version0(
        "typing already reported: the answer meets a change that is not the echo, and the "
        "echo comes in the next one",
        "one\ntwo\n",
        ((0, "zero\n"),),
        (8, 8, "three\n"),
        reported=True,
        buffer="zero\none\nthree\ntwo\n",
        text="zero\none\ntwo\nthree\n",
    ),
    Version0(
        "applied after the line break, the deletion of (0,0)-(0,2) changes nothing (the line "
        "is empty); Neovim applied it after the X, which it deleted: the X is the user's",
        "ab",
        ((0, "\n"), (0, "X")),
        (0, 2, ""),
        reported=False,
        buffer="\nab",
        text="X\n",
    ),
    Version0(
        "applied after the - alone, the deletion would also give the final text, with the . "
        "and the deletion as its echo: two changes for one TextEdit, which Neovim reports as one",
        "ab",
        ((0, "-\n"), (0, ".")),
        (0, 2, ""),
        reported=False,
        buffer="\nab",
        text=".-\n",
    ),
    Version0(
        "the reported $ is swallowed by the replacement of lines 0-1, which gives exactly the "
        "text the edit gives on the opened buffer, as an echo would in two changes for one "
        "TextEdit: the $ is the user's",
        "ab\n",
        ((1, "$"),),
        (0, 3, "X"),
        reported=True,
        buffer="X",
        text="X$",
    ),
    Version0(
        "after the reported line break line 0 is empty: the deletion lands on nothing, so the "
        "answer cannot wait for an echo (there may be none): not applied, sent again",
        "!",
        ((0, "\n"),),
        (0, 1, ""),
        reported=True,
        buffer="\n!",
        text="\n",
        waits=False,
    ),
]


@pytest.mark.parametrize("case", VERSION_0, ids=[f"v0-{i}" for i in range(len(VERSION_0))])
def test_neovim_applies_an_edit_for_version_0_over_typing(case: Version0) -> None:
    doc, text, bridge, nvim = _opened_at_version_0(case.initial)

    def type_all() -> None:
        for offset, typed in case.typed:
            nvim.type(offset, typed)

    if not case.reported:
        type_all()
    _remote_edit(doc, *case.remote)
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 0
    if case.reported:
        type_all()
        nvim.flush(bridge)
    nvim.receive(edit)
    assert nvim.buffer == case.buffer, case.why
    bridge.edit_result(edit.id, applied=True)
    if case.reported:
        assert bridge.in_flight == case.waits, case.why
    if not case.waits:
        assert str(text) == case.text, case.why
    nvim.flush(bridge)
    assert str(text) == case.text, case.why
    _settle(text, bridge, nvim)


# --- Neovim's ambiguous line diffs (issue 13, item 2) ------------------------------------------


def _concurrent(initial: str, theirs_edit: Any, change: TextChange) -> tuple[str, str]:
    """The editor reports ``change`` while a teammate's edit (not yet seen by the editor)
    reaches the CRDT first; returns the shared text and the editor's once the edit is sent."""
    local, remote = Doc(), Doc()
    text = local.get("t", type=Text)
    text.insert(0, initial)
    remote.apply_update(local.get_update())
    theirs = remote.get("t", type=Text)
    bridge = Bridge(text, origin="me", version=1, line_diffs=True)
    before = remote.get_state()
    theirs_edit(theirs)
    local.apply_update(remote.get_update(before))
    bridge.local_change(2, [change])
    edit = bridge.next_apply_edit()
    editor = LineIndex(bridge.shadow)
    if edit is not None:
        for sent in sorted(edit.edits, key=lambda e: editor.offset_at(e.range.start), reverse=True):
            editor.replace(
                editor.offset_at(sent.range.start), editor.offset_at(sent.range.end), sent.new_text
            )
    return str(text), editor.text


def test_insert_read_as_typed_before_equal_characters() -> None:
    # "x1" typed at (0,0) of "xyz" is reported as "1x" at (0,1); a teammate deleted "xyz".
    def delete_xyz(theirs: Text) -> None:
        del theirs[0:3]

    change = TextChange(R(P(0, 1), P(0, 1)), "1x")
    assert _concurrent("xyz\n", delete_xyz, change) == ("x1\n", "x1\n")


def test_line_deletion_read_as_whole_lines() -> None:
    # Deleting "foo\n" (line 1) of "foo\nfoo bar" is reported as deleting "\nfoo" at (0,3);
    # a teammate inserted "X" at the start of line 2 meanwhile.
    def insert_x(theirs: Text) -> None:
        theirs.insert(4, "X")

    change = TextChange(R(P(0, 3), P(1, 3)), "")
    assert _concurrent("foo\nfoo bar", insert_x, change) == ("Xfoo bar", "Xfoo bar")


def test_typing_after_equal_characters_keeps_the_reported_reading() -> None:
    # "o" appended to "foo " is reported at (0,3): the end of the word, as typed. A teammate's
    # "Z" between "f" and "oo" stays there.
    def insert_z(theirs: Text) -> None:
        theirs.insert(1, "Z")

    change = TextChange(R(P(0, 3), P(0, 3)), "o")
    assert _concurrent("foo bar", insert_z, change) == ("fZooo bar", "fZooo bar")


def test_keystrokes_of_one_notification_continue_where_the_last_ended() -> None:
    # "x" then "1" typed at (0,0) of "xyz", one change each in one notification: "x" at (0,1)
    # (rightmost reading), then "1" at (0,1). Read together: "x1" before "xyz".
    local = Doc()
    text = local.get("t", type=Text)
    text.insert(0, "xyz\n")
    remote = Doc()
    remote.apply_update(local.get_update())
    theirs = remote.get("t", type=Text)
    bridge = Bridge(text, origin="me", version=1, line_diffs=True)
    before = remote.get_state()
    del theirs[0:3]
    local.apply_update(remote.get_update(before))
    bridge.local_change(
        2, [TextChange(R(P(0, 1), P(0, 1)), "x"), TextChange(R(P(0, 1), P(0, 1)), "1")]
    )
    assert str(text) == "x1\n"


def test_lf_lines_appended_to_a_crlf_file_go_before_its_final_line_break() -> None:
    # Neovim (fileformat=dos, 'eol') has "a\r\nb\r\n" as two lines; a teammate appends "c\nd\n"
    # (a bare "\n": a stock Yjs client). The edit used to end with "\n", not the kept "\r\n",
    # so it went out at (2,0), past Neovim's lines, where 0.10 appends a line of its own and
    # reports the diff "\r\nc\r\n\r\n": taken for typing, re-sent, forever (seed 355954515 of
    # tests/editor_fuzz.py; real Neovim: tests/test_bridge_fuzz_found.py). It goes out before
    # the final line break, that line break in the file's style; the echo is Neovim's report.
    local = Doc()
    text = local.get("t", type=Text)
    text.insert(0, "a\r\nb\r\n")
    bridge = Bridge(text, origin="me", version=0, final_newline=True, line_diffs=True)
    with local.transaction(origin="teammate"):
        text.insert(len("a\r\nb\r\n"), "c\nd\n")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(1, 1), P(1, 1)), "\r\nc\nd")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(5, [TextChange(R(P(1, 1), P(1, 1)), "\r\nc\r\nd")])
    # The room takes Neovim's line breaks, as for any edit it rewrites.
    assert str(text) == bridge.shadow == "a\r\nb\r\nc\r\nd\r\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_an_unknown_echo_that_rewrites_line_breaks_is_stopped() -> None:
    # The runaway guard looks for the edit's text among the editor's "typing". An editor that
    # rewrites "\n" to "\r\n" as it applies the edit, and echoes it in a shape the bridge does
    # not know (here with an extra line break at the end), re-inserted "c\r\n" where the edit
    # inserted "c\n": not found, so the loop ran on without bound (the CRLF form of issue 13's
    # runaway, in tests/test_bridge_fuzz_found.py's scene before the fix of the final line
    # break). Line breaks are compared whatever their style.
    local = Doc()
    text = local.get("t", type=Text)
    text.insert(0, "a\r\n")
    bridge = Bridge(text, origin="me", version=1)
    with local.transaction(origin="teammate"):
        text.insert(0, "c\n")
    editor, version, sent = "a\r\n", 1, 0
    while (edit := bridge.next_apply_edit()) is not None:
        sent += 1
        assert sent <= 10, f"still sending: {str(text)!r}"
        (change,) = edit.edits
        assert change.new_text == "c\n"
        bridge.edit_result(edit.id, applied=True)
        version += 1
        index = LineIndex(editor)
        start = index.offset_at(change.range.start, PositionEncoding.UTF16)
        end = index.offset_at(change.range.end, PositionEncoding.UTF16)
        editor = editor[:start] + "c\r\n" + editor[end:] + "\r\n"
        bridge.local_change(version, [TextChange(None, editor)])
    assert sent == bridge.runaway_limit
    assert bridge.runaways == 1 and bridge.repairs == 1


def test_vs_code_echo_after_a_whole_token_typed_key_by_key() -> None:
    # VS Code answers "applied: true", then reports the keystrokes it had queued, one
    # notification each, then the edit at its sent positions. The fuzzer's VS Code typed
    # "é<v20>ß" (7 keys) between the answer and the echo of "é<a29>\r\n" (seed 2011 of
    # tests/editor_fuzz.py): waiting for only 3 notifications, the bridge took the echo for
    # typing and the line was in the room twice.
    local = Doc()
    text = local.get("t", type=Text)
    text.insert(0, "one\ntwo\n")
    bridge = Bridge(text, origin="me", version=1, late_applies=True)
    with local.transaction(origin="teammate"):
        text.insert(len("one\ntwo"), "<a29>")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(1, 3), P(1, 3)), "<a29>")]
    bridge.edit_result(edit.id, applied=True)
    typed = "é<v20>ß"
    for k, key in enumerate(typed):
        bridge.local_change(2 + k, [TextChange(R(P(0, k), P(0, k)), key)])
    bridge.local_change(2 + len(typed), [TextChange(R(P(1, 3), P(1, 3)), "<a29>")])
    assert str(text) == bridge.shadow == typed + "one\ntwo<a29>\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0
