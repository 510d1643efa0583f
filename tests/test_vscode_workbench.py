"""The VS Code extension in a real workbench: code-server 4.100.3 (VS Code 1.100.3) driven
headless by Debian's chromium through playwright-core (tests/workbench/page.mjs), against a real
hub, a stock Node Yjs teammate and a real Neovim teammate.

Each test starts one code-server and one page (each page load starts an extension host) and
checks what the user sees in the workbench's DOM:

- ``test_vscode_workbench``: the extension says it cannot find ``huddle`` (one actionable
  notification); the workspace gets its ``.venv/bin/huddle``; Join Session with an invite link
  typed into the command palette's input connects (the token in secret storage, not in
  settings); the status bar shows the room; the teammates' cursors and names are drawn; VS Code,
  the Node teammate and Neovim 0.12 (the Huddle plugin, its own ``huddle lsp``) type into the
  same file at once, at its end and its start, and every token ends up exactly once in VS Code,
  Neovim, the Node teammate and the hub; Follow: VS Code's active editor goes to the file and
  the line the followed teammate moves to. With ``HUDDLE_UPDATE_SCREENSHOT=1`` it rewrites the
  README's picture (editor-clients/vscode/workbench.png); a normal run leaves the tree clean.
- ``test_vscode_workbench_ai``: against the real embedded model (SmolLM2 through llama.cpp),
  ghost text appears and Tab inserts exactly what was shown, into the editor and the hub;
  Summarize File and Catch Me Up stream into a document beside the editor under a progress
  notification, and the result stays shown.
- ``test_vscode_workbench_hub_restart``: the hub stops (same data dir and port kept); the status
  bar says so; what the user types meanwhile and after the hub is back reaches it exactly once.

Installed by ``scripts/vscode-server.sh install`` (``./dev setup`` and ``./dev test`` run it) and
``scripts/neovim.sh install``; when something is missing the test fails and says what, it never
skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from huddle.collab.schema import file_texts
from huddle.llm import LlmConfig
from huddle.protocol import room_url
from huddle.server.config import HubConfig
from huddle.server.hub import Hub
from tests.nvim_plugin.editor import Editor as Neovim
from tests.support.hubs import local_hub
from tests.support.peers import ROOT, NodeClient, eventually, free_port, token
from tests.support.workbench_harness import VSCODE, CodeServer, Page, build_vsix, require_installed

ROOM = "team/workbench"
FILE = "app.py"
NEOVIM = "0.12"
# The README's picture; rewritten only when asked, so a test run leaves the tree clean.
SCREENSHOT = VSCODE / "workbench.png"
# Bounds, not guesses: each wait ends as soon as its condition holds.
MODEL_TIMEOUT = 90.0  # the embedded model starts at the first AI request, on a busy machine


@pytest.fixture
async def workbench(tmp_path: Path) -> AsyncIterator[CodeServer]:
    require_installed()
    vsix = build_vsix()
    async with CodeServer(tmp_path / "code", vsix) as server:
        yield server


def _neovim_installed() -> None:
    nvim = ROOT / ".cache" / "neovim" / NEOVIM / "nvim"
    if not nvim.exists():
        raise AssertionError(
            f"Neovim {NEOVIM} is not installed ({nvim}): run scripts/neovim.sh install"
        )


def _room_text(hub: Hub, path: str = FILE) -> str | None:
    room = hub.room(ROOM)
    return None if room is None else file_texts(room.doc).get(path)


def _workspace(tmp_path: Path, files: dict[str, str], *, venv: bool = True) -> Path:
    ws = tmp_path / "ws"
    for path, text in files.items():
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text(text)
    if venv:  # Huddle installed into the workspace's .venv, as a user does
        (ws / ".venv" / "bin").mkdir(parents=True)
        (ws / ".venv" / "bin" / "huddle").symlink_to(ROOT / ".venv" / "bin" / "huddle")
    return ws


@contextlib.asynccontextmanager
async def _page(
    workbench: CodeServer,
    ws: Path,
    tmp_path: Path,
    more: Callable[[], Awaitable[str]] | None = None,
) -> AsyncIterator[Page]:
    """The workbench opened on ``ws``; a failure prints a screenshot's path, the Huddle output
    channel, code-server's log and ``more`` (a teammate's diagnostics)."""
    async with Page(f"{workbench.url}/?folder={ws}") as page:
        try:
            await page.request("goto")
            yield page
        except BaseException:
            failure = tmp_path / "failure.png"
            with contextlib.suppress(Exception):  # the original failure is what matters
                await page.request("screenshot", timeout=30, path=str(failure))
            print(f"screenshot of the failure: {failure}")
            with contextlib.suppress(Exception):
                groups = (await page.request("groups", timeout=10))["groups"]
                print(f"--- editor groups ---\n{json.dumps(groups, ensure_ascii=False)[-4000:]}")
            print("--- Huddle output channel ---\n" + workbench.extension_log()[-6000:])
            print("--- code-server ---\n" + workbench.log()[-3000:])
            if more is not None:
                with contextlib.suppress(Exception):
                    print((await asyncio.wait_for(more(), 10))[-4000:])
            raise


async def _join(page: Page, hub_url: str, invite_token: str) -> str:
    """Join Session with an invite link typed into the palette's input; the status bar's text."""
    # The extension's status item shows once it is active, and its commands with it.
    await page.request("statusMatch", pattern="^\\s*(solo|Huddle)\\b", timeout=120)
    await page.request("palette", title="Huddle: Join Session")
    await page.request("answer", text=room_url(hub_url, ROOM, invite_token))
    status = await page.request("status", text=ROOM, timeout=120)
    assert "connecting" not in status["text"] and "offline" not in status["text"], status
    return str(status["text"])


async def _editor_lines(page: Page) -> list[str]:
    lines: list[str] = (await page.request("text"))["lines"]
    return lines


def _offset(text: str, line: int) -> int:
    """The index of the start of 1-based ``line`` (ASCII text: UTF-16 and code points agree)."""
    return sum(len(x) + 1 for x in text.split("\n")[: line - 1])


@pytest.mark.timeout(420)
async def test_vscode_workbench(
    hub: Hub, data_dir: Path, tmp_path: Path, workbench: CodeServer
) -> None:
    _neovim_installed()
    long_py = "".join(f"def step_{n}():\n    return {n}\n" for n in range(100))
    ws = _workspace(tmp_path, {FILE: "a\nb\n", "long.py": long_py}, venv=False)
    otto = Neovim("otto", NEOVIM, tmp_path)

    async def otto_diagnostics() -> str:
        return await otto.diagnostics()

    try:
        async with _page(workbench, ws, tmp_path, otto_diagnostics) as page:
            await _scenario(hub, data_dir, ws, workbench, page, otto, long_py)
    finally:
        await otto.stop()


async def _scenario(
    hub: Hub,
    data_dir: Path,
    ws: Path,
    workbench: CodeServer,
    page: Page,
    otto: Neovim,
    long_py: str,
) -> None:
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
    await _join(page, hub.url, invite_token)
    settings = (ws / ".vscode" / "settings.json").read_text()
    assert ROOM in settings and invite_token not in settings, (
        f"the token must stay out of settings: {settings}"
    )
    channel = workbench.extension_log()
    assert "(workspace .venv)" in channel, (
        f"the server should come from the workspace's .venv:\n{channel}"
    )

    # long.py goes into the room too (for Follow, below), then back to app.py.
    await page.request("open", file="long.py")
    await eventually(lambda: _room_text(hub, "long.py") == long_py, timeout=60, what="long.py")
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

    # Neovim joins with the Huddle plugin (its own `huddle lsp`); its disk copy is stale, the
    # room's text wins.
    otto.write(FILE, "otto's old copy\n")
    await otto.start()
    await otto.setup(
        hub=hub.url, room=ROOM, token=token(data_dir, ROOM, "otto"), cmd=otto.lsp_cmd()
    )
    await otto.nvim.command(f"edit {FILE}")
    await otto.wait_connected(ROOM)

    async def otto_has(lines: list[str]) -> bool:
        return await otto.lines() == lines

    await otto.wait("the room's app.py in Neovim", lambda: otto_has(["a", "b"]))

    async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "nina")) as nina:
        await nina.wait_event("synced")
        # (c) Teammates' cursors and names, drawn in the editor.
        await nina.request("cursor", file=FILE, index=2, user={"name": "nina", "color": "#e5534b"})
        drawn = await page.request("decoration", name="nina", timeout=60)
        assert drawn["found"], drawn
        await otto.nvim.input("gg")  # a cursor move: the plugin publishes where otto is
        drawn = await page.request("decoration", name="otto", timeout=60)
        assert drawn["found"], drawn

        await _three_type_at_once(hub, page, otto, nina)

        # (d) The README's picture: the room in the status bar, teammates' cursors and names.
        if os.environ.get("HUDDLE_UPDATE_SCREENSHOT"):
            await page.request("palette", title="Notifications: Clear All Notifications")
            await page.request("key", keys=["Control+Home"])
            await page.request("screenshot", path=str(SCREENSHOT))

        await _follow(hub, page, nina, long_py)


async def _three_type_at_once(hub: Hub, page: Page, otto: Neovim, nina: NodeClient) -> None:
    """(b) VS Code types at the end of app.py, character by character; at the same time the Node
    teammate appends whole lines at the end, and Neovim adds whole lines alternately at the end
    and at the start. Every token once everywhere: VS Code, Neovim, the Node client, the hub."""
    await page.request("key", keys=["Control+End"])
    mine = [f"v{i}x" for i in range(8)]
    theirs = [f"n{i}y" for i in range(8)]
    ottos = [f"m{i}z" for i in range(8)]

    async def nina_types() -> None:
        for word in theirs:
            await nina.request("append", file=FILE, text=f"{word}\n")
            await asyncio.sleep(0.06)  # a typist's pace, not a wait for anything

    async def otto_types() -> None:
        for i, word in enumerate(ottos):
            at = "-1, -1" if i % 2 == 0 else "0, 0"  # after the last line / before the first
            await otto.lua(f"vim.api.nvim_buf_set_lines(0, {at}, true, {{...}})", word)
            await asyncio.sleep(0.07)

    await asyncio.gather(
        page.request("type", text="".join(f"{w}\n" for w in mine), delay=25),
        nina_types(),
        otto_types(),
    )

    async def texts() -> dict[str, str | None]:
        nvim_lines = await otto.lines()
        hub_text = _room_text(hub)
        return {
            "hub": hub_text,
            "nina": (await nina.files()).get(FILE),
            # Monaco draws a final newline as a last, empty line; Neovim keeps it out of its
            # lines ('eol').
            "vscode": "\n".join(await _editor_lines(page)),
            "neovim": "\n".join(nvim_lines)
            + ("\n" if hub_text and hub_text.endswith("\n") else ""),
        }

    async def converged() -> bool:
        found = await texts()
        return found["hub"] is not None and len(set(found.values())) == 1

    try:
        await eventually(converged, timeout=60, what="VS Code, Neovim, Node and the hub to agree")
    except AssertionError:
        found = await texts()
        hub_text = found["hub"] or ""
        doubled = {w: n for w in mine + theirs + ottos if (n := hub_text.count(w)) > 1}
        raise AssertionError(
            (f"text duplicated (word: copies in the hub) {doubled}; " if doubled else "")
            + "did not converge:\n"
            + "\n".join(f" {k}: {v!r}" for k, v in found.items())
        ) from None
    final = _room_text(hub)
    assert final is not None
    # The teammates' tokens arrive whole, once each. The keyboard's words are typed one
    # character at a time at the very place where the others append, so a teammate's line may
    # land inside one of them: without the teammates' tokens, the characters other than line
    # breaks are exactly the file's and the keyboard's, in order, and no line break is lost or
    # doubled.
    rest = final
    for word in theirs + ottos:
        assert final.count(word) == 1, f"{word} {final.count(word)} times in {final!r}"
        rest = rest.replace(word, "", 1)
    assert rest.replace("\n", "") == "ab" + "".join(mine), f"typed text lost or doubled: {final!r}"
    assert final.count("\n") == 2 + len(mine) + len(theirs) + len(ottos), (
        f"line breaks lost or doubled: {final!r}"
    )


async def _follow(hub: Hub, page: Page, nina: NodeClient, long_py: str) -> None:
    """(e) Follow nina: VS Code's active editor goes where she goes, file and line."""
    await page.request("palette", title="Huddle: Follow Teammate")
    await page.request("answer", text="nina")
    await page.request("status", text="nina")  # the status bar says whom we follow
    user = {"name": "nina", "color": "#e5534b"}
    far = 150  # far below what the editor shows of long.py at first
    await nina.request("cursor", file="long.py", index=_offset(long_py, far), user=user)
    await page.request("follows", tab="long.py", line=far)
    near = 12
    await nina.request("cursor", file="long.py", index=_offset(long_py, near), user=user)
    await page.request("follows", tab="long.py", line=near)
    app = _room_text(hub)
    assert app is not None
    last = app.count("\n")
    await nina.request("cursor", file=FILE, index=_offset(app, last), user=user)
    await page.request("follows", tab=FILE, line=last)
    await page.request("palette", title="Huddle: Stop Following")
    # The status bar item reads "ROOM 2" (two teammates; icons have no text), "nina" gone.
    await page.request("statusMatch", pattern=f"{re.escape(ROOM)}(?![\\s\\S]*nina)")


@pytest.fixture
async def model_hub(data_dir: Path) -> AsyncIterator[Hub]:
    """The hub with its default AI, the embedded model (started at the first request)."""
    llm = LlmConfig(summary_max_tokens=48)
    async with local_hub(data_dir, llm=llm) as running:
        yield running


@pytest.mark.timeout(300)
async def test_vscode_workbench_ai(
    model_hub: Hub, data_dir: Path, tmp_path: Path, workbench: CodeServer
) -> None:
    source = "def add(a, b):\n    return \n"
    ws = _workspace(tmp_path, {"calc.py": source})
    # Ghost text is off in the harness's user settings (nothing may turn typing into something
    # else); this workspace turns it on, and asks for one line at a time.
    (ws / ".vscode").mkdir()
    (ws / ".vscode" / "settings.json").write_text(
        json.dumps({"editor.inlineSuggest.enabled": True, "huddle.completionScope": "line"})
    )
    async with _page(workbench, ws, tmp_path) as page:
        await _join(page, model_hub.url, token(data_dir, ROOM, "vera"))
        await page.request("open", file="calc.py")
        await eventually(
            lambda: _room_text(model_hub, "calc.py") == source, timeout=60, what="calc.py shared"
        )

        # (f) Ghost text at the end of "    return a"; Tab inserts exactly what was shown.
        await page.request("key", keys=["Control+Home", "ArrowDown", "End"])
        await page.request("type", text="a", delay=0)
        typed = "def add(a, b):\n    return a\n"
        await eventually(
            lambda: _room_text(model_hub, "calc.py") == typed, timeout=30, what="the typed a"
        )
        ghost = await _ghost(page)
        assert ghost.strip(), f"blank ghost text {ghost!r}"
        await page.request("key", keys=["Tab"])
        accepted = typed.replace("return a", "return a" + ghost, 1)
        await page.request("waitText", lines=accepted.split("\n"))
        await eventually(
            lambda: _room_text(model_hub, "calc.py") == accepted,
            timeout=30,
            what=f"the accepted {ghost!r} in the hub",
        )
        print(f"ghost text accepted: {ghost!r}")

        # (g) Summarize File and Catch Me Up: progress shown, text streamed, result shown.
        await _summary(
            page,
            command="Huddle: Summarize File",
            progress="Huddle: summarising the file",
            tab="Summary calc.py",
            expect="# Summary: calc.py",
        )
        # Catching up is on what teammates changed: nina adds a function.
        async with NodeClient(model_hub.url, ROOM, token(data_dir, ROOM, "nina")) as nina:
            await nina.wait_event("synced")
            added = accepted + "\ndef sub(a, b):\n    return a - b\n"
            await nina.request("append", file="calc.py", text=added[len(accepted) :])
            await page.request("waitText", lines=added.split("\n"))
        await _summary(
            page,
            command="Huddle: Catch Me Up",
            progress="Huddle: catching up",
            tab="Catch me up",
            expect="nina",
        )


async def _ghost(page: Page) -> str:
    """The ghost text VS Code shows. Typing may ask for it, but VS Code 1.100 sent no request
    after the typed character in most runs here (its trace shows none), so when none shows the
    user asks from the palette, as many do; a bounded number of times, for a blank answer."""
    for attempt in range(4):
        if attempt:
            await page.request("palette", title="Trigger Inline Suggestion")
        try:
            shown = await page.request("ghost", timeout=8 if attempt == 0 else MODEL_TIMEOUT)
        except AssertionError:
            continue
        print(f"ghost text after {attempt} request(s) from the palette")
        return str(shown["text"])
    raise AssertionError("no ghost text after typing and 3 requests from the palette")


async def _summary(page: Page, *, command: str, progress: str, tab: str, expect: str) -> None:
    """Run a summary command; its progress notification and its streamed text must have been
    shown, and the finished summary stays shown beside the editor."""
    await page.request("record")
    await page.request("palette", title=command)

    def shown(log: list[dict[str, Any]], done: bool) -> list[list[str]]:
        return [
            g["lines"]
            for entry in log
            for g in entry["groups"]
            if tab in (g["tab"] or "")
            and done != any("Asking the model" in ln or "…writing" in ln for ln in g["lines"])
        ]

    async def finished() -> bool:
        groups = (await page.request("groups"))["groups"]
        return any(
            tab in (g["tab"] or "")
            and not any("Asking the model" in ln or "…writing" in ln for ln in g["lines"])
            and any(expect in ln for ln in g["lines"])
            for g in groups
        )

    await eventually(finished, timeout=MODEL_TIMEOUT, what=f"{command}: the finished summary")
    # The document's last lines may be out of view: the command has ended when its progress
    # notification has (the hub has then let go of the summary: one at a time per member).
    await page.request("toastGone", text=progress, timeout=MODEL_TIMEOUT)
    log: list[dict[str, Any]] = (await page.request("recorded"))["log"]
    toasts = [t for entry in log for t in entry["toasts"] if progress in t["text"]]
    assert any(t["progress"] for t in toasts), f"{command}: no progress notification {toasts}"
    writing = [lines for lines in shown(log, done=False) if any("…writing" in ln for ln in lines)]
    assert writing, f"{command}: the text did not stream ({len(log)} states recorded)"
    final = shown(log, done=True)[-1]
    print(f"{command}: {len(writing)} streamed states, then:\n" + "\n".join(final))


@pytest.mark.timeout(300)
async def test_vscode_workbench_hub_restart(
    data_dir: Path, tmp_path: Path, workbench: CodeServer
) -> None:
    config = HubConfig(port=free_port(), data_dir=data_dir)
    ws = _workspace(tmp_path, {"notes.txt": "one\n"})
    hub = Hub(config)
    await hub.__aenter__()
    running = True
    try:
        async with _page(workbench, ws, tmp_path) as page:
            await _join(page, hub.url, token(data_dir, ROOM, "vera"))
            await page.request("open", file="notes.txt")
            await eventually(
                lambda: _room_text(hub, "notes.txt") == "one\n", timeout=60, what="notes.txt"
            )

            # (h) The hub stops; the status bar says so; the user keeps typing.
            running = False
            await hub.__aexit__(None, None, None)
            stopped = await page.request(
                "statusMatch", pattern=f"{re.escape(ROOM)}\\s*\\((reconnecting|offline)\\)"
            )
            await page.request("key", keys=["Control+End"])
            await page.request("type", text="offline edit\n", delay=10)
            await page.request("waitText", lines=["one", "offline edit", ""])

            hub = Hub(config)  # the same port and data dir
            await hub.__aenter__()
            running = True
            connected = await page.request(
                "statusMatch", pattern=f"{re.escape(ROOM)}(?![\\s\\S]*\\()", timeout=60
            )
            print(f"status bar: {stopped['text']!r}, then {connected['text']!r}")
            await page.request("type", text="back online\n", delay=10)
            expected = "one\noffline edit\nback online\n"
            await eventually(
                lambda: _room_text(hub, "notes.txt") == expected,
                timeout=30,
                what=f"{expected!r} in the hub",
            )
            # The positive event: a teammate's later edit arrives, and nothing else changed.
            async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "nina")) as nina:
                await nina.wait_event("synced")
                await nina.request("insert", file="notes.txt", index=0, text="M\n")
                await page.request(
                    "waitText", lines=["M", "one", "offline edit", "back online", ""]
                )
                assert (await nina.files())["notes.txt"] == "M\n" + expected
            assert _room_text(hub, "notes.txt") == "M\n" + expected
    finally:
        if running:
            await hub.__aexit__(None, None, None)


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
