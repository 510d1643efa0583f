"""The real-editor fuzzer (issue 13): every kind of editor Huddle supports, in one room, editing
one file at once, at its edges.

In the room, all at the same time:

- Emacs 28 + eglot with editor-clients/emacs/huddle.el (tests/emacs/daemon.py), edited through
  the buffer (``goto-char``, ``delete-region``, ``insert``: tests/emacs/editor_fuzz.el);
- Neovim 0.7, 0.10 and 0.12 with plain LSP (``vim.lsp.start``), and Neovim 0.12 with Huddle's
  plugin (editor-clients/neovim, which sends exact changes), driven over msgpack-RPC
  (tests/nvim_plugin; tests/nvim/editor_fuzz.lua);
- VS Code 1.100.3 in code-server with the extension, joined from an invite link, edited with
  the keyboard in the real workbench (tests/support/workbench_harness.py);
- a stock Node Yjs client (tests/node/editor_fuzz_peer.mjs).

Edits lean toward the ends of the file: appends after the final newline, adding and removing
the final newline, whole-line and whole-buffer operations (delete a line, join, split,
select-all-and-replace), in an LF or a CRLF file, with non-ASCII around them (é, 中, 😀: an
astral character is two UTF-16 code units, one Emacs character, four UTF-8 bytes). Every
inserted token is a unique marker ``<e12>`` (letter: the editor; number: its count), so the
checks are exact:

- every buffer, the Node client and the hub hold the same text (Neovim keeps a final newline
  outside its lines: its text is the hub's plus that newline where the hub's has none);
- every marker is there exactly once, unless a deletion removed it: a marker may be absent
  only if it lay in the range of a deletion some editor made, in the text that editor had
  when it made it, and then it must be absent. Each edit is made on exactly the text it was
  chosen on (Emacs, Neovim and Node compare a change counter before they edit; VS Code cuts
  with Ctrl+X and the clipboard says what went), so the ledger is exact;
- no marker is garbled: with whole markers taken out, no ``<``, ``>``, letter or digit is left,
  but for a marker a user's own edit cut apart (VS Code's keys select a character, or leave the
  cursor, where a teammate's text moved under them: the ``>`` it cut is in its ledger, ``<p5``
  left in the text; its paste went inside ``<p1>``, as its own report shows);
- the text is never longer than everything inserted;
- 0 repairs (huddle lsp's safety net, ``huddle.status``), in every editor's language server.

Edits never start or end inside a marker or between the CR and LF of a CRLF (a user who
splits a marker garbles it; the fuzzer looks for the bridge doing it). VS Code's keyboard
edits are made at places the keys find whatever teammates did meanwhile (the ends of the file,
of a line), for the same reason, and it pastes each token, as the others insert theirs at once:
typed, VS Code reports it a character at a time, and a teammate who had not seen the first
characters could insert between them, as two people typing at one place do.

Long form: ``python -m tests.editor_fuzz --seconds N --seed S``; it prints its figures and
writes them to benchmarks/results/editor-fuzz.json. The short form is
tests/test_editor_fuzz.py. On failure both print the seed, every editor's text and a diff.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import difflib
import json
import random
import re
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huddle.collab.positions import LineIndex, Position
from huddle.collab.schema import file_texts
from huddle.protocol import room_url
from huddle.server.hub import Hub
from tests.emacs.daemon import Emacs, _lisp_string, elisp
from tests.nvim_plugin.editor import Editor as NvimEditor
from tests.support.hubs import local_hub
from tests.support.peers import ROOT, NodeProcess, eventually, token
from tests.support.workbench_harness import CodeServer, Page, build_vsix, require_installed

ROOM = "team/editor-fuzz"
FILE = "fuzz.txt"
RESULTS = ROOT / "benchmarks" / "results" / "editor-fuzz.json"
NVIM_LUA = ROOT / "tests" / "nvim" / "editor_fuzz.lua"
EMACS_EL = ROOT / "tests" / "emacs" / "editor_fuzz.el"
NODE_PEER = ROOT / "tests" / "node" / "editor_fuzz_peer.mjs"
LSP_TAP = ROOT / "tests" / "nvim" / "lsp_tap.py"

MARKER = re.compile(r"<[a-z]\d+>")
PIECE = re.compile(r"[<>a-z0-9]+")  # what is left of a marker cut apart
# Around markers only these: a letter, digit, < or > left over after the markers are taken out
# is a piece of a garbled one.
FILLERS = ["é", "中", "😀", " ", "ß"]
BREAK = re.compile(r"\r\n|\n|\r")
# The initial text: markers of their own ("i"), non-ASCII, a final newline.
INITIAL_LINES = [f"{f}<i{k}>{f}" for k, f in enumerate(["é", "中", "😀", " ", "ß", "中😀"])]

# Kinds of edit and their weights: the ends of the file and whole lines, more than the middle.
WEIGHTS = {
    "append": 10.0,  # at the very end (after the final newline, if any)
    "append_line": 8.0,
    "prepend_line": 4.0,
    "final_newline": 8.0,  # add it, or remove it
    "delete_line": 5.0,
    "join": 5.0,
    "split": 6.0,
    "insert": 16.0,
    "delete": 7.0,
    "replace": 6.0,
    "replace_all": 0.7,  # select all, type something else
}

START_TIMEOUT = 120.0  # everything starts at once on two cores; each wait ends when it holds
CONVERGE_TIMEOUT = 60.0
CAS_TRIES = 8
CUT_REPORT_TIMEOUT = 5.0  # VS Code reports a cut in milliseconds; a bound, not a pause


class FuzzFailure(AssertionError):
    # The run's figures where it got as far as the checks (the long form writes them anyway).
    figures: dict[str, Any] | None = None


# -- the text model ----------------------------------------------------------------------------


def boundaries(text: str) -> list[int]:
    """Offsets (code points) where an edit may start or end: not inside a marker, nor between
    the CR and LF of a CRLF."""
    inside: set[int] = set()
    for m in MARKER.finditer(text):
        inside.update(range(m.start() + 1, m.end()))
    at = text.find("\r\n")
    while at >= 0:
        inside.add(at + 1)
        at = text.find("\r\n", at + 2)
    return [b for b in range(len(text) + 1) if b not in inside]


def lines_of(text: str) -> list[tuple[int, int, int]]:
    """(start, end of content, start of the next line) of each line; the last may be empty."""
    out, start = [], 0
    for m in BREAK.finditer(text):
        out.append((start, m.start(), m.end()))
        start = m.end()
    out.append((start, len(text), len(text)))
    return out


def near_ends(rng: random.Random, n: int) -> int:
    """An index in [0, n), most often among the last or first few."""
    r = rng.random()
    if r < 0.4:
        return n - 1 - rng.randrange(min(n, 4))
    if r < 0.65:
        return rng.randrange(min(n, 4))
    return rng.randrange(n)


def final_break(text: str) -> str:
    for eol in ("\r\n", "\n", "\r"):
        if text.endswith(eol):
            return eol
    return ""


@dataclass
class Edit:
    kind: str
    start: int
    end: int
    text: str


@dataclass
class Ledger:
    """What one editor did."""

    name: str
    tag: str
    count: int = 0  # markers made
    edits: int = 0
    stale: int = 0  # edits chosen on a text that changed before they were made: chosen anew
    inserted: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    # Pieces of markers a deletion took without the rest (VS Code's cuts: keys that select a
    # character while a teammate's text moves under them select what is there then).
    pieces: set[str] = field(default_factory=set)
    # Markers the user's own insert split, at which character (VS Code's paste where a
    # teammate's edit had moved its cursor).
    splits: list[tuple[str, int]] = field(default_factory=list)
    inserted_chars: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    history: list[tuple[float, str, str, str, str]] = field(default_factory=list)

    def marker(self, rng: random.Random) -> str:
        self.count += 1
        pre = rng.choice(FILLERS) if rng.random() < 0.4 else ""
        post = rng.choice(FILLERS) if rng.random() < 0.4 else ""
        return f"{pre}<{self.tag}{self.count}>{post}"

    def lines(self, rng: random.Random, sep: str) -> str:
        return "".join(self.marker(rng) + sep for _ in range(rng.randint(1, 3)))

    def record(self, kind: str, inserted: str, deleted: str, where: str = "") -> None:
        self.history.append((round(time.monotonic(), 3), kind, where, deleted, inserted))
        self.edits += 1
        self.kinds[kind] += 1
        self.inserted += MARKER.findall(inserted)
        self.deleted.update(MARKER.findall(deleted))
        self.pieces.update(PIECE.findall(MARKER.sub("", deleted)))
        # A line break may come back as CRLF (VS Code and Neovim rewrite to their EOL).
        self.inserted_chars += len(inserted) + inserted.count("\n")

    def figures(self) -> dict[str, Any]:
        return {
            "edits": self.edits,
            "stale_choices": self.stale,
            "markers_inserted": len(self.inserted),
            "markers_deleted": len(self.deleted),
            "kinds": dict(sorted(self.kinds.items())),
        }


def choose(
    rng: random.Random, ledger: Ledger, text: str, sep: str, *, keep_final_break: bool = False
) -> Edit | None:
    """A random edit of ``text``; ``sep``: the line break this editor types.
    ``keep_final_break``: the editor cannot delete its final line break (Neovim's ``eol``)."""
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    size = len(text)
    bounds = boundaries(text)
    lines = lines_of(text)
    edit: Edit
    if kind == "append":
        edit = Edit(kind, size, size, ledger.marker(rng))
    elif kind == "append_line":
        body = ledger.marker(rng)
        new = body + sep if final_break(text) or not text else sep + body
        edit = Edit(kind, size, size, new)
    elif kind == "prepend_line":
        edit = Edit(kind, 0, 0, ledger.marker(rng) + sep)
    elif kind == "final_newline":
        eol = final_break(text)
        edit = Edit(kind, size - len(eol), size, "") if eol else Edit(kind, size, size, sep)
    elif kind == "delete_line":
        i = near_ends(rng, len(lines))
        start, _, end = lines[i]
        if (start == end or i == len(lines) - 1) and i > 0:
            start = lines[i - 1][1]  # the last line: with the line break before it
        edit = Edit(kind, start, end, "")
    elif kind == "join":
        if len(lines) < 2:
            return None
        _, content_end, next_start = lines[near_ends(rng, len(lines) - 1)]
        edit = Edit(kind, content_end, next_start, rng.choice(["", " "]))
    elif kind in ("split", "insert"):
        at = bounds[near_ends(rng, len(bounds))]
        edit = Edit(kind, at, at, sep if kind == "split" else ledger.marker(rng))
    elif kind in ("delete", "replace"):
        i = near_ends(rng, len(bounds))
        j = min(len(bounds) - 1, i + rng.randint(1, 4))
        new = ledger.marker(rng) if kind == "replace" else ""
        edit = Edit(kind, bounds[i], bounds[j], new)
    else:
        edit = Edit(kind, 0, size, ledger.lines(rng, sep))
    if keep_final_break:
        eol = final_break(text)
        if edit.end > size - len(eol) and not (edit.start == edit.end == size):
            edit.end = size - len(eol)
            edit.start = min(edit.start, edit.end)
    if edit.start == edit.end and not edit.text:
        return None
    return edit


def _cut_apart(missing: set[str], pieces: set[str], rest: str) -> dict[str, str]:
    """Which of the ``missing`` markers an editor's deletion cut apart, each with what is left
    of it in ``rest`` (the final text without whole markers): the marker is a recorded
    ``piece`` taken out of a remnant that is there (``<p5`` left where a cut took ``>``)."""
    found: dict[str, str] = {}
    for marker in sorted(missing):
        for piece in pieces:
            at = marker.find(piece)
            while at >= 0:
                remnant = marker[:at] + marker[at + len(piece) :]
                if remnant and remnant in rest:
                    found[marker] = remnant
                    break
                at = marker.find(piece, at + 1)
            if marker in found:
                break
    return found


# -- the editors -------------------------------------------------------------------------------


class Peer(ABC):
    """One editor in the room: it reads its text and makes edits, and says what it counted."""

    name: str
    ledger: Ledger
    log_hint: str = ""

    @abstractmethod
    async def text(self) -> str:
        """The editor's text now."""

    def agrees(self, mine: str, hub: str) -> bool:
        return mine == hub

    @abstractmethod
    async def step(self, rng: random.Random) -> None:
        """Make one edit, chosen with ``rng``."""

    async def counters(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


class CasPeer(Peer):
    """An editor that can make an edit only if its text is still the one it was chosen on."""

    sep = "\n"
    keep_final_break = False

    @abstractmethod
    async def view(self) -> tuple[str, Any]:
        """The text, and a token that names this state of it (a change counter, the text)."""

    @abstractmethod
    async def apply(self, token: Any, text: str, edit: Edit) -> bool:
        """Make ``edit`` if the text is still the one ``token`` names; whether it was made."""

    async def text(self) -> str:
        return (await self.view())[0]

    def avoids(self, deleted: str, inserted: str) -> bool:
        """An edit this editor does not make (see NvimPeer). Never one that cuts a marker."""
        return False

    async def step(self, rng: random.Random) -> None:
        for _ in range(CAS_TRIES):
            text, tick = await self.view()
            edit = choose(rng, self.ledger, text, self.sep, keep_final_break=self.keep_final_break)
            if edit is None or self.avoids(text[edit.start : edit.end], edit.text):
                continue
            if await self.apply(tick, text, edit):
                where = f"{edit.start}-{edit.end} of {len(text)}"
                self.ledger.record(edit.kind, edit.text, text[edit.start : edit.end], where)
                return
            self.ledger.stale += 1
            # The markers of an edit never made are never used: numbers stay unique.


class NodePeer(CasPeer, NodeProcess):
    """A stock yjs + y-websocket client (tests/node/editor_fuzz_peer.mjs)."""

    what = "the node peer"

    def __init__(self, url: str, tok: str) -> None:
        NodeProcess.__init__(self)
        self.name = "node"
        self.ledger = Ledger("node", "y")
        self.args = [url, ROOM, tok]
        self.synced = asyncio.Event()

    async def start(self) -> None:
        await self.spawn(NODE_PEER, *self.args)
        await asyncio.wait_for(self.synced.wait(), 30)

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "synced":
            self.synced.set()

    async def view(self) -> tuple[str, Any]:
        text = (await self.request("get", file=FILE))["text"]
        return text, text

    async def apply(self, token: Any, text: str, edit: Edit) -> bool:
        def units(offset: int) -> int:  # code points -> UTF-16 code units, as Yjs counts
            return len(text[:offset].encode("utf-16-le")) // 2

        reply = await self.request(
            "edit",
            file=FILE,
            expect=text,
            start=units(edit.start),
            end=units(edit.end),
            text=edit.text,
        )
        return bool(reply["applied"])

    async def close(self) -> None:
        await self.stop()
        self._reader.cancel()


class EmacsPeer(CasPeer):
    def __init__(self, emacs: Emacs, path: Path, log: Path) -> None:
        self.name = "emacs"
        self.ledger = Ledger("emacs", "e")
        self.emacs = emacs
        self.path = path
        self.log_hint = str(log)

    @staticmethod
    def _parse(answer: str) -> tuple[str, int]:
        tick, b64 = _lisp_string(answer).split(" ", 1)
        return base64.b64decode(b64).decode("utf-8"), int(tick)

    async def view(self) -> tuple[str, Any]:
        return self._parse(await self.emacs.eval(f"(editor-fuzz-view {elisp(str(self.path))})"))

    async def apply(self, token: Any, text: str, edit: Edit) -> bool:
        b64 = base64.b64encode(edit.text.encode()).decode()
        answer = await self.emacs.eval(
            f"(editor-fuzz-apply {elisp(str(self.path))} {token} {edit.start} {edit.end} "
            f"{elisp(b64)})"
        )
        return _lisp_string(answer) != "stale"

    async def counters(self) -> dict[str, Any]:
        answer = await self.emacs.eval(f"(editor-fuzz-server-status {elisp(str(self.path))})")
        repairs, requests = _lisp_string(answer).split()
        return {"repairs": int(repairs), "apply_edits": int(requests)}


class NvimPeer(CasPeer):
    """Neovim over msgpack-RPC; its text is its lines joined by its fileformat's line break,
    plus one more where 'eol' is set (what it reports over LSP)."""

    def __init__(self, editor: NvimEditor, tag: str, plugin: bool) -> None:
        self.editor = editor
        self.name = f"nvim-{editor.version}" + ("-plugin" if plugin else "")
        self.ledger = Ledger(self.name, tag)
        self.keep_final_break = True
        self.plugin = plugin
        self.log_hint = str(editor.lsp_log)

    def avoids(self, deleted: str, inserted: str) -> bool:
        """What plain LSP cannot promise (docs/bridge.md, Limitations: readings; replacements
        are not re-read): Neovim reports a replacement as the narrowest diff of the lines, so
        replacing ``<b5> <a4>`` by ``<b7>`` reaches huddle lsp as ``5> <a4`` replaced by
        ``7``. The bridge feeds it as reported, so the CRDT keeps the old ``<b`` and ``>``
        around the new ``7``, and a teammate's concurrent insert after the old ``<b5>`` lands
        inside: ``<b7<c3>>``. Plain Neovim makes no replacement whose deleted and inserted
        texts share a first or a last character. With the plugin (exact changes through
        ``huddle/changes``) it makes every replacement."""
        if not deleted or not inserted or self.plugin:
            return False
        return deleted[0] == inserted[0] or deleted[-1] == inserted[-1]

    async def _view(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.editor.lua("return EditorFuzz.view()")
        return result

    def _text(self, view: dict[str, Any]) -> str:
        self.sep = "\r\n" if view["ff"] == "dos" else "\n"
        lines: list[str] = view["lines"]
        return self.sep.join(lines) + (self.sep if view["eol"] else "")

    async def view(self) -> tuple[str, Any]:
        view = await self._view()
        return self._text(view), view

    def agrees(self, mine: str, hub: str) -> bool:
        return mine == hub or (not final_break(hub) and mine == hub + self.sep)

    async def apply(self, token: Any, text: str, edit: Edit) -> bool:
        view: dict[str, Any] = token
        lines: list[str] = view["lines"]

        def position(offset: int) -> tuple[int, int]:
            start = 0
            for row, line in enumerate(lines):
                if offset <= start + len(line):
                    return row, len(line[: offset - start].encode())
                start += len(line) + len(self.sep)
            return len(lines), 0  # after the final line break: new lines

        (r1, c1), (r2, c2) = position(edit.start), position(edit.end)
        new = edit.text
        if r1 == len(lines) and new.endswith(self.sep):
            new = new[: -len(self.sep)]  # appended lines end with the 'eol' line break
        result = await self.editor.lua(
            "return EditorFuzz.apply(...)", view["tick"], r1, c1, r2, c2, new.split(self.sep)
        )
        return result is not None

    async def counters(self) -> dict[str, Any]:
        status = await self.editor.lua("return EditorFuzz.server_status()")
        applies = await self.editor.lua("return EditorFuzz.apply_edits")
        return {
            "repairs": status["repairs"] if isinstance(status, dict) else None,
            "apply_edits": applies,
        }

    async def close(self) -> None:
        await self.editor.stop()


class VSCodePeer(Peer):
    """The real workbench, edited with the keyboard. Its edits are made where the keys land
    whatever teammates did meanwhile (the ends of the file and of lines, whole lines), and every
    deletion is a cut, whose deletion VS Code itself reports: what it removed is read from that
    report (the clipboard is not enough: a teammate's text inserted at the edge of the selection
    between the keys and the cut is cut too, as VS Code grows a selection at its edges, while
    the clipboard held only what was selected before, seed 4006)."""

    def __init__(self, page: Page, server: CodeServer, tap: Path) -> None:
        self.name = "vscode"
        self.ledger = Ledger("vscode", "v")
        self.page = page
        self.server = server
        self.tap = tap
        self.log_hint = str(tap)
        self._tap_read = 0  # bytes of the tap read so far
        self._buffer: LineIndex | None = None  # VS Code's text, replayed from its reports
        # Each didChange since: (deleted, inserted) per change.
        self._reports: list[list[tuple[str, str]]] = []

    async def edit(self, keys: list[str], inserted: str = "") -> str:
        """Press ``keys``, then type ``inserted`` where they left the cursor, in one request to
        the page (a teammate's edit between the two would move the cursor: tests/workbench/
        page.mjs fuzzEdit); what the clipboard held after the keys (what a Ctrl+X cut). Tokens
        are pasted, line breaks typed with Enter."""
        pieces = [p for p in re.split(r"(\n)", inserted) if p]
        reply = await self.page.request("fuzzEdit", keys=keys, pieces=pieces)
        text: str = reply["text"]
        return text

    async def text(self) -> str:
        self._follow()  # the ledger learns of the last edits' reports (a split it made)
        return await self.edit(["Control+KeyA", "Control+KeyC"])

    async def step(self, rng: random.Random) -> None:
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        k = rng.randint(0, 3)
        nav = (
            ["Control+End"] + ["ArrowUp"] * k
            if rng.random() < 0.6
            else ["Control+Home"] + ["ArrowDown"] * k
        )
        edge = rng.choice(["Home", "End"])
        ledger = self.ledger
        inserted, keys, cut = "", [], False
        if kind == "append":
            inserted = ledger.marker(rng)
            keys = ["Control+End"]
        elif kind == "append_line":
            inserted = ledger.marker(rng) + "\n"
            keys = ["Control+End"]
        elif kind == "prepend_line":
            inserted = ledger.marker(rng) + "\n"
            keys = ["Control+Home"]
        elif kind == "final_newline":
            if rng.random() < 0.5:
                inserted = "\n"
                keys = ["Control+End"]
            else:  # the line break before the last line (the final newline, if there is one)
                # A cut, not Backspace: a teammate's text that arrives at the end between the
                # keys moves the cursor past it, and the clipboard then says what went.
                keys, cut = ["Control+End", "Home", "Shift+ArrowLeft", "Control+KeyX"], True
        elif kind == "delete_line":
            keys, cut = [*nav, "Control+KeyX"], True  # no selection: the whole line
        elif kind == "join":
            keys, cut = [*nav, "End", "Shift+ArrowRight", "Control+KeyX"], True
        elif kind == "split":
            inserted = "\n"
            keys = [*nav, edge]
        elif kind == "insert":
            inserted = ledger.marker(rng)
            keys = [*nav, edge]
        elif kind in ("delete", "replace"):
            keys, cut = [*nav, "Home", "Shift+End", "Control+KeyX"], True
            if kind == "replace":
                inserted = ledger.marker(rng)
        else:
            keys, cut = ["Control+KeyA", "Control+KeyX"], True
            inserted = ledger.lines(rng, "\n")
        self._follow()
        mark = len(self._reports)
        clipboard = await self.edit(keys, inserted)
        deleted = await self._cut(mark, clipboard) if cut and clipboard else ""
        ledger.record(kind, inserted, deleted)

    def _follow(self) -> None:
        """Replay VS Code's reports of the file that reached the tap since the last call."""
        if not self.tap.exists():
            return
        with self.tap.open("rb") as tap:
            tap.seek(self._tap_read)
            data = tap.read()
        complete = data.rfind(b"\n") + 1
        self._tap_read += complete
        for line in data[:complete].decode("utf-8").splitlines():
            msg: dict[str, Any] = json.loads(line)["msg"]
            if not isinstance(msg, dict) or not isinstance(msg.get("params"), dict):
                continue
            params = msg["params"]
            document = params.get("textDocument")
            if not isinstance(document, dict) or not document["uri"].endswith("/" + FILE):
                continue
            if msg.get("method") == "textDocument/didOpen":
                self._buffer = LineIndex(document["text"])
            elif msg.get("method") == "textDocument/didChange" and self._buffer is not None:
                self._reports.append([self._apply(c) for c in params["contentChanges"]])

    def _apply(self, change: dict[str, Any]) -> tuple[str, str]:
        buffer = self._buffer
        assert buffer is not None
        start, end = (
            buffer.offset_at(Position(change["range"][k]["line"], change["range"][k]["character"]))
            for k in ("start", "end")
        )
        deleted = buffer.slice(start, end)
        if f"<{self.ledger.tag}" in change["text"]:  # the user's own paste (only it has them)
            lo = max(0, start - 8)
            for m in MARKER.finditer(buffer.slice(lo, min(len(buffer), start + 8))):
                if lo + m.start() < start < lo + m.end():
                    # VS Code moved the cursor into a teammate's token between the keys and the
                    # paste (it applies a replacement as its smallest changes, and the cursor
                    # stays among them): the user split it, as a user may.
                    self.ledger.splits.append((m.group(), start - lo - m.start()))
        buffer.replace(start, end, change["text"])
        return deleted, change["text"]

    async def _cut(self, mark: int, clipboard: str) -> str:
        """What a cut that put ``clipboard`` on the clipboard deleted: the first deletion VS
        Code reported after ``mark`` on its own (one change, nothing inserted) that holds the
        clipboard's text (more, where a teammate's text landed at the edge of the selection
        before the cut). Else the clipboard's text and every such deletion reported meanwhile:
        a teammate who deleted part of the selection first shrank it, and its ledger has what
        it took; a teammate who replaced the selected line between the selection and the cut
        (VS Code deletes the selection in a timer after filling the clipboard) had its new text
        cut, which the clipboard never held (seed 1133397280: ``<p4> `` cut, ``<a3>ß <v2><p2>
        `` on the clipboard). A teammate's deletion among them is one its own ledger has too."""
        wanted = BREAK.sub("\n", clipboard)
        found: list[str] = []
        deletions: list[str] = []

        def reported() -> bool:
            self._follow()
            deletions.clear()
            for changes in self._reports[mark:]:
                if len(changes) != 1:
                    continue
                deleted, inserted = changes[0]
                if inserted or not deleted:
                    continue
                if wanted in BREAK.sub("\n", deleted):
                    found.append(deleted)
                    return True
                deletions.append(deleted)
            return False

        with contextlib.suppress(AssertionError):
            await eventually(reported, timeout=CUT_REPORT_TIMEOUT, what="VS Code's cut")
        return found[0] if found else "\n".join([clipboard, *deletions])

    async def counters(self) -> dict[str, Any]:
        # "Huddle: Show Status" asks huddle lsp for huddle.status; its answer is in the tap.
        await self.page.request("palette", title="Huddle: Show Status")
        await eventually(lambda: self._status() is not None, timeout=20, what="VS Code's status")
        await self.page.request("key", keys=["Escape"])
        status = self._status()
        assert status is not None
        return {"repairs": status["repairs"], "apply_edits": self._count("workspace/applyEdit")}

    def _messages(self) -> list[dict[str, Any]]:
        if not self.tap.exists():
            return []
        out = []
        for line in self.tap.read_text(encoding="utf-8").splitlines():
            msg = json.loads(line).get("msg")
            if isinstance(msg, dict):
                out.append(msg)
        return out

    def _status(self) -> dict[str, Any] | None:
        found = None
        for msg in self._messages():
            result = msg.get("result")
            if isinstance(result, dict) and "repairs" in result and "shared" in result:
                found = result
        return found

    def _count(self, method: str) -> int:
        return sum(1 for msg in self._messages() if msg.get("method") == method)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Config:
    seconds: float = 20.0
    seed: int = 1
    crlf: bool = False
    nvim_versions: tuple[str, ...] = ("0.7", "0.10", "0.12")
    plugin_version: str = "0.12"
    vscode: bool = True
    emacs: bool = True
    # Pauses between one editor's edits (a pace, not a wait): seconds, uniform in the range.
    pause: tuple[float, float] = (0.15, 0.45)


def initial_text(crlf: bool) -> str:
    eol = "\r\n" if crlf else "\n"
    return "".join(line + eol for line in INITIAL_LINES)


class Fuzz:
    """One run: the hub is given; everything else is started, fuzzed, checked and stopped."""

    def __init__(self, hub: Hub, data_dir: Path, tmp: Path, config: Config) -> None:
        self.hub = hub
        self.data_dir = data_dir
        self.tmp = tmp
        self.config = config
        self.initial = initial_text(config.crlf)
        self.peers: list[Peer] = []
        self.figures: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Fuzz:
        """For a scene of its own (tests/test_vscode_replace_echo.py): what ``start`` starts
        is stopped on exit."""
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    def node(self) -> NodePeer:
        return next(p for p in self.peers if isinstance(p, NodePeer))

    def hub_text(self) -> str | None:
        room = self.hub.room(ROOM)
        return None if room is None else file_texts(room.doc).get(FILE)

    def token(self, user: str) -> str:
        return token(self.data_dir, ROOM, user)

    def workspace(self, name: str) -> Path:
        ws = self.tmp / name / "ws"
        ws.mkdir(parents=True, exist_ok=True)
        (ws / FILE).write_bytes(self.initial.encode())
        return ws

    def lsp_cmd(self, log: Path) -> list[str]:
        script = 'exec "$0" -m huddle.cli lsp --log-level info 2>>"$1"'
        return ["sh", "-c", script, sys.executable, str(log)]

    # -- start ---------------------------------------------------------------------------------

    async def start_node(self) -> NodePeer:
        node = NodePeer(self.hub.url, self.token("yan"))
        self._stack.push_async_callback(node.close)
        await node.start()
        await node.request("create", file=FILE, text=self.initial)
        await eventually(lambda: self.hub_text() == self.initial, what="the file in the room")
        return node

    async def start_emacs(self) -> EmacsPeer:
        ws = self.workspace("emacs")
        log = self.tmp / "emacs" / "huddle-lsp.log"
        settings = {
            "huddle-hub": self.hub.url,
            "huddle-room": ROOM,
            "huddle-user": "eve",
            "huddle-token": self.token("eve"),
            "huddle-command": self.lsp_cmd(log),
        }
        emacs = await self._stack.enter_async_context(
            Emacs(self.tmp / "emacs" / "home", settings=settings)
        )
        await emacs.eval(f"(load {elisp(str(EMACS_EL))} nil t)")
        await emacs.json(f"(huddle-test-open {elisp(str(ws / FILE))})", timeout=30)
        # eglot waits for the server's answer to `initialize' only `eglot-sync-connect' (3 s),
        # then goes on connecting in the background: on two busy cores huddle lsp takes longer.
        managed = (
            f"(with-current-buffer (get-file-buffer {elisp(str(ws / FILE))}) (eglot-managed-p))"
        )

        async def started() -> bool:
            return (await emacs.eval(managed)).strip() != "nil"

        await eventually(started, timeout=START_TIMEOUT, what="eglot to start huddle lsp")
        return EmacsPeer(emacs, ws / FILE, log)

    async def start_nvim(self, version: str, tag: str, plugin: bool) -> NvimPeer:
        name = f"{version}{'-plugin' if plugin else ''}"
        editor = NvimEditor(name.replace(".", "_"), version, self.tmp)
        editor.write(FILE, self.initial)
        peer = NvimPeer(editor, tag, plugin)
        self._stack.push_async_callback(peer.close)
        await editor.start()
        await editor.lua(f"_G.EditorFuzz = dofile({json.dumps(str(NVIM_LUA))})")
        user = f"n{tag}"
        if plugin:
            await editor.setup(
                hub=self.hub.url,
                room=ROOM,
                token=self.token(user),
                user=user,
                cmd=self.lsp_cmd(editor.lsp_log),
            )
            await editor.lua("EditorFuzz.open(...)", FILE)
        else:
            init = {"hub": self.hub.url, "room": ROOM, "user": user, "token": self.token(user)}
            await editor.lua("EditorFuzz.open(...)", FILE)
            await editor.lua(
                "EditorFuzz.start_plain(...)",
                self.lsp_cmd(editor.lsp_log),
                str(editor.workspace),
                init,
            )
        return peer

    async def start_vscode(self) -> VSCodePeer:
        require_installed()
        ws = self.workspace("vscode")
        tap = self.tmp / "vscode" / "lsp.jsonl"
        # The extension finds huddle in the workspace's .venv: a wrapper that records the LSP
        # traffic (tests/nvim/lsp_tap.py) for the applyEdit count and huddle.status.
        wrapper = ws / ".venv" / "bin" / "huddle"
        wrapper.parent.mkdir(parents=True)
        wrapper.write_text(
            "#!/bin/sh\n"
            f'exec {sys.executable} {LSP_TAP} {tap} -- {ROOT / ".venv" / "bin" / "huddle"} "$@"\n'
        )
        wrapper.chmod(0o755)
        vsix = await asyncio.to_thread(build_vsix)
        server = await self._stack.enter_async_context(
            CodeServer(self.tmp / "vscode" / "code", vsix)
        )
        page = await self._stack.enter_async_context(Page(f"{server.url}/?folder={ws}"))
        await page.request("goto")
        # The extension's status item shows once it is active, and its commands with it.
        await page.request("statusMatch", pattern="^\\s*(solo|Huddle)\\b", timeout=120)
        await page.request("palette", title="Huddle: Join Session")
        await page.request("answer", text=room_url(self.hub.url, ROOM, self.token("vera")))
        await page.request("status", text=ROOM, timeout=120)
        await page.request("open", file=FILE)
        return VSCodePeer(page, server, tap)

    async def start(self) -> None:
        node = await self.start_node()
        config = self.config
        starting: list[Awaitable[Peer]] = []
        if config.emacs:
            starting.append(self.start_emacs())
        tags = iter("abcd")
        for version in config.nvim_versions:
            starting.append(self.start_nvim(version, next(tags), plugin=False))
        if config.plugin_version:
            starting.append(self.start_nvim(config.plugin_version, "p", plugin=True))
        if config.vscode:
            starting.append(self.start_vscode())
        started = await asyncio.gather(*starting)
        self.peers = [*started, node]
        # Connected and sharing the file: a marker the Node client adds reaches every editor
        # (typing before that would be replaced by the room's text, as a stale copy is).
        await self.barrier(node, "every editor to take the room's edits", START_TIMEOUT)

    async def wait(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
        try:
            await eventually(check, timeout=timeout, what=what)
        except AssertionError as exc:
            raise FuzzFailure(f"{exc}\n{await self.report()}") from None

    # -- fuzz ----------------------------------------------------------------------------------

    async def fuzz(self) -> None:
        deadline = time.monotonic() + self.config.seconds

        async def edits(peer: Peer, rng: random.Random) -> None:
            low, high = self.config.pause
            while time.monotonic() < deadline:
                await peer.step(rng)
                await asyncio.sleep(rng.uniform(low, high))  # a typist's pace

        started = time.monotonic()
        await asyncio.gather(
            *(edits(peer, random.Random(f"{self.config.seed}/{peer.name}")) for peer in self.peers)
        )
        self.figures["edit_seconds"] = round(time.monotonic() - started, 2)

    async def texts(self) -> dict[str, str]:
        out = {}
        for peer in self.peers:
            try:
                out[peer.name] = await asyncio.wait_for(peer.text(), 20)
            except Exception as exc:  # the report must show what it can
                out[peer.name] = f"(unreadable: {exc!r})"
        return out

    async def agreed(self) -> bool:
        hub = self.hub_text()
        if hub is None:
            return False
        for peer in self.peers:
            if not peer.agrees(await peer.text(), hub):
                return False
        return True

    async def converge(self) -> str:
        quiet = time.monotonic()
        await self.wait("every editor and the hub to agree", self.agreed, CONVERGE_TIMEOUT)
        self.figures["convergence_seconds"] = round(time.monotonic() - quiet, 2)
        # A barrier: one more marker, and then everything must agree on exactly that text (a
        # loop still running, an echo taken for typing, would have changed it by then).
        return await self.barrier(
            self.node(), "the barrier marker everywhere, and nothing else", 30
        )

    async def barrier(self, node: NodePeer, what: str, timeout: float) -> str:
        """The Node client appends a marker; every editor must then hold exactly its text."""
        text, _ = await node.view()
        edit = Edit("append", len(text), len(text), node.ledger.marker(random.Random(0)))
        assert await node.apply(text, text, edit)
        node.ledger.record("barrier", edit.text, "")
        expected = text + edit.text

        async def settled() -> bool:
            return self.hub_text() == expected and await self.agreed()

        await self.wait(what, settled, timeout)
        return expected

    # -- check ---------------------------------------------------------------------------------

    def check(self, final: str) -> list[str]:
        problems = []
        inserted = Counter(MARKER.findall(self.initial))
        deleted: set[str] = set()
        pieces: set[str] = set()
        splits: list[tuple[str, int]] = []
        bound = len(self.initial) + 2
        for peer in self.peers:
            inserted.update(peer.ledger.inserted)
            deleted |= peer.ledger.deleted
            pieces |= peer.ledger.pieces
            splits += peer.ledger.splits
            bound += peer.ledger.inserted_chars
        made_twice = {m for m, n in inserted.items() if n > 1}
        assert not made_twice, f"the fuzzer made a marker twice: {made_twice}"
        present = Counter(MARKER.findall(final))
        rest = MARKER.sub("", final)
        cut_apart = _cut_apart(set(inserted) - deleted - set(present), pieces, rest)
        for remnant in cut_apart.values():
            rest = rest.replace(remnant, "", 1)
        deleted |= set(cut_apart)
        for marker, at in splits:  # split by a user: its two parts may stay, apart
            if marker not in present:
                deleted.add(marker)
                for part in (marker[:at], marker[at:]):
                    rest = rest.replace(part, "", 1)
        doubled = sorted(m for m, n in present.items() if n > 1)
        lost = sorted(set(inserted) - deleted - set(present))
        resurrected = sorted(set(present) & deleted)
        unknown = sorted(set(present) - set(inserted))
        if doubled:
            problems.append(f"markers more than once: {doubled}")
        if lost:
            problems.append(f"markers lost (no deletion covered them): {lost}")
        if resurrected:
            problems.append(f"markers deleted, yet present: {resurrected}")
        if unknown:
            problems.append(f"markers nobody inserted: {unknown}")
        garbled = [m.group() for m in re.finditer(r"[^\r\n]{0,6}[<>A-Za-z0-9][^\r\n]{0,6}", rest)]
        if garbled:
            problems.append(f"garbled markers (pieces left): {garbled[:10]}")
        if len(final) > bound:
            problems.append(f"text of {len(final)} characters, more than all inserted ({bound})")
        self.figures["markers"] = {
            "inserted": sum(inserted.values()),
            "deleted": len(deleted),
            "present": sum(present.values()),
        }
        self.figures["final_chars"] = len(final)
        return problems

    async def report(self) -> str:
        hub = self.hub_text() or ""
        lines = [f"seed {self.config.seed} (crlf: {self.config.crlf}); hub: {hub!r}"]
        for name, text in (await self.texts()).items():
            if text == hub:
                lines.append(f"--- {name}: same as the hub")
                continue
            diff = difflib.unified_diff(
                hub.splitlines(keepends=True), text.splitlines(keepends=True), "hub", name
            )
            lines.append(f"--- {name}: {text!r}\n{''.join(diff)}")
        for peer in self.peers:
            if peer.log_hint:
                lines.append(f"--- {peer.name} log: {peer.log_hint}")
        return "\n".join(lines)

    async def run(self) -> dict[str, Any]:
        try:
            async with self._stack:
                return await self._run()
        finally:
            # Every edit each editor made, for whoever investigates a failure.
            histories = {p.name: p.ledger.history for p in self.peers}
            (self.tmp / "edits.json").write_text(json.dumps(histories, ensure_ascii=False))

    async def _run(self) -> dict[str, Any]:
        if True:
            started = time.monotonic()
            await self.start()
            self.figures["start_seconds"] = round(time.monotonic() - started, 2)
            await self.fuzz()
            final = await self.converge()
            problems = self.check(final)
            editors: dict[str, Any] = {}
            repairs = 0
            for peer in self.peers:
                counters = await peer.counters()
                editors[peer.name] = {**peer.ledger.figures(), **counters}
                repairs += counters.get("repairs") or 0
                if counters.get("repairs") is None and not isinstance(peer, NodePeer):
                    problems.append(f"{peer.name}: no repair count from huddle lsp")
            if repairs:
                problems.append(f"{repairs} repairs (huddle lsp's safety net)")
            self.figures.update(
                {
                    "seed": self.config.seed,
                    "crlf": self.config.crlf,
                    "seconds": self.config.seconds,
                    "edits": sum(p.ledger.edits for p in self.peers),
                    "repairs": repairs,
                    "editors": editors,
                }
            )
            if problems:
                self.figures["problems"] = problems
                failure = FuzzFailure("\n".join(problems) + "\n" + await self.report())
                failure.figures = self.figures
                raise failure
            return self.figures


async def run_with_hub(config: Config, tmp: Path) -> dict[str, Any]:
    data_dir = tmp / "hub"
    async with local_hub(data_dir) as hub:
        return await Fuzz(hub, data_dir, tmp, config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.editor_fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to edit")
    parser.add_argument("--seed", type=int, default=None, help="random by default")
    parser.add_argument(
        "--eol", choices=["lf", "crlf", "seed"], default="seed", help="the file's line breaks"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    crlf = args.eol == "crlf" or (args.eol == "seed" and seed % 2 == 1)
    config = Config(seconds=args.seconds, seed=seed, crlf=crlf)
    print(f"editor fuzz: seed {seed}, {args.seconds:g} s, {'CRLF' if crlf else 'LF'}")
    with tempfile.TemporaryDirectory(prefix="editor-fuzz-") as tmp:
        try:
            figures = asyncio.run(run_with_hub(config, Path(tmp)))
        except AssertionError as exc:  # a FuzzFailure, or a peer that failed an operation
            print(f"FAILED (seed {seed}):\n{exc}")
            figures = exc.figures if isinstance(exc, FuzzFailure) else None
            if figures is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
                print(json.dumps(figures, indent=2, ensure_ascii=False))
            keep = Path(tempfile.mkdtemp(prefix="editor-fuzz-failed-"))
            shutil.copytree(
                tmp,
                keep,
                dirs_exist_ok=True,
                ignore_dangling_symlinks=True,
                ignore=shutil.ignore_patterns("*.sock", "s"),
            )
            print(f"logs kept in {keep}")
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
