"""The Neovim plugin (editor-clients/neovim) in real headless Neovims, 0.10 and 0.12.

Each Neovim runs with `--embed --headless --clean`, the plugin on its runtimepath, and is
driven over msgpack-RPC (tests/nvim_plugin/rpc.py): the test types with ``nvim_input`` as a
user would and reads buffers, extmarks and registers back. The plugin starts a real
`huddle lsp` per editor, which joins a real in-process hub; the hub's AI is the real embedded
model (SmolLM2 through llama.cpp), started at the first AI request.

- two editors in one room: one types and the other's buffer follows; the typist's cursor and
  selection show in the other editor as extmarks with her name in her colour; the second
  editor joins from an invite link the first made with :HuddleShare; :HuddleCatchUp streams a
  summary of what changed into a markdown scratch buffer; :HuddleFollow, :HuddleUndo and
  :HuddleLeave do what they say;
- ghost text from the model appears (0.12: `vim.lsp.inline_completion`; 0.10: the plugin's
  own extmarks), streamed partials first, and <Tab> inserts exactly what was shown; without
  ghost text <Tab> is a tab; :HuddleSummarize on a visual selection summarises it;
- `:checkhealth huddle` reports OK, and names what is wrong when it is not.

Each Neovim's stderr, `huddle lsp`'s debug log and `:messages` are in the failure message.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from huddle.collab.schema import file_texts
from huddle.llm import LlmConfig
from huddle.protocol import web_url
from huddle.server.hub import Hub
from tests.nvim_plugin.editor import MODEL_TIMEOUT, ROOT, Editor
from tests.support.hubs import local_hub
from tests.support.peers import token

SCRIPT = ROOT / "scripts" / "neovim.sh"
VERSIONS = ["0.10", "0.12"]

ROOM = "team/nvim-plugin"
FILE = "src/app.py"
INITIAL = "def greet(name):\n    return 'hi ' + name\n"
AMY_COLOR = "#e6194b"


@pytest.fixture(scope="session")
def neovim_installed() -> None:
    """scripts/neovim.sh installs the builds (cached, so a no-op after the first time)."""
    cached = all((ROOT / ".cache" / "neovim" / v / "nvim").exists() for v in VERSIONS)
    if not cached and (shutil.which("apt-get") is None or shutil.which("dpkg") is None):
        pytest.skip("installing Neovim needs apt-get and dpkg (Debian)")
    subprocess.run([str(SCRIPT), "install"], capture_output=True, timeout=540, check=False)


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    """The hub with its default AI (the embedded model), summaries kept short."""
    llm = LlmConfig(summary_max_tokens=24)
    async with local_hub(data_dir, llm=llm) as running:
        yield running


def hub_text(hub: Hub, path: str = FILE) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(path)


async def presence_marks(editor: Editor) -> list[dict[str, Any]]:
    """The teammates drawn in the current buffer: each extmark's position and details."""
    marks = await editor.lua(
        """
        local ns = vim.api.nvim_create_namespace("huddle.presence")
        local out = {}
        for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
          local d = m[4]
          table.insert(out, {
            row = m[2], col = m[3], end_row = d.end_row or vim.NIL, end_col = d.end_col or vim.NIL,
            hl = d.hl_group or vim.NIL,
            label = d.virt_text and d.virt_text_pos == "eol" and d.virt_text[1][1] or vim.NIL,
            label_hl = d.virt_text and d.virt_text[1][2] or vim.NIL,
          })
        end
        return out
        """
    )
    result: list[dict[str, Any]] = marks
    return result


@pytest.mark.timeout(150)
@pytest.mark.parametrize("version", VERSIONS)
async def test_two_editors_in_one_room(
    neovim_installed: None, model_hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    amy = Editor("amy", version, tmp_path)
    bob = Editor("bob", version, tmp_path)
    amy.write(FILE, INITIAL)
    bob.write(FILE, "a stale copy on bob's disk\n")
    try:
        await asyncio.gather(amy.start(), bob.start())
        await amy.setup(
            hub=model_hub.url,
            room=ROOM,
            token=token(data_dir, ROOM, "amy"),
            user="amy",
            color=AMY_COLOR,
            cmd=amy.lsp_cmd(),
            share={"register": "h"},
        )
        await amy.nvim.command(f"edit {FILE}")
        await amy.wait_connected(ROOM)
        await amy.wait("the room to hold amy's file", lambda: hub_text(model_hub) == INITIAL)

        # Bob starts alone (solo mode), then joins from the invite link amy shares.
        await bob.setup(cmd=bob.lsp_cmd())
        await bob.nvim.command(f"edit {FILE}")
        await bob.wait_connected("solo")
        await amy.nvim.command("HuddleShare bob")

        async def invite_link() -> bool:
            return str(await amy.lua("return vim.fn.getreg('h')")).startswith("ws://")

        await amy.wait("the invite link in register h", invite_link)
        link = await amy.lua("return vim.fn.getreg('h')")
        assert link.startswith(f"{model_hub.url}/{ROOM}?token="), link
        web = await amy.lua("return vim.g.huddle_last_web_invite")
        assert web == web_url(model_hub.url, ROOM, link.split("?token=", 1)[1]), web
        await bob.nvim.command(f"HuddleJoin {link}")
        await bob.wait_connected(ROOM)
        initial_lines = INITIAL.splitlines()

        async def bob_has(lines: list[str], bufnr: int = 0) -> bool:
            return await bob.lines(bufnr) == lines

        await bob.wait(
            "the room's text to replace bob's stale copy", lambda: bob_has(initial_lines)
        )
        for editor in (amy, bob):
            await editor.wait_statusline("+1")  # one teammate

        # (1) Amy types; bob's buffer follows.
        await amy.nvim.input("2GA  # amy était là 😀<Esc>")
        typed = [initial_lines[0], initial_lines[1] + "  # amy était là 😀"]
        await bob.wait("amy's typing in bob's buffer", lambda: bob_has(typed))
        await amy.wait(
            "amy's typing in the room",
            lambda: hub_text(model_hub) == "\n".join(typed) + "\n",
        )

        # (2) Amy's cursor, named and in her colour, where she moved it (no edit on the way).
        await amy.nvim.input("gg0w")
        assert await amy.cursor() == (0, 4)
        label_group = f"HuddlePeer_{AMY_COLOR[1:]}"

        async def amy_shown_at(row: int, col: int) -> bool:
            marks = await presence_marks(bob)
            labels = [m for m in marks if m["label"] == " amy "]
            cursors = [m for m in marks if m["hl"] == f"HuddlePeerCursor_{AMY_COLOR[1:]}"]
            return (
                len(labels) == 1
                and (labels[0]["row"], labels[0]["col"]) == (row, col)
                and labels[0]["label_hl"] == label_group
                and len(cursors) == 1
                and (cursors[0]["row"], cursors[0]["col"], cursors[0]["end_col"])
                == (row, col, col + 1)
            )

        await bob.wait(
            "amy's cursor at line 1, column 4 in bob's buffer", lambda: amy_shown_at(0, 4)
        )
        hl = await bob.lua("return vim.api.nvim_get_hl(0, { name = ... })", label_group)
        assert hl["bg"] == int(AMY_COLOR[1:], 16)

        # Her selection: "greet(name):" on line 1 (visual mode includes the last character).
        await amy.nvim.input("v$")

        async def selection_shown() -> bool:
            marks = await presence_marks(bob)
            return any(
                m["hl"] == f"HuddlePeerSelection_{AMY_COLOR[1:]}"
                and (m["row"], m["col"], m["end_row"], m["end_col"]) == (0, 4, 0, len(typed[0]))
                for m in marks
            )

        await bob.wait("amy's selection in bob's buffer", selection_shown)
        await amy.nvim.input("<Esc>")

        # (4) Bob catches up: the summary streams into a markdown scratch buffer.
        await bob.nvim.command("HuddleCatchUp")

        summary = await bob.wait_summary()
        text = "\n".join(summary["lines"])
        assert summary["info"]["state"] == "done", text
        assert summary["info"]["partials"] >= 1, "the summary did not stream"
        assert summary["buftype"] == "nofile" and summary["filetype"] == "markdown"
        assert summary["shown"] and summary["current"], "shown in a split, focus kept"
        assert f"`{FILE}`" in text and "amy" in text, text
        print(f"nvim {version}: catch-up summary ({summary['info']['partials']} partials):\n{text}")

        # Amy follows bob to the file he opens (the room's copy wins over her disk's).
        await amy.nvim.command("HuddleFollow amy/bob")  # an invite's name names its minter
        util = "def util():\n    pass\n"
        bob.write("src/util.py", util)
        amy.write("src/util.py", "amy's old copy\n")
        await bob.nvim.command("edit src/util.py")

        async def amy_in_util() -> bool:
            name = await amy.lua("return vim.api.nvim_buf_get_name(0)")
            return str(name).endswith("/src/util.py") and await amy.lines() == util.splitlines()

        await amy.wait("amy's editor to follow bob to src/util.py", amy_in_util)
        await amy.nvim.command("HuddleUnfollow")

        # :HuddleUndo takes back amy's own typing, in bob's (now hidden) buffer too.
        await amy.nvim.command("HuddleUndo")
        app = await bob.lua("return vim.fn.bufnr(...)", FILE)
        await bob.wait("amy's typing undone", lambda: bob_has(initial_lines, app))

        # Bob leaves: his statusline empties, amy's loses its teammate and his cursor.
        await bob.nvim.command("HuddleLeave")
        await bob.wait_statusline("", exact=True)

        async def alone() -> bool:
            return "+" not in await amy.statusline()

        await amy.wait("bob gone from amy's statusline", alone)
    finally:
        await asyncio.gather(amy.stop(), bob.stop())


STATS = "return require('huddle.ghost').stats"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("version", VERSIONS)
async def test_ghost_text_from_the_model_is_accepted_with_tab(
    neovim_installed: None, model_hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    amy = Editor("amy", version, tmp_path)
    source = "def add(a, b):\n    return \n"
    amy.write("calc.py", source)
    try:
        await amy.start(
            hub=model_hub.url,
            room=ROOM,
            token=token(data_dir, ROOM, "amy"),
            cmd=amy.lsp_cmd(),
        )
        await amy.nvim.command("edit calc.py")
        await amy.wait_connected(ROOM)
        await amy.wait("calc.py in the room", lambda: hub_text(model_hub, "calc.py") == source)

        # No ghost text yet: <Tab> is a tab (the python ftplugin's spaces turned off).
        await amy.nvim.command("setlocal noexpandtab softtabstop=0")
        await amy.nvim.input("2GA<Tab><Esc>")

        async def line_is(text: str) -> bool:
            return (await amy.lines())[1] == text

        await amy.wait("a plain tab", lambda: line_is("    return \t"))
        await amy.nvim.input("u")
        await amy.wait("the tab undone", lambda: line_is("    return "))

        # Insert mode at the end of "    return ": the model's completion shows as ghost text.
        await amy.nvim.input("2GA")
        namespace = "nvim.lsp.inline_completion" if version == "0.12" else "huddle.ghost"

        async def ghost() -> str | None:
            shown = await amy.lua(
                """
                local ns = vim.api.nvim_create_namespace(...)
                if #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {}) == 0 then return vim.NIL end
                return require('huddle.ghost').shown()
                """,
                namespace,
            )
            return shown if isinstance(shown, str) and shown.strip() else None

        async def ghost_shown() -> bool:
            # Partials show first; wait for the finished answer (0.10: drawn by the plugin).
            answered = version == "0.12" or (await amy.lua(STATS))["answer"] >= 1
            return answered and await ghost() is not None

        await amy.wait(f"ghost text (in {namespace})", ghost_shown, MODEL_TIMEOUT)
        suggestion = await ghost()
        assert suggestion is not None
        stats = await amy.lua(STATS)
        assert stats["partial"] >= 1, "no ghost text from huddle/inlineCompletionPartial"
        print(f"nvim {version}: ghost text {suggestion!r}, drawn {stats}")
        assert await amy.mode() == "i"
        before = await amy.lines()
        await amy.nvim.input("<Tab>")
        expected = "\n".join(before).replace("    return ", "    return " + suggestion, 1)

        async def accepted() -> bool:
            return "\n".join(await amy.lines()) == expected

        await amy.wait(f"{suggestion!r} inserted", accepted)
        assert await amy.mode() == "i"
        last = suggestion.split("\n")[-1]
        row = 1 + suggestion.count("\n")
        col = len((("    return " if row == 1 else "") + last).encode())
        assert await amy.cursor() == (row, col)
        await amy.nvim.input("<Esc>")
        await amy.wait(
            "the accepted text in the room",
            lambda: hub_text(model_hub, "calc.py") == expected + "\n",
        )

        # The hub has the completion accepted: 0.10 on the plugin's word (its accept key runs
        # the item's command before inserting); 0.12 inserts first, and runs the command after
        # sending the change, which has told huddle lsp already.
        def outcome() -> dict[str, Any] | None:
            done = [r for r in model_hub.audit.completions() if "acceptance" in r]
            return done[-1] if done else None

        await amy.wait("the completion's outcome", lambda: outcome() is not None)
        assert (outcome() or {}).get("acceptance") == "accepted", outcome()
        source = "editor" if version == "0.10" else "text"
        assert (outcome() or {}).get("source") == source, outcome()

        # The first two lines, selected: :HuddleSummarize summarises the selection.
        await amy.nvim.input("ggVj:HuddleSummarize<CR>")
        summary = await amy.wait_summary()
        text = "\n".join(summary["lines"])
        assert summary["info"]["state"] == "done", text
        assert summary["info"]["command"] == "huddle.summarizeSelection"
        assert summary["lines"][0] == "# Summary of calc.py, lines 1-2", text
        assert "".join(summary["lines"][1:]).strip(), "the model wrote nothing"
    finally:
        await amy.stop()


@pytest.mark.parametrize("version", VERSIONS)
async def test_checkhealth(neovim_installed: None, tmp_path: Path, version: str) -> None:
    editor = Editor("health", version, tmp_path)
    try:
        await editor.start(autostart=False)
        await editor.nvim.command("checkhealth huddle")
        report = "\n".join(await editor.lines())
        assert "ERROR" not in report, report
        for ok in (
            f"OK Neovim {version}.",
            "OK settings are valid",
            f"OK language server: `{ROOT}/.venv/bin/huddle lsp`",
        ):
            assert ok in report, report
        await editor.nvim.command("bwipeout")

        await editor.setup(
            autostart=False, completion_scope="sometimes", cmd=["/nonexistent/huddle"]
        )
        await editor.nvim.command("checkhealth huddle")
        report = "\n".join(await editor.lines())
        assert "ERROR invalid setting: `completion_scope` must be" in report, report
        assert "ERROR `/nonexistent/huddle` is not executable" in report, report
    finally:
        await editor.stop()


@pytest.mark.parametrize("version", VERSIONS)
async def test_invite_links(neovim_installed: None, tmp_path: Path, version: str) -> None:
    editor = Editor("links", version, tmp_path)
    try:
        await editor.start()
        parse = "return require('huddle.link').parse(...) or vim.NIL"
        link = "wss://hub.example.com:8765/acme/web%20app?token=abc.def.ghi&x=1"
        assert await editor.lua(parse, link) == {
            "hub": "wss://hub.example.com:8765",
            "room": "acme/web app",
            "token": "abc.def.ghi",
        }
        assert await editor.lua(parse, "ws://127.0.0.1:8765/?token=abc") is None
        assert await editor.lua(parse, "ws://127.0.0.1:8765/acme/webapp") is None
        assert await editor.lua(parse, "http://127.0.0.1:8765/acme?token=abc") is None
        claims = await editor.lua(
            "return require('huddle.link').claims(...)", token(tmp_path / "hub", "r", "zoë")
        )
        assert claims["sub"] == "zoë" and claims["room"] == "r"
    finally:
        await editor.stop()
