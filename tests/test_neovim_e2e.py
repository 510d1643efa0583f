"""Real Neovim (Debian's 0.7.2, 0.10.4 and 0.12.4), each running `huddle lsp`, sharing a file
through the hub.

The main test is the issue's: two headless Neovims type 300 random edits each at 10-30 ms
intervals into the same file; the final buffers equal each other and the hub's copy. Editor
``a`` opens the file first and seeds the room; editor ``b`` opens a stale copy from its own
workspace, so the room's text wins and reaches it as a versioned ``workspace/applyEdit``. Once
both buffers hold the room's text, both start typing at once.

Edits insert and delete characters (``é``, ``中``, ``😀``, line breaks, ...) at random places.
Half the inserts carry a *mark*, a character used nowhere else (editor a: U+3400 and up,
3 UTF-8 bytes; editor b: U+20000 and up, 4 UTF-8 bytes, a UTF-16 surrogate pair). The marks
say exactly what the merged document must hold: every mark of the initial text or inserted by
either editor, minus those either editor deleted, each exactly once. A lost edit or a doubled
insert (an echo taken for typing) shows. Marks are single characters on purpose: Neovim reports
a change as the span between the old and new line's common prefix and suffix, so a
multi-character token typed next to a similar one reaches the server shifted, and a
concurrent deletion may legitimately cut it apart (see tests/nvim/fuzz.lua).

The other tests pin down, deterministically, the Neovim behaviours the random test runs into.

Each Neovim runs tests/nvim/fuzz.lua (its header describes the file protocol with this module).
To investigate a failure: HUDDLE_E2E_TAP=1 records every LSP message of each editor (JSON lines,
through tests/nvim/lsp_tap.py) and every state of its buffer (a journal) under the test's
tmp_path; HUDDLE_E2E_NVIM_LOG=debug turns on Neovim's own lsp.log. `huddle lsp` always logs at
debug level to its own stderr file there.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.hub import Hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually, token

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "neovim.sh"
FUZZ = ROOT / "tests" / "nvim" / "fuzz.lua"
VERSIONS = ["0.7", "0.10", "0.12"]

ROOM = "team/nvim-e2e"
FILE = "src/notes.txt"
EDITS = 300
# Marks: the initial text's (Cyrillic, 2 UTF-8 bytes), a's and b's; see tests/nvim/fuzz.lua.
MARK_RANGES = ((0x0410, 0x042F), (0x3400, 0x4DBF), (0x20000, 0x2A6DF))
MARK_BASES = {"a": 0x3400, "b": 0x20000}
INITIAL = "".join(f"line {chr(0x0410 + k)} héllo 中文 😀 ß\n" for k in range(12))
STALE = "stale copy on the editor's disk\n"

# Bounds, not guesses: each wait ends as soon as its condition holds.
START_TIMEOUT = 30.0
EDIT_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 30.0
SETTLE_TIMEOUT = 15.0
EXIT_TIMEOUT = 20.0
# After convergence a teammate adds this line at the top: every copy must then hold exactly it
# plus what they agreed on. An echo fed back as new typing would have changed the text by then.
BARRIER = "# barrier\n"


@pytest.fixture(scope="session")
def neovim_installed() -> None:
    versions = [ROOT / ".cache" / "neovim" / v / "nvim" for v in VERSIONS]
    if not all(v.exists() for v in versions) and (
        shutil.which("apt-get") is None or shutil.which("dpkg") is None
    ):
        pytest.skip("installing Neovim needs apt-get and dpkg (Debian)")
    result = subprocess.run(
        [str(SCRIPT), "install"], capture_output=True, text=True, timeout=540, check=False
    )
    assert result.returncode == 0, f"scripts/neovim.sh install failed:\n{result.stderr}"


def launcher(version: str) -> Path:
    result = subprocess.run(
        [str(SCRIPT), "path", version], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def tail(path: Path, lines: int = 25) -> str:
    """The end of a log, without the websockets frame dumps of `--log-level debug`."""
    if not path.exists():
        return "(none)"
    text = path.read_bytes().decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if "DEBUG websockets" not in line]
    return "\n".join(kept[-lines:])


class Nvim:
    """One headless Neovim running tests/nvim/fuzz.lua against `huddle lsp`."""

    def __init__(
        self,
        name: str,
        version: str,
        base: Path,
        control: Path,
        init_options: dict[str, str],
        *,
        disk_text: str,
        seed: int = 1,
        edits: int = EDITS,
        open_after: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.control = control
        self.home = base / f"nvim-{name}"
        self.workspace = self.home / "ws"
        self.file = self.workspace / FILE
        self.file.parent.mkdir(parents=True)
        self.file.write_bytes(disk_text.encode())
        self.output = self.home / "nvim.out"
        self.lsp_stderr = self.home / "huddle-lsp.log"
        tap = os.environ.get("HUDDLE_E2E_TAP") == "1"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NVIM", "NVIM_APPNAME", "VIMINIT", "MYVIMRC")
            and not key.startswith("HUDDLE_")
        }
        for xdg in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            self.env[xdg] = str(self.home / xdg.lower())
        self.env.update(
            {
                "HUDDLE_E2E_NAME": name,
                "HUDDLE_E2E_FILE": str(self.file),
                "HUDDLE_E2E_ROOT": str(self.workspace),
                "HUDDLE_E2E_CONTROL": str(control),
                "HUDDLE_E2E_PYTHON": sys.executable,
                "HUDDLE_E2E_INIT": json.dumps(init_options),
                "HUDDLE_E2E_EDITS": str(edits),
                "HUDDLE_E2E_MARK_BASE": str(MARK_BASES[name]),
                "HUDDLE_E2E_SEED": str(seed),
                "HUDDLE_E2E_INITIAL_FILE": str(control / "initial.txt"),
                "HUDDLE_E2E_OPEN_AFTER": open_after,
                "HUDDLE_E2E_DEADLINE_MS": "110000",
                "HUDDLE_E2E_LSP_LOG_LEVEL": "debug",
                "HUDDLE_E2E_NVIM_LOG_LEVEL": os.environ.get("HUDDLE_E2E_NVIM_LOG", "warn"),
                "HUDDLE_E2E_LSP_STDERR": str(self.lsp_stderr),
                "HUDDLE_E2E_TAP": str(self.home / "lsp.jsonl") if tap else "",
                "HUDDLE_E2E_JOURNAL": str(self.home / "journal") if tap else "",
                **(extra_env or {}),
            }
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.output.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                str(launcher(self.version)),
                "--headless",
                "--clean",
                "-n",
                "-i",
                "NONE",
                "-c",
                f"luafile {FUZZ}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.workspace,
                env=self.env,
            )

    def control_file(self, suffix: str) -> Path:
        return self.control / f"{self.name}.{suffix}"

    def has(self, suffix: str) -> bool:
        return self.control_file(suffix).exists()

    def read(self, suffix: str) -> bytes:
        return self.control_file(suffix).read_bytes()

    def json(self, suffix: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.read(suffix))
        return data

    def has_ready(self) -> bool:
        return self.has("ready")

    def snapshot(self) -> bytes | None:
        return self.read("snap") if self.has("snap") else None

    def check_running(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(
                f"nvim {self.name} exited early with {self.proc.returncode}\n{self.diagnostics()}"
            )

    def diagnostics(self) -> str:
        error = self.read("error").decode(errors="replace") if self.has("error") else "(none)"
        logs = sorted(str(p) for p in self.home.rglob("lsp.log"))
        return (
            f"--- nvim {self.name} ({self.version}) error file: {error}\n"
            f"--- nvim {self.name} output:\n{tail(self.output, 10)}\n"
            f"--- huddle lsp {self.name} stderr (full: {self.lsp_stderr}):\n"
            f"{tail(self.lsp_stderr)}\n"
            f"--- nvim lsp.log: {logs}\n"
        )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class Scene:
    """The hub, the Neovims of one test and the control folder they share."""

    def __init__(self, hub: Hub, data_dir: Path, tmp_path: Path, initial: str) -> None:
        self.hub = hub
        self.data_dir = data_dir
        self.tmp_path = tmp_path
        self.control = tmp_path / "control"
        self.control.mkdir()
        (self.control / "initial.txt").write_bytes(initial.encode())
        self.editors: list[Nvim] = []

    def options(self, user: str) -> dict[str, str]:
        return {
            "hub": self.hub.url,
            "room": ROOM,
            "user": user,
            "token": token(self.data_dir, ROOM, user),
        }

    def nvim(self, name: str, version: str, user: str, **kw: Any) -> Nvim:
        editor = Nvim(name, version, self.tmp_path, self.control, self.options(user), **kw)
        self.editors.append(editor)
        return editor

    def seeder(self, style: str = "vscode") -> Editor:
        """A scripted LSP editor (tests/support/lsp_editor.py) that puts the file into the room."""
        root = self.tmp_path / "seeder"
        root.mkdir()
        return Editor(root, style=style, init_options=self.options("ann"))

    def signal(self, name: str) -> None:
        (self.control / name).touch()

    def hub_text(self) -> str | None:
        room = self.hub.room(ROOM)
        return None if room is None else file_texts(room.doc).get(FILE)

    def hub_bytes(self) -> bytes | None:
        text = self.hub_text()
        return None if text is None else text.encode()

    def diagnostics(self) -> str:
        return "\n".join(e.diagnostics() for e in self.editors)

    async def wait(self, what: str, timeout: float, check: Callable[[], bool]) -> None:
        """Wait until ``check`` holds; fail early when an editor died, late after ``timeout``,
        with every editor's text and log either way."""

        def alive_and(check: Callable[[], bool] = check) -> bool:
            for editor in self.editors:
                editor.check_running()
            return check()

        try:
            await eventually(alive_and, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.texts()}\n{self.diagnostics()}") from None

    def snapshots_agree(self, expected: bytes | None = None) -> bool:
        texts = {e.snapshot() for e in self.editors}
        return len(texts) == 1 and texts == {expected or self.hub_bytes()} and None not in texts

    def everywhere(self, text: str) -> Callable[[], bool]:
        want = text.encode()
        return lambda: self.hub_bytes() == want and self.snapshots_agree(want)

    async def barrier(self) -> str:
        """A teammate inserts ``BARRIER`` at the top once all agree; returns the text every
        copy then holds, once each does (see BARRIER)."""
        agreed = self.hub_text()
        assert agreed is not None
        async with HubClient(self.hub.url, ROOM, token(self.data_dir, ROOM, "tess")) as tess:
            await asyncio.wait_for(tess.synced.wait(), SETTLE_TIMEOUT)
            text = files(tess.doc)[FILE]
            assert isinstance(text, Text) and str(text) == agreed
            text.insert(0, BARRIER)
            await self.wait(
                "the barrier everywhere", SETTLE_TIMEOUT, self.everywhere(BARRIER + agreed)
            )
        return BARRIER + agreed

    async def settle(self, expected: str, what: str) -> None:
        """Wait until the hub and every buffer hold ``expected``, then past a barrier."""
        await self.wait(what, SETTLE_TIMEOUT, self.everywhere(expected))
        final = await self.barrier()
        await self.quit()
        assert self.hub_text() == final, self.texts()
        for editor in self.editors:
            assert editor.read("result.txt") == final.encode(), self.texts("result.txt")

    async def quit(self) -> None:
        """Ask the editors to write their results and exit; they must exit cleanly."""
        self.signal("quit")
        for editor in self.editors:
            assert editor.proc is not None
            try:
                code = await asyncio.wait_for(editor.proc.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                raise AssertionError(
                    f"nvim {editor.name} did not exit\n{self.diagnostics()}"
                ) from None
            assert code == 0, f"nvim {editor.name} exited {code}\n{self.diagnostics()}"

    async def stop(self) -> None:
        for editor in self.editors:
            await editor.stop()

    def texts(self, suffix: str = "snap") -> str:
        """The hub's text and each buffer's, with a diff where a buffer differs from the hub."""
        hub = self.hub_text()
        lines = [f"--- hub: {hub!r}"]
        for editor in self.editors:
            data = editor.read(suffix) if editor.has(suffix) else None
            text = None if data is None else data.decode(errors="replace")
            if text == hub or text is None or hub is None or len(text) < 200:
                lines.append(f"--- {editor.name} ({suffix}): {text!r}")
                continue
            diff = difflib.unified_diff(
                hub.splitlines(keepends=True), text.splitlines(keepends=True), "hub", editor.name
            )
            lines.append(f"--- {editor.name} ({suffix}) differs from the hub:\n{''.join(diff)}")
        return "\n".join(lines)


def marks(text: str) -> Counter[str]:
    return Counter(c for c in text if any(lo <= ord(c) <= hi for lo, hi in MARK_RANGES))


def names(chars: Any) -> list[str]:
    return sorted(f"U+{ord(c):04X}" for c in chars)


def check_marks(text: str, results: list[dict[str, Any]]) -> None:
    counts = marks(text)
    doubled = {c: n for c, n in counts.items() if n > 1}
    assert not doubled, f"marks present more than once: {names(doubled)} ({doubled})"
    present = set(counts)
    inserted = set(marks(INITIAL))
    deleted: set[str] = set()
    for result in results:
        inserted.update(result["inserted"])
        deleted.update(result["deleted"])
    expected = inserted - deleted
    assert present == expected, (
        f"lost (inserted, never deleted, missing): {names(expected - present)}; "
        f"resurrected (deleted, yet present): {names(present & deleted)}; "
        f"unknown: {names(present - inserted)}"
    )


@pytest.mark.timeout(150)
@pytest.mark.parametrize("version", VERSIONS)
async def test_two_neovims_converge(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    scene = Scene(hub, data_dir, tmp_path, INITIAL)
    seed = sum(map(ord, version))
    a = scene.nvim("a", version, "amy", disk_text=INITIAL, seed=seed)
    b = scene.nvim("b", version, "bob", disk_text=STALE, seed=seed + 1, open_after="open-b")
    try:
        await asyncio.gather(a.start(), b.start())
        await scene.wait(
            "a's buffer to seed the room",
            START_TIMEOUT,
            lambda: a.has("ready") and scene.hub_text() == INITIAL,
        )
        scene.signal("open-b")
        await scene.wait("the room's text to replace b's stale buffer", START_TIMEOUT, b.has_ready)
        scene.signal("go")
        await scene.wait(
            f"both editors to make {EDITS} edits",
            EDIT_TIMEOUT,
            lambda: a.has("done.json") and b.has("done.json"),
        )
        await scene.wait("a, b and the hub to agree", CONVERGE_TIMEOUT, scene.snapshots_agree)
        await scene.barrier()
        await scene.quit()
    finally:
        await scene.stop()

    results = [a.json("result.json"), b.json("result.json")]
    for result in results:
        assert result["nvim"].startswith(version + "."), result["nvim"]
        assert result["edits"] == EDITS
        assert result["invalid"] == 0, f"{result['name']}'s buffer held bytes that are not UTF-8"
        assert len(result["inserted"]) > EDITS // 5
    final = scene.hub_text()
    assert final is not None
    assert a.read("result.txt") == b.read("result.txt") == final.encode(), scene.texts("result.txt")
    assert final.endswith("\n")
    check_marks(final, results)
    print(
        f"nvim {version}: {len(final)} code points, encodings "
        f"{[r['offset_encoding'] for r in results]}, "
        f"{sum(len(r['inserted']) for r in results)} marks inserted, "
        f"{sum(marks(final).values())} remain, repairs {[r['repairs'] for r in results]}"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", VERSIONS)
async def test_idle_neovim_takes_a_remote_edit_in_two_places_once(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    """One remote change in two places reaches Neovim as one ``workspace/applyEdit`` with two
    ``TextEdit``\\ s, which Neovim applies one by one, last first. When its previous
    ``didChange`` is older than its debounce, Neovim sends the first of these buffer changes at
    once (before it answers the request) and the second one debounced: the echo arrives split
    in two notifications. It is still the echo, not typing: each insert must be there once."""
    text = "one\ntwo\nthree\n"
    scene = Scene(hub, data_dir, tmp_path, text)
    nvim = scene.nvim("b", version, "bob", disk_text=STALE, edits=0)
    async with scene.seeder(style="neovim") as ann:
        ann.open(FILE, text)
        await scene.wait("ann to seed the room", START_TIMEOUT, lambda: scene.hub_text() == text)
        try:
            await nvim.start()
            await scene.wait("the room's text in Neovim", START_TIMEOUT, nvim.has_ready)
            scene.signal("go")
            await scene.wait("Neovim's first snapshot", START_TIMEOUT, lambda: nvim.has("snap"))
            # The precondition, not a guess: Neovim's last didChange (the echo of the room's
            # text replacing its stale copy) is older than its 20 ms debounce.
            await asyncio.sleep(0.2)
            ann.type(FILE, len("one"), "1")
            ann.type(FILE, len("one1\ntwo\nthree"), "3")
            await ann.flush()  # one didChange with both changes: one transaction in the room
            await scene.settle("one1\ntwo\nthree3\n", "both inserts, once each")
        finally:
            await scene.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", VERSIONS)
async def test_neovim_typing_before_its_first_didchange_keeps_remote_edits_in_place(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    """Neovim opens a buffer at version 0 and skips a versioned edit for an older version of
    the buffer, except for version 0, which it applies unchecked. The user types (not sent
    yet: Neovim debounces, here for 1 s) while a remote edit arrives, for version 0, the only
    version the server has seen. It must still land where it belongs, once."""
    text = "one\ntwo\n"
    scene = Scene(hub, data_dir, tmp_path, text)
    nvim = scene.nvim(
        "b",
        version,
        "bob",
        disk_text=text,  # the room's text: no edit at open, the buffer stays at version 0
        edits=1,
        extra_env={
            "HUDDLE_E2E_SCRIPTED": json.dumps([[0, 0, 0, 0, "B"]]),  # "Bone"
            "HUDDLE_E2E_DEBOUNCE_MS": "1000",
        },
    )
    async with scene.seeder() as ann:
        ann.open(FILE, text)
        await scene.wait("ann to seed the room", START_TIMEOUT, lambda: scene.hub_text() == text)
        try:
            await nvim.start()
            await scene.wait("the room's text in Neovim", START_TIMEOUT, nvim.has_ready)
            scene.signal("go")
            await scene.wait("bob's keystroke", START_TIMEOUT, lambda: nvim.has("done.json"))
            ann.type(FILE, len("one"), "A")  # "oneA": bob's server has only seen version 0
            await scene.settle("BoneA\ntwo\n", "both edits, in place")
        finally:
            await scene.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", VERSIONS)
async def test_two_neovims_break_the_same_line_at_once(
    neovim_installed: None, hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    """Neovim reports a change that adds a line break as a replacement of the rest of the
    line (``"beta gamma"`` by ``"\\nbeta gamma"``), re-sending text that did not change. Two
    users who break the same line at the same time (each Neovim debounces for 1 s, so neither
    has seen the other's edit) must not get the re-sent text twice."""
    text = "alpha beta gamma\n"
    scene = Scene(hub, data_dir, tmp_path, text)
    for name, user, column in (("a", "amy", len("alpha ")), ("b", "bob", len("alpha beta "))):
        scene.nvim(
            name,
            version,
            user,
            disk_text=STALE,  # the room's text replaces it: the buffer is past version 0
            edits=1,
            extra_env={
                "HUDDLE_E2E_SCRIPTED": json.dumps([[0, column, 0, column, "\n"]]),
                "HUDDLE_E2E_DEBOUNCE_MS": "1000",
            },
        )
    async with scene.seeder() as ann:
        ann.open(FILE, text)
        await scene.wait("ann to seed the room", START_TIMEOUT, lambda: scene.hub_text() == text)
        try:
            await asyncio.gather(*(e.start() for e in scene.editors))
            await scene.wait(
                "the room's text in both Neovims",
                START_TIMEOUT,
                lambda: all(e.has_ready() for e in scene.editors),
            )
            scene.signal("go")
            await scene.settle("alpha \nbeta \ngamma\n", "both line breaks, once each")
        finally:
            await scene.stop()
