"""Bugs the real-editor fuzzer (tests/editor_fuzz.py) found, each pinned down with real editors.

1. A teammate empties the file while Neovim (plain LSP, ``eol``) has it open. Neovim keeps a
   final newline outside its lines, so the bridge sends it the shared text plus that newline:
   here, the empty text plus "\\n". Before the fix, working that out read the last character
   of the empty text: ``PositionError`` in the pump, no edit sent, and Neovim kept the old
   text (until some later teammate edit happened to unstick it).
2. Neovim (plain LSP) inserts a token ``<a2>`` just before a token ``<e1>`` while a teammate
   deletes ``<e1>``. Neovim reports ``a2><`` inserted after the ``<`` of ``<e1>``; both that
   reading and the user's have word edges (``<`` and ``>`` are not word characters), and the
   nearer one (Neovim's) won, so the teammate's deletion took the new token's ``<``: ``a2>``.
   Deterministic as in tests/test_neovim_ambiguity.py: Neovim's debounce is long, it types,
   the teammate's edit reaches it (skipped: its buffer is newer), then Neovim reports.
3. A CRLF file open in Neovim (``fileformat=dos``, ``eol``) and a teammate (a stock Yjs client)
   who appends a line ending in a bare ``"\n"`` after the final CRLF (seed 355954515 of the
   fuzzer: ``中<y24>é\n``). The edit does not end with the kept line break ``"\r\n"``, so it
   was not moved before it and went out at a line Neovim does not have; Neovim appended lines
   its own way, the bridge did not know the echo and fed it as typing: the line twice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from huddle.collab.schema import file_texts
from huddle.server.hub import Hub
from tests.nvim_plugin.editor import Editor as NvimEditor
from tests.support.peers import NodeClient, eventually, token
from tests.test_bridge_edges import neovim_text
from tests.test_neovim_ambiguity import answered_edits
from tests.test_neovim_e2e import FILE, ROOM, STALE, START_TIMEOUT, Scene, neovim_installed

__all__ = ["neovim_installed"]  # the fixture, shared

INITIAL = "a\nb\n"
WAIT = 15.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("version", ["0.7", "0.10", "0.12"])
async def test_teammate_empties_the_file_open_in_neovim(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    scene = Scene(hub, data_dir, tmp_path, INITIAL)
    nvim = scene.nvim(
        "b",
        version,
        "bob",
        disk_text=INITIAL,  # Neovim seeds the room with its buffer
        edits=0,
        extra_env={"HUDDLE_E2E_SCRIPTED": json.dumps(None)},
    )
    try:
        await nvim.start()
        await scene.wait(
            "Neovim to seed the room",
            START_TIMEOUT,
            lambda: nvim.has_ready() and scene.hub_text() == INITIAL,
        )
        scene.signal("go")
        await scene.wait("Neovim's first snapshot", WAIT, lambda: nvim.has("snap"))
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
            await ann.wait_event("synced")
            await ann.request("delete", file=FILE, index=0, length=len(INITIAL))

            def settled(shared: str) -> bool:
                return scene.hub_text() == shared and nvim.snapshot() == (
                    neovim_text(shared).encode()
                )

            await scene.wait("the empty text in Neovim", WAIT, lambda: settled(""))
            # A later edit arrives, and nothing else changed meanwhile.
            await ann.request("insert", file=FILE, index=0, text="M")
            await scene.wait("the marker", WAIT, lambda: settled("M"))
        await scene.quit()
    finally:
        await scene.stop()
    assert "PositionError" not in nvim.lsp_stderr.read_text(errors="replace")
    assert nvim.json("result.json")["repairs"] == 0


# scene -> (initial text, Neovim's edit [row, col, end_row, end_col, text], the teammate's op on
# the Y.Text, what everyone holds at the end)
TOKEN_SCENES: dict[str, tuple[str, list[Any], tuple[str, dict[str, Any]], str]] = {
    "token-typed-before-a-token": (
        "é<e1>\n",
        [0, len("é".encode()), 0, len("é".encode()), "<a2>"],
        ("delete", {"index": 1, "length": len("<e1>")}),
        "é<a2>\n",
    ),
    "token-typed-between-tokens": (
        "<e1><e3>\n",
        [0, 4, 0, 4, "<a2>"],
        ("delete", {"index": 4, "length": len("<e3>")}),
        "<e1><a2>\n",
    ),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scene_name", list(TOKEN_SCENES))
@pytest.mark.parametrize("version", ["0.10", "0.12"])
async def test_token_typed_next_to_a_token_a_teammate_deletes(
    neovim_installed: None,
    hub: Hub,
    data_dir: Path,
    tmp_path: Path,
    version: str,
    scene_name: str,
) -> None:
    initial, edit, (op, args), expected = TOKEN_SCENES[scene_name]
    scene = Scene(hub, data_dir, tmp_path, initial)
    nvim = scene.nvim(
        "b",
        version,
        "bob",
        disk_text=STALE,  # the room's text replaces it: Neovim checks versions from then on
        edits=1,
        extra_env={
            "HUDDLE_E2E_TAP": str(tmp_path / "nvim-b" / "lsp.jsonl"),
            "HUDDLE_E2E_SCRIPTED": json.dumps([edit]),
            "HUDDLE_E2E_DEBOUNCE_MS": "10000",
            "HUDDLE_E2E_FLUSH_ON": "flush",
        },
    )
    async with scene.seeder() as ann:
        ann.open(FILE, initial)
        await scene.wait("ann to seed the room", START_TIMEOUT, lambda: scene.hub_text() == initial)
        try:
            await nvim.start()
            await scene.wait("the room's text in Neovim", START_TIMEOUT, nvim.has_ready)
            before = answered_edits(nvim)
            scene.signal("go")
            await scene.wait("Neovim's typing", WAIT, lambda: nvim.has("done.json"))
            async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "cat")) as cat:
                await cat.wait_event("synced")
                await cat.request(op, file=FILE, **args)
                await scene.wait(
                    "Neovim's answer to the teammate's edit",
                    WAIT,
                    lambda: answered_edits(nvim) > before,
                )
                scene.signal("flush")
                want = expected.encode()
                await scene.wait(
                    f"{expected!r} everywhere",
                    WAIT,
                    lambda: scene.hub_bytes() == want and nvim.snapshot() == want,
                )
            await scene.quit()
        finally:
            await scene.stop()
    assert nvim.json("result.json")["repairs"] == 0


CRLF_INITIAL = "a\r\nb\r\n"
FUZZ_LUA = Path(__file__).parent / "nvim" / "editor_fuzz.lua"
LSP_TAP = Path(__file__).parent / "nvim" / "lsp_tap.py"


async def open_in_neovim(
    tmp_path: Path, hub: Hub, data_dir: Path, version: str, *, plugin: bool, text: str
) -> NvimEditor:
    """A real Neovim with ``text`` on disk in the room ``ROOM`` (it seeds it), through plain LSP
    (``vim.lsp.start``, as a user's own config) or Huddle's plugin; driven as the fuzzer
    drives it (tests/nvim/editor_fuzz.lua, the global ``EditorFuzz``)."""
    editor = NvimEditor(version.replace(".", "_"), version, tmp_path)
    editor.write(FILE, text)
    # The LSP traffic, recorded (tests/nvim/lsp_tap.py): the first thing to read on a failure.
    cmd = [sys.executable, str(LSP_TAP), str(editor.home / "lsp.jsonl"), "--", *editor.lsp_cmd()]
    tok = token(data_dir, ROOM, "bob")
    try:
        await editor.start()
        await editor.lua(f"_G.EditorFuzz = dofile({json.dumps(str(FUZZ_LUA))})")
        if plugin:
            await editor.setup(hub=hub.url, room=ROOM, token=tok, user="bob", cmd=cmd)
            await editor.lua("EditorFuzz.open(...)", FILE)
        else:
            init = {"hub": hub.url, "room": ROOM, "user": "bob", "token": tok}
            await editor.lua("EditorFuzz.open(...)", FILE)
            await editor.lua("EditorFuzz.start_plain(...)", cmd, str(editor.workspace), init)
    except BaseException:
        await editor.stop()
        raise
    return editor


async def neovim_lines(editor: NvimEditor) -> str:
    """Neovim's text as it reports it over LSP: its lines joined by its fileformat's line
    break, plus one more where 'eol' is set."""
    view = await editor.lua("return EditorFuzz.view()")
    sep = "\r\n" if view["ff"] == "dos" else "\n"
    return str(sep.join(view["lines"]) + (sep if view["eol"] else ""))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("appended", ["c\n", "c\nd\n"])
@pytest.mark.parametrize("version", ["0.7", "0.10", "0.12", "0.12-plugin"])
async def test_teammate_appends_lf_lines_to_a_crlf_file_open_in_neovim(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str, appended: str
) -> None:
    editor = await open_in_neovim(
        tmp_path,
        hub,
        data_dir,
        version.removesuffix("-plugin"),
        plugin=version.endswith("-plugin"),
        text=CRLF_INITIAL,
    )

    def hub_text() -> str | None:
        room = hub.room(ROOM)
        return None if room is None else file_texts(room.doc).get(FILE)

    async def settled(shared: str) -> bool:
        return hub_text() == shared and await neovim_lines(editor) == shared

    async def texts() -> str:
        return f"hub {hub_text()!r}, Neovim {await neovim_lines(editor)!r}; see {editor.home}"

    # Neovim rewrites the teammate's line breaks to its own, and the room takes the rewrite.
    expected = CRLF_INITIAL + appended.replace("\n", "\r\n")
    try:
        await eventually(
            lambda: hub_text() == CRLF_INITIAL, timeout=START_TIMEOUT, what="Neovim's seed"
        )
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
            await ann.wait_event("synced")
            await ann.request("insert", file=FILE, index=len(CRLF_INITIAL), text=appended)
            try:
                await eventually(lambda: settled(expected), timeout=WAIT, what=repr(expected))
                # A later edit arrives, and nothing else changed meanwhile.
                await ann.request("insert", file=FILE, index=0, text="M")
                await eventually(lambda: settled("M" + expected), timeout=WAIT, what="M first")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {await texts()}") from None
            assert (await ann.files())[FILE] == "M" + expected
        status = await editor.lua("return EditorFuzz.server_status()")
        assert status["repairs"] == 0, status
    finally:
        await editor.stop()
