"""Neovim's ambiguous reports next to a concurrent edit (issue 13, item 2), in real Neovim 0.10
and 0.12 with plain LSP, and a stock Yjs teammate.

Neovim reports a change as the span between the old and new line's common prefix and suffix:
``"x1"`` typed at (0,0) of ``"xyz"`` arrives as ``"1x"`` inserted at (0,1), and deleting the
line ``"foo\\n"`` before ``"foo bar"`` as deleting ``"\\nfoo"`` at (0,3). With a teammate's
edit between the typing and the report (``didChange`` is debounced), the wrong reading put the
teammate's edit in the wrong place (``"1x"`` and ``"fooX bar"``).

Deterministic: Neovim's debounce is long (10 s); it types, then the teammate edits, and the
test waits until `huddle lsp` has sent that edit to Neovim and Neovim has answered (it skips
it: its buffer is newer) before it lets Neovim report (any LSP request flushes the debounced
``didChange``; tests/nvim/fuzz.lua's FLUSH_ON). Then everyone must hold what the user meant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from huddle.collab.schema import file_texts
from huddle.lsp.documents import MAX_EXACT
from huddle.server.hub import Hub
from tests.nvim_plugin.editor import Editor as PluginEditor
from tests.support.lsp_editor import Editor as LspEditor
from tests.support.peers import NodeClient, eventually, token
from tests.test_neovim_e2e import FILE, ROOM, STALE, START_TIMEOUT, Nvim, Scene, neovim_installed

__all__ = ["neovim_installed"]  # the fixture, shared

VERSIONS = ["0.10", "0.12"]
WAIT = 15.0

# scene -> (initial text, Neovim's edit [row, col, end_row, end_col, text], the teammate's
# op on the Y.Text, what everyone holds at the end)
SCENES: dict[str, tuple[str, list[Any], tuple[str, dict[str, Any]], str]] = {
    "typed-before-equal-characters": (
        "xyz\n",
        [0, 0, 0, 0, "x1"],
        ("delete", {"index": 0, "length": 3}),
        "x1\n",
    ),
    "line-deleted-before-a-similar-line": (
        "foo\nfoo bar\n",
        [0, 0, 1, 0, ""],
        ("insert", {"index": 4, "text": "X"}),
        "Xfoo bar\n",
    ),
}


def answered_edits(nvim: Nvim) -> int:
    """How many workspace/applyEdit requests Neovim has answered (from the LSP tap, which may
    record an answer before the request it answers)."""
    tap = nvim.home / "lsp.jsonl"
    if not tap.exists():
        return 0
    sent: set[Any] = set()
    answers: set[Any] = set()
    for line in tap.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        msg = record.get("msg")
        if not isinstance(msg, dict):
            continue
        if msg.get("method") == "workspace/applyEdit":
            sent.add(msg.get("id"))
        elif "method" not in msg and record.get("dir") == "editor>server":
            answers.add(msg.get("id"))
    return len(sent & answers)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scene_name", list(SCENES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_neovim_ambiguous_report_next_to_a_teammate_edit(
    neovim_installed: None,
    hub: Hub,
    data_dir: Path,
    tmp_path: Path,
    version: str,
    scene_name: str,
) -> None:
    initial, edit, (op, args), expected = SCENES[scene_name]
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
                # The teammate's edit reached Neovim (which skipped it: its buffer is newer)
                # while Neovim's typing is still unreported.
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
                files = await cat.files()
                assert files[FILE] == expected
            await scene.quit()
        finally:
            await scene.stop()
    assert scene.hub_text() == expected
    assert nvim.read("result.txt") == expected.encode()
    assert nvim.json("result.json")["repairs"] == 0


# --- with Huddle's plugin: the exact changes (on_bytes) ---------------------------------------

COUNT_APPLY_EDITS = """
local handlers = vim.lsp.handlers
local original = handlers["workspace/applyEdit"]
_G.huddle_test_edits = 0
handlers["workspace/applyEdit"] = function(...)
  local result = original(...)
  _G.huddle_test_edits = _G.huddle_test_edits + 1
  return result
end
"""

FLUSH = """
vim.lsp.buf_request(0, "workspace/executeCommand",
  { command = "huddle.status", arguments = {} }, function() end)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scene_name", list(SCENES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_neovim_plugin_sends_exact_changes(
    neovim_installed: None,
    hub: Hub,
    data_dir: Path,
    tmp_path: Path,
    version: str,
    scene_name: str,
) -> None:
    """The same scenes with the plugin: its ``huddle/changes`` (what ``on_bytes`` saw) replace
    Neovim's line diff, so there is nothing to guess. The reading rule would pick the same
    readings here; that the exact changes were the ones used for the user's edit shows in
    huddle lsp's log."""
    initial, edit, (op, args), expected = SCENES[scene_name]
    seeder_root = tmp_path / "seeder"
    seeder_root.mkdir()
    seed_options = {
        "hub": hub.url,
        "room": ROOM,
        "user": "ann",
        "token": token(data_dir, ROOM, "ann"),
    }
    bob = PluginEditor("bob", version, tmp_path)
    bob.write(FILE, STALE)
    async with LspEditor(seeder_root, init_options=seed_options) as ann:
        ann.open(FILE, initial)
        await bob.wait("ann to seed the room", lambda: _hub_text(hub) == initial)
        try:
            await bob.start(
                hub=hub.url,
                room=ROOM,
                token=token(data_dir, ROOM, "bob"),
                cmd=bob.lsp_cmd(),
                debounce_text_changes=10000,  # the test flushes
                ghost_text={"enabled": False},
            )
            await bob.nvim.command(f"edit {FILE}")
            await bob.wait_connected(ROOM)

            async def buffer_is(text: str) -> bool:
                return "\n".join(await bob.lines()) + "\n" == text

            await bob.wait("the room's text in Neovim", lambda: buffer_is(initial))
            await bob.lua(COUNT_APPLY_EDITS)
            # The plugin's cursor notification (a client notify) flushes the debounced
            # didChange when the edit moves the cursor: hold it, so the teammate's edit comes
            # between the typing and its report, as it does over a network.
            await bob.lua(
                "vim.api.nvim_clear_autocmds({ group = 'huddle.presence.' .. "
                "vim.api.nvim_get_current_buf() })"
            )
            row, col, end_row, end_col, new = edit
            await bob.lua(
                "vim.api.nvim_buf_set_text(0, ...)", row, col, end_row, end_col, new.split("\n")
            )
            # The version Neovim's LSP client reports the edit as (its b:changedtick).
            typed = await bob.lua("return vim.api.nvim_buf_get_changedtick(0)")
            async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "cat")) as cat:
                await cat.wait_event("synced")
                await cat.request(op, file=FILE, **args)

                async def answered() -> bool:
                    return bool(await bob.lua("return _G.huddle_test_edits") > 0)

                await bob.wait("Neovim's answer to the teammate's edit", answered)
                await bob.lua(FLUSH)

                async def everywhere() -> bool:
                    return _hub_text(hub) == expected and await buffer_is(expected)

                await bob.wait(f"{expected!r} everywhere", everywhere)
                assert (await cat.files())[FILE] == expected
        finally:
            await bob.stop()
    # The user's edit itself was read from the exact changes (not only, say, the replacement
    # of the stale copy): with them and the reading rule both disabled, this scene fails.
    log = bob.lsp_log.read_text(errors="replace")
    assert f"didChange v{typed} of {FILE}: used the exact changes" in log


def _hub_text(hub: Hub) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(FILE)


# --- huddle/changes from a hostile or confused client ----------------------------------------


@pytest.mark.timeout(60)
async def test_malformed_or_wrong_exact_changes_are_ignored(
    hub: Hub, data_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Malformed ``huddle/changes`` are dropped (one warning for all of them), a flood is
    bounded, and exact changes that do not lead to the editor's reported text are not used:
    the report is."""
    options = {"hub": hub.url, "room": ROOM, "user": "ann", "token": token(data_dir, ROOM, "ann")}
    async with LspEditor(tmp_path, init_options=options) as ann:
        uri = ann.open(FILE, "xyz\n")
        await ann.wait_status("connected")
        await eventually(lambda: _hub_text(hub) == "xyz\n", what="the room seeded")

        def notify(params: Any) -> None:
            ann.client.protocol.notify("huddle/changes", params)

        def exact(tick: Any, line: Any = 0, character: Any = 0, text: Any = "ZZZ") -> Any:
            where = {"line": line, "character": character}
            return {
                "textDocument": {"uri": uri, "version": tick},
                "changes": [{"range": {"start": where, "end": where}, "text": text}],
            }

        version = ann.buffers[uri].version
        malformed: list[Any] = [
            None,
            "changes",
            [1, 2],
            {"textDocument": 5},
            {"textDocument": {"uri": uri, "version": "7"}, "changes": None},
            {"textDocument": {"uri": uri, "version": True}, "changes": None},
            {"textDocument": {"uri": uri, "version": 1.5}, "changes": None},
            {"textDocument": {"uri": 3, "version": version}, "changes": None},
            {"textDocument": {"uri": uri, "version": version}, "changes": "abc"},
            {"textDocument": {"uri": uri, "version": version}, "changes": [{"text": "a"}]},
            exact(version, line=-1),
            exact(version, character="0"),
            exact(version, text=5),
        ]
        for params in malformed:
            notify(params)
        # Well formed, but not what the editor did: the report ("x1" at 0) wins.
        notify(exact(version, line=2**80))
        notify(exact(version))
        ann.type(FILE, 0, "x1")
        await eventually(lambda: _hub_text(hub) == "x1xyz\n", what="the reported typing")
        # A flood (more than a buffer keeps) of changes that lead elsewhere: bounded, unused.
        for _ in range(MAX_EXACT + 10):
            notify(exact(ann.buffers[uri].version, text="Q"))
        ann.type(FILE, 5, "!")
        await eventually(lambda: _hub_text(hub) == "x1xyz!\n", what="the next typing")
        # Exact changes of a buffer that is not open change nothing either.
        notify(exact(ann.buffers[uri].version) | {"textDocument": {"uri": uri + "x", "version": 1}})
        ann.type(FILE, 0, "a")
        await eventually(lambda: _hub_text(hub) == "ax1xyz!\n", what="typing after all that")
        assert ann.text(FILE) == "ax1xyz!\n"
    warnings = capfd.readouterr().err.count("ignored a malformed huddle/changes notification")
    assert warnings == 1
