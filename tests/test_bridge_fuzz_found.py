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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from huddle.server.hub import Hub
from tests.peers import NodeClient, token
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
