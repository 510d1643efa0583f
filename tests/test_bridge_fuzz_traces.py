"""Bridge bugs the real-editor fuzzer (tests/editor_fuzz.py) found, replayed from its traces.

Each case is a trace from the fuzzer's run (the LSP traffic between a real editor and huddle
lsp, and the bridge's state), cut down to the notifications that matter: the text the editor
had, the edit huddle lsp sent, the ``didChange`` notifications and the answer in the order they
came.

VS Code (code-server 4.100.3, VS Code 1.100.3) reports each keystroke as a notification of its
own and an edit it applies as one notification of its smallest changes, last first; its
``applied: true`` is true, and it applies a versioned edit over keystrokes it reported after
the version it was sent for (``late_applies``). It rewrites the line breaks of every edit it
applies to its document's (``normalizesLineEndings``). Neovim (plain LSP) reports a diff of
lines per change, an applied edit and the user's typing in one debounced notification.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from huddle.collab.bridge import Bridge, TextChange
from huddle.collab.positions import Position as P
from huddle.collab.positions import Range as R


def _change(line: int, char: int, end_line: int, end_char: int, text: str) -> TextChange:
    return TextChange(R(P(line, char), P(end_line, end_char)), text)


def test_typing_inside_a_range_a_teammate_replaced_is_kept() -> None:
    """Seed 3006: a teammate replaced the first three lines while the user typed ``中<v6>`` at
    the end of the first. VS Code applied the edit at its sent range, over the typing, so the
    buffer afterwards is exactly the plain echo's: the text alone cannot tell whether the
    keystrokes came before the edit. Their notifications can: VS Code reported them on their
    own, before the edit's. Taken for part of the echo, ``<v6>`` was lost from the room."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    before = " ßß<p5><y6>😀 <c3>中ß<e7><b6><a4>中<e8><p8>\n<a5>😀<b7>😀<a6>😀\n<v5><e9><p9>\n"
    text.insert(0, before)
    bridge = Bridge(text, origin="me", version=76, late_applies=True)
    replaced = len(before) - 1  # all but the final newline
    with doc.transaction(origin="teammate"):
        del text[0 : len(before[:replaced].encode())]
        text.insert(0, "<c6>é\n<y7>")
    edit = bridge.next_apply_edit()
    assert edit is not None and edit.version == 76
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 0), P(2, 12)), "<c6>é\n<y7>")]
    # The user's keystrokes at the end of the first line, each a notification.
    for k, key in enumerate(["中", "<", "v", "6", ">"]):
        bridge.local_change(77 + k, [_change(0, 41 + k, 0, 41 + k, key)])
    bridge.edit_result(edit.id, applied=True)
    # The edit, applied at its sent range over the typing, as VS Code reported it.
    bridge.local_change(
        82,
        [
            _change(1, 9, 2, 11, ""),
            _change(1, 7, 1, 8, "y"),
            _change(1, 0, 1, 6, ""),
            _change(0, 28, 0, 46, "é"),
            _change(0, 16, 0, 26, ""),
            _change(0, 4, 0, 15, ""),
            _change(0, 0, 0, 3, ""),
        ],
    )
    assert bridge.shadow == "<c6>é\n<y7>\n"
    # The typing is the user's: it reaches the room where the replaced text was, and the
    # editor gets it back there.
    assert str(text) == "<c6>é\n<y7>中<v6>\n", "the user's typing was taken for the echo"
    resend = bridge.next_apply_edit()
    assert resend is not None and resend.version == 82
    assert [(e.range, e.new_text) for e in resend.edits] == [(R(P(1, 4), P(1, 4)), "中<v6>")]
    bridge.edit_result(resend.id, applied=True)
    bridge.local_change(83, [_change(1, 4, 1, 4, "中<v6>")])
    assert bridge.shadow == str(text)
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_an_edit_that_its_line_breaks_make_no_change_is_not_sent() -> None:
    """Seed 3001 (CRLF): a teammate split a line with an LF and another deleted the final
    newline, so the edit for VS Code inserted ``\\n`` before a ``\\r\\n`` and deleted the next
    ``\\r\\n``. VS Code rewrites the line breaks it is sent to its document's (it says so:
    ``normalizesLineEndings``), so the edit changed nothing: it answered ``applied: true`` and
    reported nothing, the edit stayed in flight, and VS Code got no teammate's edit again (the
    fuzzer's 60 s without agreement). The edit is VS Code's rewrite of the room's line break:
    it goes into the room, and nothing is sent."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    before = "a\r\n<y16>\r\n\r\n"
    text.insert(0, before)
    bridge = Bridge(text, origin="me", version=219, late_applies=True, normalizes_eol=True)
    with doc.transaction(origin="teammate"):
        del text[len(before) - 2 :]  # the final newline
    with doc.transaction(origin="teammate"):
        text.insert(len("a\r\n<y16>"), "\n")  # a line split with an LF
    assert str(text) == "a\r\n<y16>\n\r\n"
    assert bridge.next_apply_edit() is None, "an edit VS Code applies as no change was sent"
    assert bridge.shadow == before
    assert str(text) == before, "VS Code's line break did not reach the room"
    assert not bridge.in_flight and not bridge.has_pending
    assert bridge.check() and bridge.repairs == 0
    # The buffer goes on taking the room's edits.
    with doc.transaction(origin="teammate"):
        text.insert(0, "<n1>")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 0), P(0, 0)), "<n1>")]


def test_a_line_break_deleted_and_typed_again_is_not_sent() -> None:
    """Seed 3009 (CRLF): the queue held a teammate's deletion of a line break and its
    re-insertion, composed into the replacement of ``\\r\\n`` by ``\\r\\n``, and it went out as
    such: an edit that changes nothing, which VS Code answered ``applied: true`` and never
    reported. The edit stayed in flight, and VS Code got nothing more for 60 s."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    before = " <e27><b26> \r\nß中<b24> \r\n"
    text.insert(0, before)
    bridge = Bridge(text, origin="me", version=207, late_applies=True, normalizes_eol=True)
    at = len(" <e27><b26> ")  # ASCII: code points are UTF-8 bytes
    with doc.transaction(origin="teammate"):
        del text[at : at + 2]
        text.insert(at, "\r\n")
    assert str(text) == before
    assert bridge.next_apply_edit() is None, "an edit that changes nothing was sent"
    assert not bridge.in_flight and not bridge.has_pending
    assert bridge.check() and bridge.repairs == 0


def test_a_change_after_an_echo_is_not_read_as_continuing_it() -> None:
    """Seed 2001 (Neovim 0.10, plain LSP): VS Code was typing ``<v5>`` on the last line and had
    typed ``<``; the bridge sent Neovim ``<c7>`` and that ``<`` before its kept final newline.
    Neovim reported the edit and, in the same notification, its user's line ``<b6>`` appended
    after the last line, as a line diff: the last line break replaced by one, ``<b6>`` and
    another. Reading rule 1 (the reading that starts where the previous change of the
    notification ended, the cursor) took the echo's end for the cursor and fed ``\n<b6>``
    right after VS Code's ``<``, so VS Code's ``v5>`` came after it: ``<\n<b6>v5>``. Read as
    ``<b6>`` and a line break after the line break only Neovim has, the new line was then
    joined to VS Code's (``<v5><b6>\n``); it follows VS Code's line, as the user made it."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "x\n")
    bridge = Bridge(text, origin="me", version=37, final_newline=True, line_diffs=True)
    with doc.transaction(origin="vscode"):
        text.insert(2, "<c7>\n<")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(0, 1), P(0, 1)), "\n<c7>\n<")]
    bridge.edit_result(edit.id, applied=True)
    with doc.transaction(origin="vscode"):
        text.insert(len("x\n<c7>\n<"), "v5>")
    bridge.local_change(39, [_change(0, 1, 0, 1, "\n<c7>\n<"), _change(2, 1, 3, 0, "\n<b6>\n")])
    assert bridge.shadow == "x\n<c7>\n<\n<b6>\n"
    assert "<v5>" in str(text), f"a teammate's token was split: {str(text)!r}"
    assert str(text) == "x\n<c7>\n<v5>\n<b6>"
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(2, 1), P(2, 1)), "v5>")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(40, [_change(2, 1, 2, 1, "v5>")])
    assert bridge.shadow == str(text) + "\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_an_append_past_a_final_newline_the_user_deleted_is_not_typed_again() -> None:
    """Seed 4005 (CRLF; the same in LF): the edit for VS Code appended a teammate's token after
    the final newline, at a line the shadow had; the user cut that final newline before VS Code
    applied the edit, so the line was gone, and VS Code put the token at the new end of the
    text (it clamps a position past the last line). The bridge did not look for the edit at
    a position on no line, took its echo for typing and the token reached the room twice."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, "a\nb\n")
    bridge = Bridge(text, origin="me", version=157, late_applies=True, normalizes_eol=True)
    with doc.transaction(origin="teammate"):
        text.insert(len("a\nb\n"), "é<p34>中")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(2, 0), P(2, 0)), "é<p34>中")]
    bridge.local_change(158, [_change(1, 1, 2, 0, "")])  # the user's cut of the final newline
    bridge.local_change(159, [_change(1, 1, 1, 1, "é<p34>中")])  # the edit, at the new end
    bridge.edit_result(edit.id, applied=True)
    assert bridge.shadow == "a\nbé<p34>中"
    assert str(text) == "a\nbé<p34>中", "the teammate's token was typed again"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0


def test_an_exact_replacement_keeps_no_edge_of_the_old_text() -> None:
    """Seed 3001 (CRLF; the same in LF): Huddle's Neovim plugin sent its exact change, the
    line break between ``<v4>`` and ``<y9>`` and both tokens replaced by ``<p13>ß``, while a
    teammate (plain Neovim) deleted the line of ``<v4>``, chosen on the text before. The bridge
    trimmed the replacement to what differs, as it does for Neovim's line diffs, so the room
    kept the ``<`` of ``<v4>`` as the one of ``<p13>``, and the teammate's deletion took it:
    ``p13>ß``."""
    mine: Doc[Any] = Doc()
    text = mine.get("t", type=Text)
    text.insert(0, "<c13><v4>\n<y9>\nz\n")
    theirs: Doc[Any] = Doc()
    their_text = theirs.get("t", type=Text)
    theirs.apply_update(mine.get_update())
    plugin = Bridge(text, origin="me", version=1, final_newline=True, line_diffs=True)
    plugin.local_change(2, [_change(0, 5, 1, 4, "<p13>ß")], exact=True)
    with theirs.transaction(origin="teammate"):
        del their_text[0 : len("<c13><v4>\n")]
    mine_state, their_state = mine.get_state(), theirs.get_state()
    to_them, to_me = mine.get_update(their_state), theirs.get_update(mine_state)
    mine.apply_update(to_me)
    theirs.apply_update(to_them)
    assert str(text) == str(their_text) == "<p13>ß\nz\n"


def test_a_line_appended_after_a_kept_final_newline_follows_the_last_line() -> None:
    """Seed 1988323280 (LF, Neovim 0.7 on plain LSP), cut down from the hub's journal. The
    room's text ended without a line break (``<e17>``), which Neovim still shows (``eol``), and
    VS Code was typing ``<v9>é`` at its end (``<v`` had reached the room, not Neovim). The user
    appended a line. Read as ``<a14>ß\\n`` after the line break only Neovim has, it reached the
    room joined to the last line, after VS Code's ``<v``, and VS Code's next keys went after
    it: ``<e17><v<a14>ß\\n9>é``. It is a new line after the room's whole last line."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    room = "😀<b21>\n<e17>"
    text.insert(0, room)
    bridge = Bridge(
        text, origin="me", version=40, editor_text=room + "\n", final_newline=True, line_diffs=True
    )
    assert bridge.next_apply_edit() is None
    with doc.transaction(origin="vscode"):
        text.insert(len(room.encode()), "<v")
    # Neovim reports the appended line as a diff of lines, from the end of the last one.
    bridge.local_change(41, [_change(1, 5, 2, 0, "\n<a14>ß\n")])
    assert bridge.shadow == "😀<b21>\n<e17>\n<a14>ß\n"
    assert str(text) == "😀<b21>\n<e17><v\n<a14>ß", "the new line was joined to the last"
    with doc.transaction(origin="vscode"):  # VS Code's next keys, at its cursor
        text.insert(len("😀<b21>\n<e17><v".encode()), "9>é")
    edit = bridge.next_apply_edit()
    assert edit is not None
    assert [(e.range, e.new_text) for e in edit.edits] == [(R(P(1, 5), P(1, 5)), "<v9>é")]
    bridge.edit_result(edit.id, applied=True)
    bridge.local_change(42, [_change(1, 5, 1, 5, "<v9>é")])
    assert bridge.shadow == str(text) + "\n" == "😀<b21>\n<e17><v9>é\n<a14>ß\n"
    assert not bridge.in_flight and bridge.next_apply_edit() is None
    assert bridge.check() and bridge.repairs == 0
