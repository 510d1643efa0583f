"""The VS Code extension in a real workbench: code-server 4.100.3 (VS Code 1.100.3) driven
headless by Debian's chromium through playwright-core (tests/workbench/page.mjs), against a real
hub and a stock Node Yjs teammate.

One code-server instance and one page (each page load starts another extension host), one scenario
in order: the extension says it cannot find ``huddle`` (one actionable notification); the workspace
gets its ``.venv/bin/huddle``; Join Session with an invite link typed into the command palette's
input connects (the token in secret storage, not in settings); the status bar shows the room; the
teammate's cursor and name are drawn; the editor and the teammate type at the end of the same file
at once and every token ends up exactly once in the editor, the hub and the teammate.

Installed by ``scripts/vscode-server.sh install`` (``./dev setup`` and ``./dev test`` run it); when
something is missing the test fails and says what, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from huddle.collab.schema import file_texts
from huddle.server.client import room_url
from huddle.server.hub import Hub
from tests.peers import ROOT, NodeClient, eventually, token
from tests.workbench_harness import VSCODE, CodeServer, Page, build_vsix, require_installed

# Run by `./dev workbench`, not `./dev test`: it reproduces an open bridge bug (issue 13).
pytestmark = pytest.mark.workbench

ROOM = "team/workbench"
FILE = "app.py"
# The README's picture; rewritten only when asked, so a test run leaves the tree clean.
SCREENSHOT = VSCODE / "workbench.png"


@pytest.fixture
async def workbench(tmp_path: Path) -> AsyncIterator[CodeServer]:
    require_installed()
    vsix = build_vsix()
    async with CodeServer(tmp_path / "code", vsix) as server:
        yield server


def _room_text(hub: Hub) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(FILE)


@pytest.mark.timeout(420)
async def test_vscode_workbench(
    hub: Hub, data_dir: Path, tmp_path: Path, workbench: CodeServer
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / FILE).write_text("a\nb\n")
    folder_url = f"{workbench.url}/?folder={ws}"
    async with Page(folder_url) as page:
        try:
            await _scenario(hub, data_dir, ws, workbench, page)
        except BaseException:
            failure = tmp_path / "failure.png"
            with contextlib.suppress(Exception):  # the original failure is what matters
                await page.request("screenshot", timeout=30, path=str(failure))
            print(f"screenshot of the failure: {failure}")
            print("--- Huddle output channel ---\n" + workbench.extension_log()[-6000:])
            print("--- code-server ---\n" + workbench.log()[-3000:])
            raise


async def _scenario(hub: Hub, data_dir: Path, ws: Path, workbench: CodeServer, page: Page) -> None:
    await page.request("goto")

    # (a) No huddle anywhere it looks (PATH has none, the workspace no .venv): one notification
    # that says what to do, instead of starting `python3 -m huddle.cli lsp` into a crash loop.
    shown = await page.request(
        "notification", text="could not find its language server", timeout=120
    )
    assert "huddle.server.command" in shown["text"] and ".venv" in shown["text"], shown
    huddle_toasts = [t for t in shown["all"] if "Huddle" in t]
    assert len(huddle_toasts) == 1, f"one notification, not {huddle_toasts}"

    # The user installs Huddle into the workspace's .venv, then joins with the invite link.
    (ws / ".venv" / "bin").mkdir(parents=True)
    (ws / ".venv" / "bin" / "huddle").symlink_to(ROOT / ".venv" / "bin" / "huddle")
    invite_token = token(data_dir, ROOM, "vera")
    await page.request("palette", title="Huddle: Join Session")
    await page.request("answer", text=room_url(hub.url, ROOM, invite_token))
    status = await page.request("status", text=ROOM, timeout=120)
    assert "connecting" not in status["text"] and "offline" not in status["text"], status
    settings = (ws / ".vscode" / "settings.json").read_text()
    assert ROOM in settings and invite_token not in settings, (
        f"the token must stay out of settings: {settings}"
    )
    channel = workbench.extension_log()
    assert "(workspace .venv)" in channel, (
        f"the server should come from the workspace's .venv:\n{channel}"
    )

    # (c) A teammate's cursor and name, drawn in the editor.
    await page.request("open", file=FILE)
    await eventually(lambda: _room_text(hub) == "a\nb\n", timeout=60, what="the hub to hold app.py")

    # The server logs "shared app.py" at INFO on stderr: the channel shows it as info, not error.
    def shared_line() -> str | None:
        return next(
            (ln for ln in workbench.extension_log().splitlines() if f"shared {FILE}" in ln), None
        )

    await eventually(
        lambda: shared_line() is not None, timeout=30, what="the server's log line in the channel"
    )
    line = shared_line()
    assert line is not None and "[info] huddle.lsp" in line, f"server INFO logged as: {line}"
    async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "nina")) as nina:
        await nina.wait_event("synced")
        await nina.request("cursor", file=FILE, index=2, user={"name": "nina", "color": "#e5534b"})
        drawn = await page.request("decoration", name="nina", timeout=60)
        assert drawn["found"], drawn
        # (d) The README's picture: the room in the status bar, the teammate's cursor and name.
        if os.environ.get("HUDDLE_UPDATE_SCREENSHOT"):
            await page.request("palette", title="Notifications: Clear All Notifications")
            await page.request("screenshot", path=str(SCREENSHOT))

        # (b) Both type at the end of the same file at once; every token once everywhere.
        await page.request("key", keys=["Control+End"])
        mine = [f"v{i}x" for i in range(12)]
        theirs = [f"n{i}y" for i in range(12)]

        async def teammate_types() -> None:
            for word in theirs:
                await nina.request("append", file=FILE, text=f"{word}\n")
                await asyncio.sleep(0.05)  # a typist's pace, not a wait for anything

        await asyncio.gather(
            page.request("type", text="".join(f"{w}\n" for w in mine), delay=25),
            teammate_types(),
        )

        async def converged() -> bool:
            hub_text = _room_text(hub)
            nina_text = (await nina.files()).get(FILE)
            lines = (await page.request("text"))["lines"]
            # Monaco draws a final newline as a last, empty line.
            return hub_text is not None and nina_text == hub_text and "\n".join(lines) == hub_text

        try:
            await eventually(converged, timeout=60, what="editor, hub and teammate to agree")
        except AssertionError:
            lines = (await page.request("text"))["lines"]
            hub_text = _room_text(hub) or ""
            doubled = {w: n for w in mine + theirs if (n := hub_text.count(w)) > 1}
            raise AssertionError(
                (
                    f"text duplicated (word: copies in the hub) {doubled}; "
                    if doubled
                    else "did not converge; "
                )
                + f"editor (visible lines) {lines!r}\n hub {hub_text!r}\n"
                + f" nina {(await nina.files()).get(FILE)!r}"
            ) from None
        final = _room_text(hub)
        assert final is not None
        # Both typed at the very same place, so the keyboard's words may be split by the
        # teammate's (each of which arrives whole): the teammate's words are there once each,
        # and without them the text is exactly the file plus what was typed, in order.
        rest = final
        for word in theirs:
            assert final.count(f"{word}\n") == 1, f"{word} {final.count(word)} times in {final!r}"
            rest = rest.replace(f"{word}\n", "", 1)
        assert rest == "a\nb\n" + "".join(f"{w}\n" for w in mine), (
            f"typed text lost or doubled: {final!r}"
        )


def test_workbench_installer_is_cached() -> None:
    """A second `install` with an unchanged lockfile does nothing and is quick (no npm, no apt)."""
    require_installed()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "vscode-server.sh"), "install"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "already installed" in done.stderr, done.stderr
    assert shutil.which("rg") is not None
