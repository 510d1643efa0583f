"""The README's terminal "screenshot": Neovim 0.12 in tmux, in a room with a teammate whose
cursor and selection show, and ghost text from the embedded model at the cursor.

    .venv/bin/python -m tests.nvim_plugin.screenshot

writes editor-clients/neovim/screenshot.txt (`tmux capture-pane -e -p`: ANSI colours; view it
with `cat` in a terminal) and screenshot-plain.txt (the same without colours).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tests.nvim_plugin.editor import MODEL_TIMEOUT, PLUGIN, Editor
from tests.support.hubs import local_hub
from tests.support.peers import token

ROOM = "acme/geometry"
FILE = "geometry.py"
SOURCE = (
    '''"""Shapes."""

import math


def area(radius):
    """The area of a circle."""
    return math.pi * radius**2


def circumference(radius):
    """The circumference of a circle."""
'''
    + "    return \n"
)  # ends in a space: the cursor goes after it
FINISHED_GHOST = """
local ns = vim.api.nvim_create_namespace("nvim.lsp.inline_completion")
if #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {}) == 0 then return vim.NIL end
return require("huddle.ghost").shown() or vim.NIL
"""
STATUSLINE = "%f %m%=%{v:lua.require'huddle'.statusline()} "


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        data_dir = base / "hub"
        async with local_hub(data_dir) as hub:
            amy = Editor("amy", "0.12", base)
            bob = Editor("bob", "0.12", base)
            for editor in (amy, bob):
                editor.write(FILE, SOURCE)
            try:
                await asyncio.gather(amy.start(listen=True), bob.start())
                await amy.show_in_tmux("huddle-screenshot", 80, 20)
                for editor, color in ((amy, "#4363d8"), (bob, "#e6194b")):
                    await editor.setup(
                        hub=hub.url,
                        room=ROOM,
                        user=editor.name,
                        color=color,
                        token=token(data_dir, ROOM, editor.name),
                        cmd=editor.lsp_cmd(),
                    )
                await amy.lua(
                    "vim.o.termguicolors = true; vim.o.laststatus = 2; vim.o.statusline = ...",
                    STATUSLINE,
                )
                await amy.nvim.command(f"edit {FILE}")
                await amy.wait_connected(ROOM)
                await bob.nvim.command(f"edit {FILE}")
                await bob.wait_connected(ROOM)
                # Bob selects "math.pi" in area(); amy asks for a completion in circumference().
                await bob.nvim.input("8G0fmve")
                await amy.wait_statusline("+1")

                def shown() -> bool:
                    screen = amy.capture(ansi=False)
                    # bob's name at the end of the line he is on
                    return any(
                        "radius**2" in line and line.rstrip().endswith(" bob")
                        for line in screen.splitlines()
                    )

                await amy.wait("bob's cursor on amy's screen", shown)
                await amy.nvim.input("GA")

                async def ghost() -> bool:
                    # The finished completion, drawn by vim.lsp.inline_completion.
                    text = await amy.lua(FINISHED_GHOST)
                    return (
                        isinstance(text, str)
                        and bool(text.strip())
                        and text.split("\n")[0] in amy.capture(ansi=False)
                    )

                await amy.wait("ghost text on amy's screen", ghost, MODEL_TIMEOUT)
                (PLUGIN / "screenshot.txt").write_text(amy.capture(ansi=True))
                (PLUGIN / "screenshot-plain.txt").write_text(amy.capture(ansi=False))
            except AssertionError:
                print(amy.capture(ansi=False))

                raise
            finally:
                await asyncio.gather(amy.stop(), bob.stop())
    print(f"wrote {PLUGIN / 'screenshot.txt'} and screenshot-plain.txt")


if __name__ == "__main__":
    asyncio.run(main())
