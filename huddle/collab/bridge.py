"""The per-buffer bridge: one editor buffer (spoken to over LSP) <-> one ``pycrdt.Text``.

Pure and synchronous: no I/O, no asyncio, no LSP library. The language server feeds it the
editor's ``didChange`` notifications and the answers to ``workspace/applyEdit``; the bridge
observes the ``Text`` itself for remote changes and hands back the edits the editor must apply.

Usage (the caller owns the ``Doc``; ``origin`` marks the bridge's own transactions: any
hashable, not ``None``, that no other writer of the document uses)::

    bridge = Bridge(text, origin=token, version=did_open.version, editor_text=did_open.text,
                    encoding=negotiated)
    bridge.local_change(did_change.version, [TextChange(range, text), ...])
    edit = bridge.next_apply_edit()        # after every call above and after remote updates
    if edit: send applyEdit(VersionedTextDocumentIdentifier(uri, edit.version), edit.edits)
    bridge.edit_result(edit.id, applied)   # the answer; see below for errors and timeouts
    bridge.check()                         # now and then: the safety net, counts ``repairs``
    bridge.shadow_index.offset_at(position, encoding)   # the editor's positions, for features
    bridge.close()                         # stop observing the Text

Model
-----
Three texts: the editor's buffer, the bridge's ``shadow`` of it (the text at the version of the
last ``didChange``), and the CRDT text ``C``. Offsets are code points; :class:`TextOp`
(ot.js-style retain/insert/delete over the whole text) is the change algebra, and
:func:`transform` satisfies ``a . b' == b . a'`` for ``(a', b') = transform(a, b)``.
This is client/server OT with the editor as the client and the CRDT replica as the server
(Teamtype's editor-revision layer), except that an LSP editor cannot tag its changes with our
revision: the LSP document ``version`` and the buffer's content stand in for it.

``queued`` is the change the editor has not been sent yet. At most one ``applyEdit`` is in
flight (``sent``, computed on the shadow at version ``V`` — call that text ``E_V``).

Invariants
----------
I1. The mirror (a :class:`LineIndex` of ``C`` used for byte offsets) equals ``str(text)``.
I2. Idle: ``queued.apply(shadow) == str(text)``.
I3. In flight: ``queued.apply(sent.apply(E_V)) == str(text)``; ``shadow == E_V`` followed by
    the buffered editor changes, which are NOT yet in the CRDT.
I4. Every character the user typed reaches the CRDT exactly once: a buffered change is either
    recognised as the echo of ``sent`` (and dropped: its text is already in the CRDT) or fed
    to the CRDT transformed over what the editor had not seen.

Events
------
- Remote change ``R`` (a ``TextEvent`` whose origin is not ours; its delta counts UTF-8
  bytes, converted through the mirror): ``queued = queued . R``.
- ``didChange`` while idle: each change ``u`` (on the shadow) becomes
  ``(u', queued') = transform(u, queued)``; ``u'`` goes into the CRDT inside one transaction
  with ``origin`` per notification. Editors send several changes per notification (Neovim
  batches for 150 ms) and versions may jump: the version is only recorded, never predicted.
- Readings: a change is a text, not an intention. Neovim reports a diff of lines (the span
  between the old and new line's common prefix and suffix), so an insert or a deletion that
  borders on equal characters has several readings that give the same buffer (``"x1"`` typed
  before ``"xyz"`` arrives as ``"1x"`` after its ``x``). They differ only in which characters
  the CRDT takes for the user's, which decides where a concurrent edit lands. For an editor
  that reports line diffs (``line_diffs``: Neovim, told by its ``clientInfo``; VS Code and
  eglot report the change itself, which is left alone) each pure insert or pure deletion is
  fed as the reading ``readings.choose`` prefers (its docstring has the rule): one that
  starts where the previous change of the notification ended (the cursor), then one that
  keeps whole lines, then whole words, then the one nearest to the report. Changes marked
  ``exact`` (``local_change(exact=True)``: Huddle's Neovim plugin sends what ``on_bytes``
  saw, and ``huddle lsp`` uses it where it leads to the text of the report) are fed as they
  are: there is nothing to guess.
- ``next_apply_edit``: sends ``queued`` as simultaneous, non-overlapping ``TextEdit``\\ s on the
  shadow at ``version`` (an edit boundary between ``\\r`` and ``\\n`` is widened to the whole
  CRLF, which LSP can address); ``queued`` becomes empty and the edit is in flight.
- ``didChange`` while in flight: changes are applied to the shadow and buffered. An editor
  that checks versions applies ``sent`` only to ``E_V``, so if it applied it, the echo is the
  FIRST thing after ``V``. After each buffered change the bridge asks whether the shadow now
  equals ``sent.apply(E_V)`` (compared through an op from the shadow, so the cost is that of
  the changed regions, not of the file). It compares text, not change lists, because Neovim
  reports an applied edit as its own line diff. Editors also rewrite line breaks in the text
  they insert (VS Code to the document's EOL, Neovim to its fileformat): the all-``\\n`` and
  all-``\\r\\n`` variants of ``sent`` are accepted too, and the rewrite is then fed to the CRDT
  as the editor's own edit. On a match the changes so far were the echo: the edit is applied,
  and the rest of the notification is user typing on top of it.
- Unchecked versions: Neovim applies an edit for version 0 (the version of every buffer it
  opens, until its first ``didChange``) without checking it, at the positions sent, on top of
  whatever the user typed meanwhile (it debounces ``didChange``, so typing and echo arrive
  together). For such an edit the bridge also asks, after each buffered change, whether the
  shadow equals ``S_j``: the sent edits applied at their positions (``character`` clamped to
  the line, as Neovim does) on the shadow after the first ``j`` buffered changes, for every
  ``j``, reached in at most one change per sent ``TextEdit`` (Neovim reports each as a change
  of its own; so few ``S_j`` are followed at once, and only for an edit of at most
  ``_MAX_EDITS`` TextEdits). Where several fit, the smallest ``j`` whose echo is that short
  wins (``j = 0`` is the usual echo, which may be longer, but then loses to any ``j`` that is
  not); an ``S_j`` that changes nothing is not a candidate (it cannot be told from "not
  applied"). On a match the first ``j`` changes are user typing ``T``, and the rest
  were the edit at the wrong place. With ``(s', t') = transform(sent, T)`` (``sent``'s
  inserts first where both insert at one place, as the editor put them), ``t'`` goes into the
  CRDT like other typing and ``queued`` becomes the inverse of the misplaced changes, then
  ``s'``, then ``queued``, narrowed to what really changes: the next edit moves the misplaced
  text where it belongs.
- The answer: ``applied: false`` (VS Code on a stale version) means not applied. ``applied:
  true`` is not trusted (Neovim says it for edits it skipped as stale): if changes that were not
  the echo already arrived, the edit was not applied; if none arrived yet, the echo must be in
  the next notification (Neovim sends it debounced, after its answer) — if that one is not it,
  the edit was skipped. For an unchecked version, changes that already arrived do not decide
  if the edit has somewhere to land on the shadow (a candidate ``S_j`` for the changes so
  far): the editor applied it after them, and its echo comes in the next notification. The
  same for any version with ``late_applies`` (VS Code: its "applied: true" is true, but a
  keystroke that falls between its version check, in the extension host, and the workbench
  applying the edit is reported first, then the answer, then the edit at the positions sent).
  Such an editor may also report keystrokes after its answer and before the echo: there a
  notification that is not the echo does not decide either, if the edit has somewhere to land
  on top of it, for at most ``LATE_ECHO_WAIT`` notifications (the typing reaches the room with
  the echo, or with the next notification past them: the edit was not applied).
- Not applied: ``queued = sent . queued`` (re-sent later with the new version), and the
  buffered changes are fed to the CRDT as user typing, transformed as above. A runaway guard:
  where the editor said "applied" (or did not answer) and its changes re-insert all the text
  the edit inserts, they may be an echo in a shape the bridge does not know; fed as typing,
  the edit would go out and come back forever. After ``runaway_limit`` such edits in a row the
  changes are dropped instead (the CRDT wins), a repair is counted (``runaways`` too) and
  nothing is sent until the editor changes something while no edit is in flight.
- The end of the text: a position after the shadow's final line break is a line Neovim does
  not have (``eol`` keeps the final line break outside its lines); an edit there makes it
  append lines, differently in 0.10 and 0.12. Every edit that reaches past the final line break
  is sent as the equivalent edit before it (``"c\n"`` at (2,0) of ``"a\nb\n"`` as ``"\nc"`` at
  (1,1)), which every editor applies as sent.
- Final newline (``final_newline``: the editor keeps one outside its lines, Neovim's ``eol``;
  the server sets it from ``clientInfo``): such an editor cannot hold a text without a final
  newline, nor delete it. When the CRDT text lacks one and the shadow has one, the editor is
  sent the CRDT text plus that line break, and ``queued`` keeps only its deletion, never sent
  (I2 holds: the shadow is the CRDT text plus that line break). The room keeps exactly what
  the teammates typed, Neovim shows the same lines, and neither side fights the other.

``check()`` verifies I1 (and I2 when idle) in O(n). A mirror that differs from the CRDT is
treated as a missed remote change; a queue that does not lead from the shadow to the CRDT is
replaced by the diff that does (the CRDT wins: every applied keystroke is already in it). Each
repair increments ``repairs``; in a correct run it stays 0.

Limitations
-----------
- Keystrokes typed while an edit is in flight reach the CRDT when the answer (or, for Neovim,
  the echo) arrives: one round trip later.
- A user who keeps typing faster than the round trip keeps VS Code rejecting our edits; remote
  changes then show up in the first pause.
- An editor that ignores the version of a versioned edit and applies it to a newer buffer
  breaks the model (the echo is not recognised and its text is duplicated), except Neovim at
  version 0 as above, and there only within limits: an edit of at most ``_MAX_EDITS``
  TextEdits, echoed in at most one change per TextEdit; not where a sent position falls
  inside a character or past the last line, or is clamped on the line where the next sent
  edit starts (Neovim reads it after applying that one). So does an editor that changes our
  text in ways other than rewriting line breaks while applying it (e.g. a final newline added
  or dropped); both look like "not applied plus user typing".
- User typing that happens to equal the edit in flight (the same text at the same place; for
  an unchecked version, at its positions on a later text) is taken for its echo. For an
  unchecked version the edit itself, arriving after that typing, is then applied once more
  and taken for typing.
- Readings (plain LSP): the rule is a heuristic. It cannot know what the user meant, only
  what is likely: a user who really typed ``"1x"`` after the ``x`` of ``"xyz"`` is read as
  having typed ``"x1"`` before it. A reading differs from the user's only next to an edit a
  teammate made inside the window (after what the editor was last sent, before its report;
  Neovim's debounce), and only in where that edit lands; every buffer still converges.
  Replacements (a deletion and an insert in one change) are not re-read. With Huddle's Neovim
  plugin the exact changes count instead, for every change whose ``on_bytes`` arrived before
  its ``didChange`` and leads to the same text (else the report is used, with the rule).
- Two editors that insist on different line-break styles for the same file will rewrite each
  other's line breaks back and forth.
- With ``final_newline``, the editor's text is the CRDT's plus a final line break wherever the
  CRDT lacks one: a deletion of the final newline by a teammate does not reach it (plain LSP
  cannot clear ``eol``). A Neovim buffer whose ``eol`` is off and whose last line is empty
  looks the same and is treated the same (its final newline is then not deleted either).
  An editor that adds a final newline on its own without being known to (not Neovim) is
  stopped by the runaway guard, at the price of up to ``runaway_limit`` duplicates.
- ``applied: true`` from an editor that then never sends another ``didChange`` (it skipped the
  edit without any pending change) leaves the edit in flight; no editor we know does that.
  Neither does Neovim, except where it applied an edit for version 0 where the bridge does not
  look for it (see above) and reported that before its answer (no debounce): the edit then
  waits for the user's next change, which decides it was not applied.
- For version 0, the answer takes an edit that has nowhere to land on the shadow (it changes
  nothing at its positions there, or they are not looked for) as not applied; where the
  editor had typed more, not reported yet, it may have landed: its echo is then taken for
  typing.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Subscription, Text, TextEvent

from huddle.collab import readings
from huddle.collab.errors import CollabError
from huddle.collab.positions import LineIndex, PositionEncoding, PositionError, Range

__all__ = [
    "ApplyEdit",
    "Bridge",
    "BridgeError",
    "Edit",
    "TextChange",
    "TextEdit",
    "TextOp",
    "diff",
    "transform",
]


class BridgeError(CollabError):
    """A change the bridge cannot represent (e.g. a non-text item in a ``Text``)."""


# --- the change algebra -----------------------------------------------------------------------

Component = int | str
"""``n > 0`` keeps ``n`` code points, ``n < 0`` deletes ``-n``, a ``str`` inserts itself."""


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace code points ``[start, end)`` with ``text``."""

    start: int
    end: int
    text: str


def _retain(parts: list[Component], n: int) -> None:
    if n <= 0:
        return
    if parts and isinstance(parts[-1], int) and parts[-1] > 0:
        parts[-1] += n
    else:
        parts.append(n)


def _insert(parts: list[Component], s: str) -> None:
    if not s:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += s
    elif parts and isinstance(parts[-1], int) and parts[-1] < 0:
        # Canonical order: an insert goes before an adjacent delete.
        if len(parts) > 1 and isinstance(parts[-2], str):
            parts[-2] += s
        else:
            parts.insert(len(parts) - 1, s)
    else:
        parts.append(s)


def _delete(parts: list[Component], n: int) -> None:
    if n <= 0:
        return
    if parts and isinstance(parts[-1], int) and parts[-1] < 0:
        parts[-1] -= n
    else:
        parts.append(-n)


def _push(parts: list[Component], part: Component) -> None:
    if isinstance(part, str):
        _insert(parts, part)
    elif part > 0:
        _retain(parts, part)
    else:
        _delete(parts, -part)


class TextOp:
    """A change of a whole text: a sequence of retain / insert / delete components.

    ``base_length`` is the length of the text it applies to, ``target_length`` of the result.
    Immutable; components are normalised (merged, an insert before an adjacent delete).
    """

    __slots__ = ("base_length", "parts", "target_length")

    parts: tuple[Component, ...]
    base_length: int
    target_length: int

    def __init__(self, parts: Iterable[Component] = ()) -> None:
        built: list[Component] = []
        for part in parts:
            _push(built, part)
        self.parts = tuple(built)
        base = target = 0
        for part in built:
            if isinstance(part, str):
                target += len(part)
            elif part > 0:
                base += part
                target += part
            else:
                base -= part
        self.base_length = base
        self.target_length = target

    @classmethod
    def identity(cls, length: int) -> TextOp:
        return cls((length,))

    @classmethod
    def from_edit(cls, length: int, start: int, end: int, text: str) -> TextOp:
        """Replace ``[start, end)`` of a text of ``length`` code points with ``text``."""
        if not 0 <= start <= end <= length:
            raise BridgeError(f"edit {start}..{end} is not inside 0..{length}")
        return cls((start, text, start - end, length - end))

    @classmethod
    def from_edits(cls, length: int, edits: Sequence[Edit]) -> TextOp:
        """Simultaneous edits, sorted by position and not overlapping, as one op."""
        parts: list[Component] = []
        pos = 0
        for edit in edits:
            if edit.start < pos or edit.end < edit.start or edit.end > length:
                raise BridgeError("edits must be sorted, non-overlapping and inside the text")
            _retain(parts, edit.start - pos)
            _insert(parts, edit.text)
            _delete(parts, edit.end - edit.start)
            pos = edit.end
        _retain(parts, length - pos)
        return cls(parts)

    @property
    def is_noop(self) -> bool:
        return all(isinstance(part, int) and part > 0 for part in self.parts)

    def apply(self, text: str) -> str:
        if len(text) != self.base_length:
            raise BridgeError(f"op for {self.base_length} code points applied to {len(text)}")
        out: list[str] = []
        pos = 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part > 0:
                out.append(text[pos : pos + part])
                pos += part
            else:
                pos -= part
        return "".join(out)

    def edits(self) -> list[Edit]:
        """The op as simultaneous edits on its base text (sorted, separated by kept text)."""
        result: list[Edit] = []
        pos = 0
        start: int | None = None
        inserted = ""
        for part in self.parts:
            if isinstance(part, int) and part > 0:
                if start is not None:
                    result.append(Edit(start, pos, inserted))
                    start, inserted = None, ""
                pos += part
                continue
            if start is None:
                start = pos
            if isinstance(part, str):
                inserted += part
            else:
                pos -= part
        if start is not None:
            result.append(Edit(start, pos, inserted))
        return result

    def compose(self, other: TextOp) -> TextOp:
        """The op that does ``self`` then ``other``."""
        if self.target_length != other.base_length:
            raise BridgeError(
                f"cannot compose: first op yields {self.target_length}, "
                f"second expects {other.base_length}"
            )
        out: list[Component] = []
        first, second = list(self.parts), list(other.parts)
        i = j = 0
        a: Component | None = first[0] if first else None
        b: Component | None = second[0] if second else None

        def next_a() -> Component | None:
            nonlocal i
            i += 1
            return first[i] if i < len(first) else None

        def next_b() -> Component | None:
            nonlocal j
            j += 1
            return second[j] if j < len(second) else None

        while a is not None or b is not None:
            if isinstance(a, int) and a < 0:
                _delete(out, -a)
                a = next_a()
                continue
            if isinstance(b, str):
                _insert(out, b)
                b = next_b()
                continue
            if a is None or b is None:
                raise BridgeError("compose: ops do not line up")
            if isinstance(a, int):  # retain a
                assert isinstance(b, int)
                if b > 0:
                    n = min(a, b)
                    _retain(out, n)
                    a = a - n or next_a()
                    b = b - n or next_b()
                else:
                    n = min(a, -b)
                    _delete(out, n)
                    a = a - n or next_a()
                    b = b + n or next_b()
            else:  # insert a
                assert isinstance(b, int)
                if b > 0:
                    n = min(len(a), b)
                    _insert(out, a[:n])
                    a = a[n:] or next_a()
                    b = b - n or next_b()
                else:
                    n = min(len(a), -b)
                    a = a[n:] or next_a()
                    b = b + n or next_b()
        return TextOp(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextOp) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __repr__(self) -> str:
        return f"TextOp({list(self.parts)!r})"


def transform(a: TextOp, b: TextOp) -> tuple[TextOp, TextOp]:
    """Concurrent ops on one text -> ``(a', b')`` with ``a.compose(b') == b.compose(a')``
    in effect. At the same position ``a``'s insert goes first; text deleted by both is
    deleted once."""
    if a.base_length != b.base_length:
        raise BridgeError(
            f"cannot transform ops on {a.base_length} and {b.base_length} code points"
        )
    a_out: list[Component] = []
    b_out: list[Component] = []
    first, second = list(a.parts), list(b.parts)
    i = j = 0
    x: Component | None = first[0] if first else None
    y: Component | None = second[0] if second else None

    def next_x() -> Component | None:
        nonlocal i
        i += 1
        return first[i] if i < len(first) else None

    def next_y() -> Component | None:
        nonlocal j
        j += 1
        return second[j] if j < len(second) else None

    while x is not None or y is not None:
        if isinstance(x, str):
            _insert(a_out, x)
            _retain(b_out, len(x))
            x = next_x()
            continue
        if isinstance(y, str):
            _retain(a_out, len(y))
            _insert(b_out, y)
            y = next_y()
            continue
        if x is None or y is None:
            raise BridgeError("transform: ops do not line up")
        if x > 0 and y > 0:
            n = min(x, y)
            _retain(a_out, n)
            _retain(b_out, n)
            x = x - n or next_x()
            y = y - n or next_y()
        elif x < 0 and y < 0:
            n = min(-x, -y)
            x = x + n or next_x()
            y = y + n or next_y()
        elif x < 0:  # a deletes what b keeps
            n = min(-x, y)
            _delete(a_out, n)
            x = x + n or next_x()
            y = y - n or next_y()
        else:  # a keeps what b deletes
            n = min(x, -y)
            _delete(b_out, n)
            x = x - n or next_x()
            y = y + n or next_y()
    return TextOp(a_out), TextOp(b_out)


def map_offset(op: TextOp, offset: int) -> int:
    """Where ``offset`` (on the text ``op`` applies to) is in the text ``op`` produces. Text
    inserted exactly at ``offset`` ends up after it; a deleted span collapses onto its start."""
    source = target = 0
    for part in op.parts:
        if isinstance(part, str):
            if source < offset:
                target += len(part)
            continue
        if part > 0:
            if offset <= source + part:
                return target + (offset - source)
            source += part
            target += part
        else:
            if offset <= source - part:
                return target
            source -= part
    return target + max(0, offset - source)


def diff(old: str, new: str) -> TextOp:
    """One replace from ``old`` to ``new``: everything between the common prefix and suffix."""
    if old == new:
        return TextOp.identity(len(old))
    limit = min(len(old), len(new))
    start = _common_run(old, new, limit, forward=True)
    end = _common_run(old, new, limit - start, forward=False)
    return TextOp.from_edit(len(old), start, len(old) - end, new[start : len(new) - end])


def _common_run(old: str, new: str, limit: int, *, forward: bool) -> int:
    """Length (at most ``limit``) of the common prefix, or suffix, of two strings; compares
    chunks first so that long equal runs cost C speed, not a Python loop per character."""
    count = 0
    chunk = 4096
    while chunk:
        while count + chunk <= limit:
            if forward:
                same = old[count : count + chunk] == new[count : count + chunk]
            else:
                same = (
                    old[len(old) - count - chunk : len(old) - count]
                    == new[len(new) - count - chunk : len(new) - count]
                )
            if not same:
                break
            count += chunk
        chunk //= 8
    return count


# --- editor-facing messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextChange:
    """One ``contentChanges`` entry of ``didChange``; ``range=None`` replaces the whole text."""

    range: Range | None
    text: str


@dataclass(frozen=True, slots=True)
class TextEdit:
    range: Range
    new_text: str


@dataclass(frozen=True, slots=True)
class ApplyEdit:
    """A ``workspace/applyEdit`` to send: ``edits`` for the buffer at ``version`` (send them as
    one ``TextDocumentEdit`` with a ``VersionedTextDocumentIdentifier``). ``id`` goes back
    into :meth:`Bridge.edit_result`."""

    id: int
    version: int
    edits: tuple[TextEdit, ...]


# --- the bridge -------------------------------------------------------------------------------

_EOL = re.compile(r"\r\n|\r|\n")
_EOL_TOKENS = re.compile(r"(\r\n|\r|\n)")


_MAX_EDITS = 8
"""An edit for an unchecked version is looked for on top of the user's typing only if it has at
most this many TextEdits (the work per buffered change grows with their square)."""

LATE_ECHO_WAIT = 3
"""For an editor whose "applied: true" is true (``late_applies``), how many further
notifications with changes may come after that answer before the edit's echo, each possibly
the user's typing under which the editor then applies it (VS Code: keystrokes it reported before
the workbench applied the edit). Past them the edit is taken as not applied, so that an echo
the bridge does not recognise cannot hold the user's typing out of the room for long."""

RUNAWAY_LIMIT = 3
"""How many edits in a row may be judged not applied while the editor's changes re-insert
their text (an echo the bridge does not recognise) before the bridge stops sending."""


@dataclass(slots=True)
class _Candidate:
    """One text the editor may produce by applying the edit in flight."""

    pending: TextOp  # from the current shadow to that text
    correction: TextOp | None  # from sent.apply(E_V) to that text (line breaks rewritten)
    edits: list[Edit]  # the simultaneous edits on the split's text that produce that text
    split: int = 0  # how many buffered changes the editor had made when it applied the edit


@dataclass(slots=True)
class _Flight:
    id: int
    sent: TextOp  # on E_V
    candidates: list[_Candidate]
    ranges: tuple[Range, ...]  # the sent edits' ranges, as the editor reads them
    unchecked: bool  # for a version the editor does not check, to look for over typing
    changes: list[TextOp] = field(default_factory=list)  # buffered, each on the text before it
    undos: list[TextOp] = field(default_factory=list)  # each change's inverse, on the text after
    answered: bool = False  # "applied: true" (or no answer) came; the next didChange decides
    waited: int = 0  # notifications after that answer taken for typing under the echo to come


class Bridge:
    """Keeps one editor buffer and one ``pycrdt.Text`` in step. See the module docstring."""

    def __init__(
        self,
        text: Text,
        *,
        origin: Hashable,
        version: int,
        encoding: PositionEncoding = PositionEncoding.UTF16,
        editor_text: str | None = None,
        final_newline: bool = False,
        runaway_limit: int = RUNAWAY_LIMIT,
        line_diffs: bool = False,
        late_applies: bool = False,
    ) -> None:
        """``text`` must be integrated in a ``Doc``. ``editor_text`` is the buffer the editor
        opened with (``didOpen``); when it differs from the CRDT, the first
        :meth:`next_apply_edit` turns it into the CRDT text. ``final_newline``: the editor
        keeps a final line break outside its lines (Neovim's ``eol``). ``runaway_limit``: how
        many edits in a row may come back as typing that re-inserts their own text before the
        bridge stops (see the module docstring). ``late_applies``: the editor's ``applied:
        true`` is true, and it may apply a checked edit over changes it reported before that
        answer (VS Code; not Neovim, which says it for edits it skipped)."""
        if origin is None:
            raise BridgeError("the bridge needs an origin to tell its own changes apart")
        self.origin = origin
        self.encoding = encoding
        self.version = version
        self.repairs = 0
        self.final_newline = final_newline
        # The editor reports a diff of lines, not what was typed (Neovim): its pure inserts and
        # deletions are re-read (see Readings). Other editors report the change itself.
        self.line_diffs = line_diffs
        self.late_applies = late_applies
        self.runaway_limit = runaway_limit
        self.runaways = 0  # loops stopped (each also counted in ``repairs``)
        self._suspect = 0  # edits in a row whose echo came back as typing of their own text
        self._stalled = False  # a loop was stopped: send nothing until the editor changes
        self._caret: int | None = None  # where the editor's last change ended (its cursor)
        self._exact = False  # the changes being fed are the editor's own, not a diff
        self._text = text
        self._doc = text.doc
        current = str(text)
        self._mirror = LineIndex(current)
        start = current if editor_text is None else editor_text
        self._shadow = LineIndex(start)
        self._queued = diff(start, current)
        self._flight: _Flight | None = None
        self._last_id = 0
        self._subscription: Subscription | None = text.observe(self._on_event)

    # --- state --------------------------------------------------------------------------------

    @property
    def shadow(self) -> str:
        """The editor's text as of the last ``didChange`` (O(n))."""
        return self._shadow.text

    @property
    def shadow_index(self) -> LineIndex:
        """The shadow as a :class:`LineIndex`, for converting the editor's positions. Read only."""
        return self._shadow

    @property
    def in_flight(self) -> bool:
        return self._flight is not None

    @property
    def has_pending(self) -> bool:
        """Whether remote changes wait for the editor (sent or not). A final newline the
        editor keeps and the CRDT lacks is not one: it cannot be sent (see
        :meth:`_outgoing`)."""
        return self._flight is not None or not self._outgoing()[0].is_noop

    @property
    def shared_index(self) -> LineIndex:
        """The shared text (the CRDT's, as this bridge last saw it) as a :class:`LineIndex`."""
        return self._mirror

    def to_shared(self, offset: int) -> int:
        """An offset into the editor's text (code points) as an offset into the shared text.
        They differ while remote changes are on their way to the editor; a position where a
        remote insert landed stays before it. O(1) when nothing is pending, else O(n)."""
        if not self.has_pending:
            return offset
        return map_offset(diff(self._shadow.text, self._mirror.text), offset)

    def close(self) -> None:
        if self._subscription is not None:
            self._text.unobserve(self._subscription)
            self._subscription = None

    # --- editor -> CRDT -----------------------------------------------------------------------

    def local_change(
        self, version: int, changes: Sequence[TextChange], exact: bool = False
    ) -> None:
        """A ``didChange``: ``changes`` in order, each on the text the previous one produced.
        ``exact``: they are the changes the editor made (Huddle's Neovim plugin), not a diff
        of its text, so they are taken as they are, not re-read."""
        if self._flight is None and changes:
            self._stalled = False  # the editor changed on its own: it is not looping
        self._caret = None  # the end of the previous change: known within one notification
        self._exact = exact
        with self._doc.transaction(origin=self.origin):
            for change in changes:
                self._editor_change(change)
            self.version = version
            flight = self._flight
            if (
                flight is not None
                and flight.answered
                and changes
                and not _partly_applied(flight, self._shadow.text)
                and not self._echo_may_follow(flight)
            ):
                self._not_applied()

    def _echo_may_follow(self, flight: _Flight) -> bool:
        """After "applied: true", a notification whose changes were not the echo: whether the
        echo may still come on top of them. Only for an editor whose "applied: true" is true
        (``late_applies``): VS Code reports every keystroke typed before the workbench applies
        the edit first, also those that come after its answer (``v`` then "applied: true" then
        ``1`` then the edit at its sent positions, in the real workbench), so each may be
        typing under the echo to come: a candidate on top of them is added (:meth:`_add_split`)
        and the next notification decides again. At most :data:`LATE_ECHO_WAIT` times, and
        only where the edit has somewhere to land on them; then it was not applied."""
        if not (self.late_applies and flight.unchecked) or flight.waited >= LATE_ECHO_WAIT:
            return False
        flight.waited += 1
        return self._add_split(flight)

    def _editor_change(self, change: TextChange) -> None:
        shadow = self._shadow
        if change.range is None:
            start, end = 0, len(shadow)
        else:
            start = shadow.offset_at(change.range.start, self.encoding)
            end = shadow.offset_at(change.range.end, self.encoding)
            start, end = min(start, end), max(start, end)
        inserted = change.text
        if end > start and inserted:
            # Neovim reports a line break as replacing the rest of the line ("b c" -> "\nb c").
            # Fed as delete + re-insert, two such changes at once would double the tail, and a
            # concurrent deletion inside it would be undone: keep only what really changed.
            start, end, inserted = _trim(shadow.slice(start, end), start, end, inserted)
        # A line diff admits several readings where the change borders on equal characters
        # ("x1" typed before "xyz" arrives as "1x" after its "x"): take the one the user meant.
        if self.line_diffs and not self._exact:
            start, end, inserted = readings.choose(shadow, start, end, inserted, self._caret)
        self._caret = start + len(inserted)
        change = TextChange(change.range, inserted)
        op = TextOp.from_edit(len(shadow), start, end, change.text)
        flight = self._flight
        if flight is None:
            shadow.replace(start, end, change.text)
            self._feed(op)
            return
        if flight.unchecked and flight.changes:
            self._add_split(flight)
        deleted = shadow.slice(start, end)
        shadow.replace(start, end, change.text)
        flight.changes.append(op)
        undo = TextOp.from_edit(len(shadow), start, start + len(change.text), deleted)
        flight.undos.append(undo)
        # Neovim reports each TextEdit it applies as one change: an echo longer than that is
        # ruled out where the edit was applied over typing, and the last resort otherwise.
        count, limit = len(flight.changes), len(flight.ranges)
        match: _Candidate | None = None
        alive = []
        for candidate in flight.candidates:
            candidate.pending = undo.compose(candidate.pending)
            if _reproduces(candidate.pending, shadow):
                if match is None or (count - match.split > limit >= count - candidate.split):
                    match = candidate
            elif not candidate.split or count - candidate.split < limit:
                alive.append(candidate)
        flight.candidates = alive
        if match is None:
            return
        if match.split:
            self._applied_over_typing(flight, match.split)
            return
        # The changes so far were the echo of the edit in flight.
        self._flight = None
        self._suspect = 0
        if match.correction is not None:
            self._feed(match.correction)

    def _add_split(self, flight: _Flight) -> bool:
        """Candidates for an editor that applies the edit in flight now, on top of the changes
        buffered so far, at the positions it was sent with (see :meth:`_applied_over_typing`);
        whether there are any.

        Neovim applies the TextEdits last first, each at its positions in the buffer as it is
        then, a ``character`` past the line's end clamped to it. That is applying them at once
        on the buffer unless a clamped position shares its line with the next edit's start
        (which changes the line's length first): there, or where a position is on no line or
        inside a character, the edit is not looked for. Nor where it changes nothing: that
        cannot be told from not applied."""
        split = len(flight.changes)
        if flight.candidates[-1].split == split:
            return True  # added when the answer came
        shadow = self._shadow
        ranges = flight.ranges
        spans = []
        for k, edit_range in enumerate(ranges):
            span = []
            for position in (edit_range.start, edit_range.end):
                if position.line >= shadow.line_count:
                    return False
                try:
                    offset = shadow.offset_at(position, self.encoding)
                except PositionError:
                    return False
                if (
                    k + 1 < len(ranges)
                    and ranges[k + 1].start.line == position.line
                    and shadow.position_at(offset, self.encoding) != position
                ):
                    return False
                span.append(offset)
            spans.append(span)
        for base in [c for c in flight.candidates if c.split == 0]:
            edits = [
                Edit(start, end, edit.text)
                for (start, end), edit in zip(spans, base.edits, strict=True)
            ]
            try:
                op = TextOp.from_edits(len(shadow), edits)
            except BridgeError:
                return False
            if not _reproduces(op, shadow):
                flight.candidates.append(_Candidate(op, None, edits, split))
        return flight.candidates[-1].split == split

    def _applied_over_typing(self, flight: _Flight, split: int) -> None:
        """The editor applied the edit in flight at the positions it was sent with, but on top
        of the first ``split`` buffered changes (typing from before the edit arrived): those
        are the user's, the changes after them up to now are the edit, misplaced. Feed the
        typing (transformed over ``sent``), then queue the misplaced text's removal, ``sent``
        transformed over the typing, and what the CRDT had queued for the editor since.

        Where the typing and ``sent`` insert at the same place, the editor put ``sent`` first
        (the position it was sent at is before the typing there): that order is as good a
        merge as the other, so it is the one kept, and the editor need not move that text."""
        self._flight = None
        typing = TextOp.identity(flight.sent.base_length)
        for op in flight.changes[:split]:
            typing = typing.compose(op)
        placed, typing = transform(flight.sent, typing)
        self._feed(typing)
        misplaced = TextOp.identity(len(self._shadow))
        for undo in reversed(flight.undos[split:]):
            misplaced = misplaced.compose(undo)
        self._queued = _narrow(misplaced.compose(placed).compose(self._queued), self._shadow)

    def _feed(self, op: TextOp) -> None:
        """Bring a change the editor made (on the text before it) into the CRDT."""
        mine, self._queued = transform(op, self._queued)
        self._apply(mine)

    def _apply(self, op: TextOp) -> None:
        if op.is_noop:
            return
        mirror = self._mirror
        with self._doc.transaction(origin=self.origin):
            pos = 0
            for part in op.parts:
                if isinstance(part, str):
                    self._text.insert(mirror.byte_offset(pos), part)
                    mirror.replace(pos, pos, part)
                    pos += len(part)
                elif part > 0:
                    pos += part
                else:
                    first, last = mirror.byte_offset(pos), mirror.byte_offset(pos - part)
                    del self._text[first:last]
                    mirror.replace(pos, pos - part, "")

    # --- CRDT -> editor -----------------------------------------------------------------------

    def _on_event(self, event: TextEvent) -> None:
        if event.transaction.origin == self.origin:
            return
        try:
            # pycrdt declares TextEvent's attributes as bare __slots__.
            op = self._delta_op(event.delta)  # type: ignore[attr-defined]
        except CollabError:
            # The mirror had drifted from the CRDT: resynchronise from the text itself.
            self._resync_mirror(str(self._text))
            self.repairs += 1
            return
        self._apply_to_mirror(op)
        self._queued = self._queued.compose(op)

    def _delta_op(self, delta: Sequence[Mapping[str, Any]]) -> TextOp:
        """A pycrdt delta (retain/delete in UTF-8 bytes) as an op in code points on the
        mirror, which is left untouched."""
        mirror = self._mirror
        parts: list[Component] = []
        byte = offset = 0
        for item in delta:
            if "insert" in item:
                inserted = item["insert"]
                if not isinstance(inserted, str):
                    raise BridgeError("a non-text item was inserted into the Text")
                _insert(parts, inserted)
                continue
            step = item.get("retain", item.get("delete"))
            if not isinstance(step, int):
                raise BridgeError(f"unexpected delta item {item!r}")
            byte += step
            end = mirror.offset_of_byte(byte)
            if "retain" in item:
                _retain(parts, end - offset)
            else:
                _delete(parts, end - offset)
            offset = end
        _retain(parts, len(mirror) - offset)
        return TextOp(parts)

    def _apply_to_mirror(self, op: TextOp) -> None:
        mirror = self._mirror
        pos = 0
        for part in op.parts:
            if isinstance(part, str):
                mirror.replace(pos, pos, part)
                pos += len(part)
            elif part > 0:
                pos += part
            else:
                mirror.replace(pos, pos - part, "")

    def next_apply_edit(self) -> ApplyEdit | None:
        """The edit to send now, if any; it is then in flight until resolved."""
        if self._flight is not None or self._stalled:
            return None
        sent, rest = self._outgoing()
        if sent.is_noop:
            return None
        shadow = self._shadow
        wire = self._wire_edits(sent)
        edits = tuple(
            TextEdit(
                Range(
                    shadow.position_at(edit.start, self.encoding),
                    shadow.position_at(edit.end, self.encoding),
                ),
                edit.text,
            )
            for edit in wire
        )
        base = len(shadow)
        candidates = [_Candidate(TextOp.from_edits(base, wire), None, wire)]
        for eol in ("\n", "\r\n"):
            variant = [Edit(edit.start, edit.end, _EOL.sub(eol, edit.text)) for edit in wire]
            if variant != wire:
                candidates.append(
                    _Candidate(
                        TextOp.from_edits(base, variant),
                        _rewrite(sent.target_length, wire, variant),
                        variant,
                    )
                )
        self._queued = rest
        self._last_id += 1
        ranges = tuple(edit.range for edit in edits)
        # Neovim applies an edit for version 0 (or null) without checking the buffer's version;
        # VS Code (``late_applies``) may apply a checked one over a keystroke it reports first,
        # and may report the edit before or after its answer.
        unchecked = (self.version <= 0 or self.late_applies) and len(wire) <= _MAX_EDITS
        self._flight = _Flight(self._last_id, sent, candidates, ranges, unchecked)
        return ApplyEdit(self._last_id, self.version, edits)

    def _kept_newline(self) -> str:
        """The final line break of the shadow ("" if none): what an editor that keeps one
        outside its lines holds after any text of its own."""
        shadow = self._shadow
        size = len(shadow)
        if size and shadow.slice(size - 1, size) == "\n":
            return "\r\n" if size > 1 and shadow.slice(size - 2, size - 1) == "\r" else "\n"
        return ""

    def _outgoing(self) -> tuple[TextOp, TextOp]:
        """``(send, rest)`` with ``queued == send . rest``: ``send`` is what the editor can
        apply, ``rest`` what stays queued after it. ``rest`` is empty except for an editor that
        keeps a final line break (:attr:`final_newline`) when the CRDT text lacks one: that
        editor's text is the CRDT's plus its line break, which it cannot delete and adds where
        an edit leaves it out, so the line break is left out of ``send``'s deletions and added
        to its target, and ``rest`` deletes it (never sent: idle, ``queued`` is then that
        deletion and I2 still holds)."""
        queued = self._queued
        size = queued.target_length
        identity = TextOp.identity(size)
        if not self.final_newline or self._flight is not None:
            return queued, identity
        kept = self._kept_newline()
        mirror = self._mirror
        # An empty CRDT text lacks a final line break too (a teammate emptied the file): the
        # editor gets "" plus its line break. Reading its last character would raise.
        if not kept or len(mirror) != size or (size and mirror.slice(size - 1, size) == "\n"):
            return queued, identity
        send = _narrow(queued.compose(TextOp((size, kept))), self._shadow)
        return send, TextOp((size, -len(kept)))

    def _wire_edits(self, op: TextOp) -> list[Edit]:
        """``op`` as LSP-addressable edits: no boundary between the ``\\r`` and ``\\n`` of a
        CRLF (such a boundary is widened to the whole line break)."""
        shadow = self._shadow
        size = len(shadow)

        def inside_crlf(offset: int) -> bool:
            return 0 < offset < size and shadow.slice(offset - 1, offset + 1) == "\r\n"

        result: list[Edit] = []
        for edit in op.edits():
            start, end, text = edit.start, edit.end, edit.text
            if inside_crlf(start):
                start, text = start - 1, "\r" + text
            if inside_crlf(end):
                end, text = end + 1, text + "\n"
            if result and result[-1].end == start:
                previous = result.pop()
                start, text = previous.start, previous.text + text
            result.append(Edit(start, end, text))
        if result:
            result[-1] = self._before_final_newline(
                result[-1], result[-2] if len(result) > 1 else None
            )
        return result

    def _before_final_newline(self, edit: Edit, previous: Edit | None) -> Edit:
        """``edit`` moved before the shadow's final line break where it reaches past it, the
        result the same. A position after the final line break is a line Neovim does not have
        (its ``eol`` keeps the line break outside its lines): an edit there makes it append
        lines (``"c"`` at (2,0) of ``"a\\nb\\n"`` gives ``"a\\nb\\nc\\n"``; 0.10 and 0.12
        differ for ``"c\\n"``), while one that ends at the last line's end is applied as sent
        by every editor: ``"c\\n"`` at (2,0) is sent as ``"\\nc"`` at (1,1), and deleting
        ``"c\\n"`` after ``"b\\n"`` as deleting ``"\\nc"``."""
        shadow = self._shadow
        size = len(shadow)
        kept = self._kept_newline()
        k = len(kept)
        if not kept or edit.end != size:
            return edit
        start, text = edit.start, edit.text
        if text.endswith(kept) and start < size:  # it replaces the line break by itself
            moved = Edit(start, size - k, text[:-k]) if start <= size - k else edit
        elif text.endswith(kept):  # an insert after the line break
            moved = Edit(size - k, size - k, kept + text[:-k])
        elif not text and start >= k and shadow.slice(start - k, start) == kept:
            moved = Edit(start - k, size - k, "")  # a deletion of whole last lines
        else:
            return edit
        if (previous is not None and previous.end > moved.start) or moved.text.endswith("\r"):
            return edit  # it would overlap, or put a "\r" before the kept "\n"
        for offset in (moved.start, moved.end):
            if 0 < offset < size and shadow.slice(offset - 1, offset + 1) == "\r\n":
                return edit  # LSP cannot address a position inside a CRLF
        return moved

    def edit_result(self, edit_id: int, applied: bool) -> None:
        """The answer to :meth:`next_apply_edit`'s edit ``edit_id``.

        Pass ``applied=False`` for ``applied: false`` and for an error answer. Pass
        ``applied=True`` for ``applied: true`` and when no answer came in time: the following
        ``didChange`` then decides. Answers for edits already resolved are ignored.
        """
        flight = self._flight
        if flight is None or flight.id != edit_id:
            return
        # Nothing buffered: the echo must come next. An edit for an unchecked version is applied
        # even over changes the editor reported first: its echo comes after them (if it has
        # somewhere to land on them). So may a checked one be, by an editor whose "applied:
        # true" is true (``late_applies``: VS Code, where a keystroke falls between its version
        # check, in the extension host, and the workbench applying the edit: the keystroke is
        # reported, then "applied: true", then the edit at its sent positions). Neovim applies
        # a multi-edit one TextEdit at a time (the last first) and may send the first of them
        # before its answer: the rest is to come.
        if applied and (
            not flight.changes
            or (flight.unchecked and self._add_split(flight))
            or _partly_applied(flight, self._shadow.text)
        ):
            flight.answered = True
        else:
            with self._doc.transaction(origin=self.origin):
                self._not_applied(said_applied=applied)

    def _not_applied(self, *, said_applied: bool = True) -> None:
        """The edit in flight was not applied; ``said_applied``: the editor said it was (or
        did not answer), so its changes may be an echo the bridge did not recognise."""
        flight = self._flight
        assert flight is not None
        self._flight = None
        self._queued = flight.sent.compose(self._queued)
        if said_applied and _reinserts(flight):
            # The editor's changes hold the text of the edit it did not apply: its echo in a
            # shape the bridge does not know? Fed as typing, the edit would be sent again and
            # come back again, growing the text each time (a loop). After ``runaway_limit``
            # such edits in a row, stop: drop the changes (the CRDT wins, as in check()), count
            # a repair and send nothing until the editor changes something on its own.
            self._suspect += 1
            if self._suspect >= self.runaway_limit:
                self._suspect = 0
                self._stalled = True
                self.runaways += 1
                self.repairs += 1
                self._queued = diff(self._shadow.text, self._mirror.text)
                return
        else:
            self._suspect = 0
        for op in flight.changes:
            self._feed(op)

    # --- safety net ---------------------------------------------------------------------------

    def check(self) -> bool:
        """Verify the invariants (O(n)); repair and count a repair when one is broken.

        Returns ``True`` when everything was consistent. While an edit is in flight only the
        mirror is checked.
        """
        current = str(self._text)
        repaired = False
        if self._mirror.text != current:
            self._resync_mirror(current)
            repaired = True
        if self._flight is None:
            shadow = self._shadow.text
            queued = self._queued
            if queued.base_length != len(shadow) or queued.apply(shadow) != current:
                self._queued = diff(shadow, current)
                repaired = True
        if repaired:
            self.repairs += 1
        return not repaired

    def _resync_mirror(self, current: str) -> None:
        missed = diff(self._mirror.text, current)
        self._mirror = LineIndex(current)
        if self._queued.target_length == missed.base_length:
            self._queued = self._queued.compose(missed)
        elif self._flight is None:
            self._queued = diff(self._shadow.text, current)


def _reinserts(flight: _Flight) -> bool:
    """Whether the changes buffered during ``flight`` insert all the text its edit inserts
    (each inserted piece found among theirs): an echo in disguise rather than typing."""
    sent = [edit.text for edit in flight.sent.edits() if edit.text]
    if not sent or not flight.changes:
        return False
    typed = "".join(part for op in flight.changes for part in op.parts if isinstance(part, str))
    return all(piece in typed for piece in sent)


def _reproduces(op: TextOp, index: LineIndex) -> bool:
    """Whether ``op`` leaves the text of ``index`` unchanged, reading only what it touches."""
    if op.base_length != op.target_length:
        return False
    source = 0  # where we are in the input
    out = 0  # where we are in the output, which must equal the input text
    for part in op.parts:
        if isinstance(part, str):
            if index.slice(out, out + len(part)) != part:
                return False
            out += len(part)
        elif part > 0:
            if source != out and not _same(index, source, out, part):
                return False
            source += part
            out += part
        else:
            source -= part
    return True


def _same(index: LineIndex, first: int, second: int, length: int) -> bool:
    """``text[first:first+length] == text[second:second+length]``, stopping early."""
    step = 64
    while length > 0:
        n = min(step, length)
        if index.slice(first, first + n) != index.slice(second, second + n):
            return False
        first += n
        second += n
        length -= n
        step *= 2
    return True


def _rewrite(length: int, wire: list[Edit], variant: list[Edit]) -> TextOp:
    """From the text ``wire`` produces (``length`` code points) to the one ``variant`` does:
    only the line breaks that differ are replaced."""
    fixes: list[Edit] = []
    shift = 0
    for old, new in zip(wire, variant, strict=True):
        pos = old.start + shift
        for was, now in zip(_EOL_TOKENS.split(old.text), _EOL_TOKENS.split(new.text), strict=True):
            if was != now:
                fixes.append(Edit(pos, pos + len(was), now))
            pos += len(was)
        shift += len(old.text) - (old.end - old.start)
    return TextOp.from_edits(length, fixes)


def _trim(old: str, start: int, end: int, new: str) -> tuple[int, int, str]:
    """Narrow the replacement of ``old`` (at [start, end)) by ``new`` to what differs."""
    limit = min(len(old), len(new))
    head = _common_run(old, new, limit, forward=True)
    tail = _common_run(old, new, limit - head, forward=False)
    return start + head, end - tail, new[head : len(new) - tail]


def _partly_applied(flight: _Flight, shadow: str) -> bool:
    """Whether the buffered changes applied some of the sent edits, the rest still to come:
    the text the edit leads to is the shadow with a proper prefix of the sent edits applied
    (those earlier in the document keep their offsets when the later ones are applied first).
    O(n) per candidate; only called when an answer meets buffered changes."""
    for candidate in flight.candidates:
        # The candidate's own edits: as sent (CRLF-widened) or with line breaks rewritten.
        sent = candidate.edits
        if len(sent) < 2 or candidate.split == len(flight.changes):
            continue  # one edit, or nothing of it applied yet
        target = candidate.pending.apply(shadow)
        for count in range(1, len(sent)):
            try:
                partial = TextOp.from_edits(len(shadow), sent[:count])
            except BridgeError:  # the edits' offsets do not fit the shadow: not a partial echo
                break
            if partial.apply(shadow) == target:
                return True
    return False


def _narrow(op: TextOp, index: LineIndex) -> TextOp:
    """``op`` on the text of ``index`` with each replacement narrowed to what differs, and two
    neighbouring replacements dropped where together they change nothing (text moved across
    a stretch that reads the same either way, such as ``"ab" + "a"`` to ``"a" + "ba"``).
    Reads only what it replaces and what lies between neighbours that close."""
    kept: list[Edit] = []
    for edit in op.edits():
        start, end, text = _trim(index.slice(edit.start, edit.end), edit.start, edit.end, edit.text)
        if start == end and not text:
            continue
        if kept:
            last = kept[-1]
            size = last.end - last.start + len(last.text) + end - start + len(text)
            if start - last.end <= size and index.slice(last.start, end) == (
                last.text + index.slice(last.end, start) + text
            ):
                kept.pop()
                continue
        kept.append(Edit(start, end, text))
    return TextOp.from_edits(op.base_length, kept)
