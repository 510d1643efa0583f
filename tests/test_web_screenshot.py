"""The README's picture of the browser client (editor-clients/web/screenshot.png): two pages and a
Neovim 0.12 (the Huddle plugin, its own `huddle lsp`, its terminal UI in tmux) in one room of a
real hub with the embedded model. Ann's page shows Amy's selection and a completion as ghost
text; Bea's follows Ann and shows a catch-up; Amy's Neovim shows both pages' cursors.

The test checks what each of them shows, then draws the three in one picture (the pages'
screenshots and the terminal's screen, coloured, side by side in chromium). With
``HUDDLE_UPDATE_SCREENSHOT=1`` it rewrites the README's picture; a normal run leaves the tree
clean."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from huddle.llm import LlmConfig
from huddle.protocol import web_url
from huddle.server.hub import Hub
from tests.nvim_plugin.editor import MODEL_TIMEOUT, Editor
from tests.support.browser import Browser
from tests.support.hubs import local_hub
from tests.support.peers import ROOT, token
from tests.support.terminal_html import ansi_to_html

ROOM = "acme/geometry"
FILE = "geometry.py"
SOURCE = '''"""Shapes."""

import math


def area(radius):
    """The area of a circle."""
    return math.pi * radius**2


def circumference(radius):
    """The circumference of a circle."""
'''
SCREENSHOT = ROOT / "editor-clients" / "web" / "screenshot.png"
PAGE = {"width": 860, "height": 520}
STATUSLINE = "%f %m%=%{v:lua.require'huddle'.statusline()} "


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    async with local_hub(data_dir, llm=LlmConfig(summary_max_tokens=48)) as running:
        yield running


def _compose(shots: list[tuple[str, str]], terminal: tuple[str, str]) -> str:
    """One page: the pages' screenshots (captions, PNG paths) in a row, the terminal below."""
    figures = [
        f'<figure><figcaption>{caption}</figcaption><img src="data:image/png;base64,'
        f'{base64.b64encode(Path(png).read_bytes()).decode()}"></figure>'
        for caption, png in shots
    ]
    caption, screen = terminal
    figures.append(f'<figure class="wide"><figcaption>{caption}</figcaption>{screen}</figure>')
    style = (
        "body{margin:0;padding:14px;background:#eaeef2;display:grid;"
        "grid-template-columns:repeat(2,max-content);gap:14px;font:13px system-ui,sans-serif}"
        "figure{margin:0}figcaption{margin:0 0 4px;color:#1f2328;font-weight:600}"
        "img,pre{display:block;border:1px solid #8c959f;border-radius:4px}"
        ".wide{grid-column:1/3}"
        "pre{margin:0;padding:6px 8px;width:max-content;font:13px/1.3 'DejaVu Sans Mono',monospace}"
    )
    body = "".join(figures)
    return f"<!doctype html><html><head><style>{style}</style></head><body>{body}</body></html>"


async def test_two_pages_and_neovim_in_one_room(
    model_hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    amy = Editor("amy", "0.12", tmp_path)
    amy.write(FILE, SOURCE)
    try:
        async with Browser() as browser:
            await amy.start(listen=True)
            await amy.show_in_tmux("huddle-web-screenshot", 80, 22)
            await amy.setup(
                hub=model_hub.url,
                room=ROOM,
                user="amy",
                color="#4363d8",
                token=token(data_dir, ROOM, "amy"),
                cmd=amy.lsp_cmd(),
            )
            await amy.lua(
                "vim.o.termguicolors = true; vim.o.laststatus = 2; vim.o.statusline = ...",
                STATUSLINE,
            )
            await amy.nvim.command(f"edit {FILE}")
            await amy.wait_connected(ROOM)
            await amy.nvim.input("8G0fmve")  # amy selects "math.pi"

            for user in ("ann", "bea"):
                link = web_url(model_hub.url, ROOM, token(data_dir, ROOM, user))
                await browser.open(user, link, **PAGE)
                await browser.wait(
                    user,
                    "amy's selection",
                    lambda s: s["text"] == SOURCE and any(c["name"] == "amy" for c in s["carets"]),
                )
            # Bea follows Ann; Ann starts the last function's body and pauses: ghost text.
            await browser.request("clickPerson", page="bea", name="ann")
            await browser.request("focusEnd", page="ann")
            await browser.request("type", page="ann", text="    return ")

            def final_ghost(shown: dict[str, object]) -> bool:
                ghost = shown["ghost"]
                return isinstance(ghost, list) and len(ghost) == 1 and bool(ghost[0]["final"])

            await browser.wait("ann", "ghost text", final_ghost, MODEL_TIMEOUT)
            await browser.request("clickButton", page="bea", button="catch-up")
            shown = await browser.wait(
                "bea",
                "caught up, ann's caret where she typed",
                lambda s: (
                    s["summary"] is not None
                    and s["summary"]["state"] == "done"
                    and {"name": "ann", "line": 12, "column": 11} in s["carets"]
                ),
                MODEL_TIMEOUT,
            )
            assert "geometry.py" in shown["summary"]["text"]
            assert shown["following"] == "following ann"

            def both_pages_on_amys_screen() -> bool:
                screen = amy.capture(ansi=False)
                return "    return " in screen and " ann" in screen and " bea" in screen

            await amy.wait("ann and bea in amy's Neovim", both_pages_on_amys_screen)

            shots = []
            for user, caption in (
                ("ann", "ann, in a browser: amy's selection, a completion as ghost text"),
                ("bea", "bea, in a browser: following ann, Catch me up"),
            ):
                png = tmp_path / f"{user}.png"
                await browser.request("screenshot", page=user, path=str(png))
                shots.append((caption, str(png)))
                assert (await browser.state(user))["errors"] == []
            terminal = (
                "amy, in Neovim 0.12 with the Huddle plugin: ann's and bea's cursors",
                ansi_to_html(amy.capture(ansi=True)),
            )
            update = bool(os.environ.get("HUDDLE_UPDATE_SCREENSHOT"))
            target = SCREENSHOT if update else tmp_path / "screenshot.png"
            width = 2 * PAGE["width"] + 60
            await browser.request(
                "render", html=_compose(shots, terminal), path=str(target), width=width
            )
            assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        await amy.stop()
