"""The edges of a file, with real Neovim (0.10 and 0.12, plain LSP) and a stock Yjs teammate.

Neovim keeps a file's final newline outside its lines (``eol``): ``a\\nb\\n`` is two lines,
an edit at (2,0) is past them. The cases (issue 13, item 1): a teammate appends after the
final newline (``c``, ``c\\n``), deletes the final newline, replaces the whole text; Neovim
replaces its whole buffer. Before the fix the first grew the text without bound (an echo taken
for typing, re-sent forever).

What "equal" means here: the hub holds exactly what the teammates typed. Neovim's buffer holds
the same lines; where the shared text has no final newline, Neovim's ``eol`` still reports one
after them (plain LSP cannot clear ``eol``; the bridge keeps that newline out of the room and
never fights it). So Neovim's text is the hub's, plus ``"\\n"`` where the hub's lacks one.

No sleeps for a guess: after each case the teammate inserts a marker at the start, and the test
waits for the marker to reach Neovim with everything else exactly as expected; a loop still
running would have changed the text. The applyEdit requests Neovim received are counted from
the recorded LSP traffic (tests/nvim/lsp_tap.py) and must be few.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from huddle.collab.bridge import Bridge, TextChange
from huddle.collab.positions import LineIndex, PositionEncoding, Range
from huddle.server.hub import Hub
from tests.support.peers import NodeClient, token
from tests.test_neovim_ambiguity import answered_edits
from tests.test_neovim_e2e import FILE, ROOM, START_TIMEOUT, Nvim, Scene, neovim_installed

__all__ = ["neovim_installed"]  # the fixture, shared

VERSIONS = ["0.10", "0.12"]
INITIAL = "a\nb\n"
WAIT = 15.0
# Teammate edits per case are 1-2, plus the marker; Neovim may need one extra edit per
# teammate edit (none today). A loop sends hundreds.
MAX_APPLY_EDITS = 6


def neovim_text(shared: str) -> str:
    """What Neovim reports (lines + the ``eol`` newline) for the shared text."""
    return shared if shared.endswith("\n") else shared + "\n"


def apply_edits(nvim: Nvim) -> int:
    tap = nvim.home / "lsp.jsonl"
    if not tap.exists():
        return 0
    count = 0
    for line in tap.read_text(encoding="utf-8").splitlines():
        msg = json.loads(line).get("msg")
        if isinstance(msg, dict) and msg.get("method") == "workspace/applyEdit":
            count += 1
    return count


# case -> (teammate ops on the Y.Text: (op, args), Neovim's scripted edits, shared result)
CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[list[Any]], str]] = {
    "append-after-final-newline": ([("insert", {"index": 4, "text": "c"})], [], "a\nb\nc"),
    "append-line-after-final-newline": (
        [("insert", {"index": 4, "text": "c\n"})],
        [],
        "a\nb\nc\n",
    ),
    "delete-final-newline": ([("delete", {"index": 3, "length": 1})], [], "a\nb"),
    "teammate-replaces-all": (
        [("delete", {"index": 0, "length": 4}), ("insert", {"index": 0, "text": "x\ny"})],
        [],
        "x\ny",
    ),
    "teammate-replaces-all-with-final-newline": (
        [("delete", {"index": 0, "length": 4}), ("insert", {"index": 0, "text": "x\ny\n"})],
        [],
        "x\ny\n",
    ),
    "neovim-replaces-all": ([], [[0, 0, 1, 1, "new\ntext"]], "new\ntext\n"),
    # Neovim's user appends a line to a file whose final newline a teammate deleted: Neovim
    # still shows one ('eol'), and the line was read as appended after it, which the room
    # lacks: the room got "Za\nbc\n", the new line joined to the last (the fuzzer, seed
    # 1988323280). The teammate's "Z" tells when the deletion has reached Neovim's server.
    "neovim-appends-a-line-after-a-deleted-final-newline": (
        [("delete", {"index": 3, "length": 1}), ("insert", {"index": 0, "text": "Z"})],
        [["append", "c"]],
        "Za\nb\nc",
    ),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_neovim_at_the_edges_of_a_file(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str, case: str
) -> None:
    ops, scripted, expected = CASES[case]
    scene = Scene(hub, data_dir, tmp_path, INITIAL)
    nvim = scene.nvim(
        "b",
        version,
        "bob",
        disk_text=INITIAL,  # Neovim seeds the room with its buffer
        edits=len(scripted),
        extra_env={
            "HUDDLE_E2E_TAP": str(tmp_path / "nvim-b" / "lsp.jsonl"),
            "HUDDLE_E2E_SCRIPTED": json.dumps(scripted or None),
        },
    )
    try:
        await nvim.start()
        await scene.wait(
            "Neovim to seed the room",
            START_TIMEOUT,
            lambda: nvim.has_ready() and scene.hub_text() == INITIAL,
        )
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
            await ann.wait_event("synced")
            for op, args in ops:
                await ann.request(op, file=FILE, **args)
            if ops and scripted:  # Neovim edits on top of the teammate's edits: the last one
                # is an insert, which Neovim is sent, after the others (one client, in order)
                await scene.wait("the teammate's edits", WAIT, lambda: answered_edits(nvim) > 0)
            scene.signal("go")  # Neovim's own edits, if any
            await scene.wait("Neovim's edits", WAIT, lambda: nvim.has("done.json"))

            def settled(shared: str) -> bool:
                return scene.hub_text() == shared and nvim.snapshot() == (
                    neovim_text(shared).encode()
                )

            await scene.wait(f"{expected!r} everywhere", WAIT, lambda: settled(expected))
            # The positive event: a later edit arrives, and nothing else changed meanwhile.
            await ann.request("insert", file=FILE, index=0, text="M")
            await scene.wait("the marker", WAIT, lambda: settled("M" + expected))
            files = await ann.files()
            assert files[FILE] == "M" + expected
        await scene.quit()
    finally:
        await scene.stop()
    assert scene.hub_text() == "M" + expected
    assert nvim.read("result.txt") == neovim_text("M" + expected).encode()
    result = nvim.json("result.json")
    assert result["repairs"] == 0, result
    # Neovim prints a workspace edit's label: one line per teammate edit in :messages
    assert "Workspace edit" not in result["messages"], result["messages"]
    count = apply_edits(nvim)
    assert count <= MAX_APPLY_EDITS, f"{count} applyEdit requests\n{scene.diagnostics()}"


def test_an_unknown_echo_that_loops_is_stopped_and_counted() -> None:
    """The runaway guard, with the loop of the issue: an editor that keeps a final newline the
    bridge is not told about (``final_newline`` off), answers ``applied: true`` and reports the
    appended line as its own line diff. The echo is not recognised; after ``runaway_limit``
    edits in a row whose "typing" re-inserts the edit's own text, the bridge stops sending,
    drops that text and counts a repair: the text stops growing."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text += "a\nb\n"
    bridge = Bridge(text, origin="editor", version=1, editor_text="a\nb\n")
    editor, version = "a\nb\n", 1
    with doc.transaction(origin="teammate"):
        text.insert(4, "c")
    sent = 0
    while (edit := bridge.next_apply_edit()) is not None:
        sent += 1
        assert sent <= 10, f"still sending: {str(text)!r}"
        (change,) = edit.edits
        assert change.new_text.endswith("c") and change.range.start.line == editor.count("\n")
        # Neovim: a line appended after its last line, reported as a diff of the last line.
        index = LineIndex(editor)
        start = index.position_at(len(editor) - 1, PositionEncoding.UTF16)
        end = index.position_at(len(editor), PositionEncoding.UTF16)
        editor += change.new_text + "\n"
        bridge.edit_result(edit.id, True)
        version += 1
        bridge.local_change(version, [TextChange(Range(start, end), "\n" + change.new_text + "\n")])
    assert sent == bridge.runaway_limit
    assert bridge.runaways == 1 and bridge.repairs == 1
    assert len(str(text)) <= len("a\nb\nc") + bridge.runaway_limit * len("c\n")
