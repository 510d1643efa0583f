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

The events (remote changes, ``didChange`` idle and in flight, readings of ambiguous reports,
unchecked versions, the answer, the runaway guard, the end of the text and final newlines) and
the limitations are in ``docs/bridge.md``: what the bridge does with each and why, what it
cannot promise.

``check()`` verifies I1 (and I2 when idle) in O(n) and repairs what it finds (the CRDT wins);
each repair increments ``repairs``; in a correct run it stays 0.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Subscription, Text, TextEvent

from huddle.collab import readings
from huddle.collab.errors import CollabError
from huddle.collab.ops import (
    BridgeError,
    Component,
    Edit,
    TextOp,
    append_delete,
    append_insert,
    append_retain,
    common_run,
    diff,
    map_offset,
    transform,
)
from huddle.collab.positions import LineIndex, PositionEncoding, PositionError, Range

__all__ = ["ApplyEdit", "Bridge", "BridgeError", "TextChange", "TextEdit"]


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
_EOL_END = re.compile(r"(\r\n|\r|\n)\Z")


_MAX_EDITS = 8
"""An edit for an unchecked version is looked for on top of the user's typing only if it has at
most this many TextEdits (the work per buffered change grows with their square)."""

LATE_ECHO_WAIT = 32
"""For an editor whose "applied: true" is true (``late_applies``), how many further
notifications with changes may come after that answer before the edit's echo, each possibly
the user's typing under which the editor then applies it (VS Code: keystrokes it reported before
the workbench applied the edit). Past them the edit is taken as not applied, so that an echo
the bridge does not recognise cannot hold the user's typing out of the room for long. VS Code
reports every key it had queued as a notification of its own: a token typed at once (7 keys
in tests/editor_fuzz.py, seed 2011) came between the answer and the echo, and with a wait of
3 the echo was taken for typing (the teammate's line twice). Cheap while the editor is right:
each notification waited for adds one candidate, and only while the edit can land on it."""

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
    # ``sent`` as the queue had it, not narrowed (:meth:`_outgoing`): the same text, in the shape
    # the teammates made it. What goes back into the queue, and what the user's typing is
    # transformed over, where the edit was not applied or was applied over typing.
    intent: TextOp
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
        normalizes_eol: bool = False,
    ) -> None:
        """``text`` must be integrated in a ``Doc``. ``editor_text`` is the buffer the editor
        opened with (``didOpen``); when it differs from the CRDT, the first
        :meth:`next_apply_edit` turns it into the CRDT text. ``final_newline``: the editor
        keeps a final line break outside its lines (Neovim's ``eol``). ``runaway_limit``: how
        many edits in a row may come back as typing that re-inserts their own text before the
        bridge stops (see the module docstring). ``late_applies``: the editor's ``applied:
        true`` is true, and it may apply a checked edit over changes it reported before that
        answer (VS Code; not Neovim, which says it for edits it skipped). ``normalizes_eol``: the
        editor rewrites every line break it is sent to its own, one for the whole buffer
        (LSP's ``workspaceEdit.normalizesLineEndings``: VS Code)."""
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
        self.normalizes_eol = normalizes_eol
        self.runaway_limit = runaway_limit
        self.runaways = 0  # loops stopped (each also counted in ``repairs``)
        # Changes of the editor's brought into the CRDT: an echo of an edit brings none.
        self.fed = 0
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
            for k, change in enumerate(changes):
                self._editor_change(change, first=k == 0)
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

    def _editor_change(self, change: TextChange, *, first: bool = True) -> None:
        """One change of a notification; ``first``: the first of it."""
        shadow = self._shadow
        if change.range is None:
            start, end = 0, len(shadow)
        elif change.range.start == change.range.end:  # an insert (typing): one lookup
            start = end = shadow.offset_at(change.range.start, self.encoding)
        else:
            start = shadow.offset_at(change.range.start, self.encoding)
            end = shadow.offset_at(change.range.end, self.encoding)
            start, end = min(start, end), max(start, end)
        inserted = change.text
        if end > start and inserted and not self._exact:
            # Neovim reports a line break as replacing the rest of the line ("b c" -> "\nb c").
            # Fed as delete + re-insert, two such changes at once would double the tail, and a
            # concurrent deletion inside it would be undone: keep only what really changed.
            # Not an exact change (Huddle's Neovim plugin): the user replaced that range, and
            # the old text's edges are not the new one's ("<v4>\n<y9>" replaced by "<p13>ß"
            # kept the "<" of "<v4>" for "<p13>", and a teammate who deleted the line of
            # "<v4>" took it: "p13>", found by tests/editor_fuzz.py).
            start, end, inserted = _trim(shadow.slice(start, end), start, end, inserted)
        # A line diff admits several readings where the change borders on equal characters
        # ("x1" typed before "xyz" arrives as "1x" after its "x"): take the one the user meant.
        if self.line_diffs and not self._exact:
            start, end, inserted = readings.choose(shadow, start, end, inserted, self._caret)
        start, end, inserted, appended = self._line_after_kept_newline(start, end, inserted)
        self._caret = start + len(inserted)
        change = TextChange(change.range, inserted)
        op = TextOp.from_edit(len(shadow), start, end, change.text)
        flight = self._flight
        if flight is None:
            shadow.replace(start, end, change.text)
            self._feed(op, after_theirs=appended)
            return
        # VS Code (``late_applies``) reports an edit it applies, and each keystroke, as one
        # notification of its own: the user's typing ends only where a notification does.
        if flight.unchecked and flight.changes and (first or not self.late_applies):
            self._add_split(flight)
        deleted = shadow.slice(start, end)
        shadow.replace(start, end, change.text)
        flight.changes.append(op)
        undo = TextOp.from_edit(len(shadow), start, start + len(change.text), deleted)
        flight.undos.append(undo)
        match = self._match(flight, undo)
        if match is None:
            return
        # Where the echo ends is where the edit was sent, not the user's cursor: read as the
        # cursor, it put the user's next change of the notification (a line appended at the
        # end) right after a teammate's half-typed token, which the teammate's next key then
        # split (found by tests/editor_fuzz.py).
        self._caret = None
        if match.split:
            self._applied_over_typing(flight, match.split)
            return
        # The changes so far were the echo of the edit in flight.
        self._flight = None
        self._suspect = 0
        if match.correction is not None:
            self._feed(match.correction)

    def _line_after_kept_newline(
        self, start: int, end: int, text: str
    ) -> tuple[int, int, str, bool]:
        """Lines the user appended after a final line break that the editor keeps
        (:attr:`final_newline`) and the shared text lacks, read as that line break and the
        lines before it (``"c\n"`` after ``"a\nb\n"`` as ``"\nc"`` after ``"a\nb"``): the
        same buffer, but that line break is the editor's alone (the queue deletes it), so the
        other reading gave the room ``"a\nbc\n"``, the new line joined to the last, and the
        editor was then sent the join. The last value says whether it was read so: the new line
        then follows the room's whole last line, teammates' text not yet in the editor included
        (see :meth:`_feed`)."""
        size = len(self._shadow)
        if start != size or end != size or not text.endswith("\n"):
            return start, end, text, False  # (a kept line break ends with "\n": cheap first)
        kept = self._kept_newline()
        k = len(kept)
        if not kept or not text.endswith(kept):
            return start, end, text, False
        room = len(self._mirror)
        if room and self._mirror.slice(room - 1, room) == "\n":
            return start, end, text, False  # the room has a final line break of its own
        return size - k, size - k, kept + text[:-k], True

    def _match(self, flight: _Flight, undo: TextOp) -> _Candidate | None:
        """The candidate the buffered changes reproduce, if any, after one more (``undo``
        reverts it); candidates that can no longer be reproduced are dropped.

        Neovim reports each TextEdit it applies as one change: an echo longer than that is
        ruled out where the edit was applied over typing, and the last resort otherwise.
        VS Code reports an edit as the smallest changes that make it, last first, in one
        notification (``<a15>`` replaced by ``<p19>`` comes as ``5`` -> ``9`` and ``a`` ->
        ``p``), so its echo has no such bound: with one, the first change was taken for typing
        under the edit, and ``<p199>`` reached the room (found by tests/editor_fuzz.py).
        Nor does it spread an echo over notifications: where the edit replaces a range the user
        typed inside of meanwhile, the text with the edit applied over the typing is the text
        of the plain echo, and both fit; the typing's own notifications were not the echo, so
        the latest split wins (taken for part of the echo, the typing was lost)."""
        shadow = self._shadow
        count, limit = len(flight.changes), len(flight.ranges)
        bounded = not self.late_applies
        match: _Candidate | None = None
        alive = []
        for candidate in flight.candidates:
            candidate.pending = undo.compose(candidate.pending)
            if _reproduces(candidate.pending, shadow):
                if (
                    match is None
                    or (bounded and count - match.split > limit >= count - candidate.split)
                    or (not bounded and candidate.split > match.split)
                ):
                    match = candidate
            elif not bounded or not candidate.split or count - candidate.split < limit:
                alive.append(candidate)
        flight.candidates = alive
        return match

    def _add_split(self, flight: _Flight) -> bool:
        """Candidates for an editor that applies the edit in flight now, on top of the changes
        buffered so far, at the positions it was sent with (see :meth:`_applied_over_typing`);
        whether there are any.

        Neovim applies the TextEdits last first, each at its positions in the buffer as it is
        then, a ``character`` past the line's end clamped to it. That is applying them at once
        on the buffer unless a clamped position shares its line with the next edit's start
        (which changes the line's length first): there, or where a position is on no line or
        inside a character, the edit is not looked for. Nor where it changes nothing: that
        cannot be told from not applied. VS Code (``late_applies``) clamps a position on no
        line to the end of the text: the user deleted the final newline while an edit that
        appends after it was on its way, and VS Code appended at the new end; not looked for,
        its echo was fed as typing (the teammate's token twice, found by
        tests/editor_fuzz.py)."""
        split = len(flight.changes)
        if flight.candidates[-1].split == split:
            return True  # added when the answer came
        shadow = self._shadow
        ranges = flight.ranges
        spans = []
        for k, edit_range in enumerate(ranges):
            span = []
            for position in (edit_range.start, edit_range.end):
                if position.line >= shadow.line_count and not self.late_applies:
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
        typing = TextOp.identity(flight.intent.base_length)
        for op in flight.changes[:split]:
            typing = typing.compose(op)
        placed, typing = transform(flight.intent, typing)
        self._feed(typing)
        misplaced = TextOp.identity(len(self._shadow))
        for undo in reversed(flight.undos[split:]):
            misplaced = misplaced.compose(undo)
        # Only the move is narrowed: what the CRDT queued since keeps its shape (see _outgoing).
        self._queued = _narrow(misplaced.compose(placed), self._shadow).compose(self._queued)

    def _feed(self, op: TextOp, *, after_theirs: bool = False) -> None:
        """Bring a change the editor made (on the text before it) into the CRDT. Where it
        inserts at the same place as a teammate's change the editor has not seen, the editor's
        text goes first, unless ``after_theirs``: a line appended after the last line goes
        after what teammates added to that line (VS Code's ``<v`` typed at the end of the file
        stays on its line, seed 2001)."""
        if self._queued.is_noop:  # nothing on its way to the editor: nothing to transform over
            self._queued = TextOp.identity(op.target_length)
            mine = op
        elif after_theirs:
            self._queued, mine = transform(self._queued, op)
        else:
            mine, self._queued = transform(op, self._queued)
        self._apply(mine)

    def _apply(self, op: TextOp) -> None:
        if op.is_noop:
            return
        self.fed += 1
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
                append_insert(parts, inserted)
                continue
            step = item.get("retain", item.get("delete"))
            if not isinstance(step, int):
                raise BridgeError(f"unexpected delta item {item!r}")
            byte += step
            end = mirror.offset_of_byte(byte)
            if "retain" in item:
                append_retain(parts, end - offset)
            else:
                append_delete(parts, end - offset)
            offset = end
        append_retain(parts, len(mirror) - offset)
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
        sent, rest, intent = self._outgoing()
        if sent.is_noop:
            return None
        shadow = self._shadow
        wire, restyle = self._wire_edits(sent)
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
        wire_op = TextOp.from_edits(base, wire)
        candidates = [_Candidate(wire_op, restyle, wire)]
        for eol in ("\n", "\r\n"):
            variant = [Edit(edit.start, edit.end, _EOL.sub(eol, edit.text)) for edit in wire]
            if variant != wire:
                rewrite = _rewrite(wire_op.target_length, wire, variant)
                candidates.append(
                    _Candidate(
                        TextOp.from_edits(base, variant),
                        rewrite if restyle is None else restyle.compose(rewrite),
                        variant,
                    )
                )
        if self.normalizes_eol and self._applies_unchanged(candidates, rest):
            return None
        self._queued = rest
        self._last_id += 1
        ranges = tuple(edit.range for edit in edits)
        # Neovim applies an edit for version 0 (or null) without checking the buffer's version;
        # VS Code (``late_applies``) may apply a checked one over a keystroke it reports first,
        # and may report the edit before or after its answer.
        unchecked = (self.version <= 0 or self.late_applies) and len(wire) <= _MAX_EDITS
        self._flight = _Flight(self._last_id, sent, intent, candidates, ranges, unchecked)
        return ApplyEdit(self._last_id, self.version, edits)

    def _applies_unchanged(self, candidates: list[_Candidate], rest: TextOp) -> bool:
        """For an editor that rewrites the line breaks it is sent to its own
        (:attr:`normalizes_eol`): whether it would apply the edit to send as no change at all
        (a line break replaced by one of another style, where the editor's style is the one it
        has), and if so take that as done: the editor's text stays, and its rewrite goes into
        the CRDT as its own edit, as for an echo. Sent, such an edit is answered "applied: true"
        and never reported (VS Code): it stayed in flight for good, and nothing more reached
        the editor (found by tests/editor_fuzz.py)."""
        shadow = self._shadow
        for candidate in candidates[1:]:  # the first is the edit as sent: never a no-op
            if _reproduces(candidate.pending, shadow):
                self._queued = rest
                if candidate.correction is not None:
                    self._feed(candidate.correction)
                return True
        return False

    def _kept_newline(self) -> str:
        """The final line break of the shadow ("" if none): what an editor that keeps one
        outside its lines holds after any text of its own."""
        shadow = self._shadow
        size = len(shadow)
        if size and shadow.slice(size - 1, size) == "\n":
            return "\r\n" if size > 1 and shadow.slice(size - 2, size - 1) == "\r" else "\n"
        return ""

    def _outgoing(self) -> tuple[TextOp, TextOp, TextOp]:
        """``(send, rest, intent)`` with ``queued == send . rest``: ``send`` is what the editor
        can apply, ``rest`` what stays queued after it, ``intent`` the same change as ``send``
        in the queue's own shape. ``rest`` is empty except for an editor that keeps a final
        line break (:attr:`final_newline`) when the CRDT text lacks one: that editor's text is
        the CRDT's plus its line break, which it cannot delete and adds where an edit leaves it
        out, so the line break is left out of ``send``'s deletions and added to its target,
        and ``rest`` deletes it (never sent: idle, ``queued`` is then that deletion and I2
        still holds).

        ``send`` is then narrowed to what differs (the line break deleted and added back is no
        change), which also trims a teammate's replacement to the characters its old and new
        texts do not share: ``<y26>`` replaced by ``ß<e20>`` goes out keeping the old ``>``.
        The editor's text is the same either way, but the CRDT's ``>`` is the teammate's new
        one: where the edit came back not applied, the trimmed shape went back into the queue,
        and the user's concurrent typing there, transformed over it, went inside the
        teammate's token (``<e20 >``, found by tests/editor_fuzz.py). So ``intent``, untrimmed,
        is what goes back into the queue."""
        queued = self._queued
        size = queued.target_length
        identity = TextOp.identity(size)
        if not self.final_newline or self._flight is not None:
            return _changing(queued, self._shadow), identity, queued
        kept = self._kept_newline()
        mirror = self._mirror
        # An empty CRDT text lacks a final line break too (a teammate emptied the file): the
        # editor gets "" plus its line break. Reading its last character would raise.
        if not kept or len(mirror) != size or (size and mirror.slice(size - 1, size) == "\n"):
            return queued, identity, queued
        intent = queued.compose(TextOp((size, kept)))
        return _narrow(intent, self._shadow), TextOp((size, -len(kept))), intent

    def _wire_edits(self, op: TextOp) -> tuple[list[Edit], TextOp | None]:
        """``op`` as LSP-addressable edits: no boundary between the ``\\r`` and ``\\n`` of a
        CRLF (such a boundary is widened to the whole line break), and none past the final
        line break (:meth:`_before_final_newline`). With the rewrite from ``op``'s text to the
        edits' where they differ (that line break restyled), else None."""
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
        if not result:
            return result, None
        unmoved = result[-1]
        result[-1], restyled = self._before_final_newline(
            unmoved, result[-2] if len(result) > 1 else None
        )
        if not restyled:
            return result, None
        # The last edit ends the text, so its inserted text does too: only the final line break
        # differs, the shadow's now.
        size, was = op.target_length, _EOL_END.search(unmoved.text)
        assert was is not None
        fix = Edit(size - len(was.group()), size, self._kept_newline())
        return result, TextOp.from_edits(size, [fix])

    def _before_final_newline(self, edit: Edit, previous: Edit | None) -> tuple[Edit, bool]:
        """``edit`` moved before the shadow's final line break where it reaches past it, the
        result the same. A position after the final line break is a line Neovim does not have
        (its ``eol`` keeps the line break outside its lines): an edit there makes it append
        lines (``"c"`` at (2,0) of ``"a\\nb\\n"`` gives ``"a\\nb\\nc\\n"``; 0.10 and 0.12
        differ for ``"c\\n"``), while one that ends at the last line's end is applied as sent
        by every editor: ``"c\\n"`` at (2,0) is sent as ``"\\nc"`` at (1,1), and deleting
        ``"c\\n"`` after ``"b\\n"`` as deleting ``"\\nc"``.

        For an editor that keeps its final line break (:attr:`final_newline`), an inserted
        text that ends with another line break than the shadow's (a teammate's ``"c\\n"`` in a
        CRLF file) is moved with that line break restyled to the shadow's (``"\\r\\nc"``
        before the final ``"\\r\\n"``), and then says so (the second value): otherwise it
        would go out past the last line, where Neovim 0.10 appends a line of its own and the
        bridge took the echo for typing, forever (found by tests/editor_fuzz.py). Neovim
        rewrites every line break it is sent to its fileformat's anyway."""
        shadow = self._shadow
        size = len(shadow)
        kept = self._kept_newline()
        k = len(kept)
        if not kept or edit.end != size:
            return edit, False
        start, text = edit.start, edit.text
        tail = _EOL_END.search(text)
        if self.final_newline and tail is not None and tail.group() != kept:
            text = text[: tail.start()] + kept
        if text.endswith(kept) and start < size:  # it replaces the line break by itself
            if start > size - k:
                return edit, False
            moved = Edit(start, size - k, text[:-k])
        elif text.endswith(kept):  # an insert after the line break
            moved = Edit(size - k, size - k, kept + text[:-k])
        elif not text and start >= k and shadow.slice(start - k, start) == kept:
            moved = Edit(start - k, size - k, "")  # a deletion of whole last lines
        else:
            return edit, False
        if (previous is not None and previous.end > moved.start) or moved.text.endswith("\r"):
            return edit, False  # it would overlap, or put a "\r" before the kept "\n"
        for offset in (moved.start, moved.end):
            if 0 < offset < size and shadow.slice(offset - 1, offset + 1) == "\r\n":
                return edit, False  # LSP cannot address a position inside a CRLF
        return moved, text != edit.text

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
        self._queued = flight.intent.compose(self._queued)
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

    @property
    def awaiting_echo(self) -> bool:
        """An edit the editor said it applied is in flight, with changes the editor reported
        around its answer, none of them recognised as the edit's echo (``late_applies``: see
        :meth:`_echo_may_follow`)."""
        flight = self._flight
        return flight is not None and flight.answered and bool(flight.changes)

    def settle(self) -> None:
        """The editor went quiet while :attr:`awaiting_echo`: the echo came in a shape the
        bridge did not recognise. Waiting for more changes would hold the user's typing out of
        the room, and the room's edits out of the editor, until the user typed again (VS Code
        shrank a teammate's replacement on one text and applied the pieces to the next, after
        the user's cut, garbling it in its buffer; the edit stayed in flight for good:
        tests/editor_fuzz.py, seed 206635569). The edit is taken as applied, as the editor
        said, and whatever the editor's text holds beyond it as the user's, fed to the room.
        Counted in ``repairs``: a correct run never needs it. Not while the editor has
        reported nothing since it was sent the edit: eglot reports an applied edit only once
        the user stops typing (and rejects one sent for a version it has left)."""
        flight = self._flight
        if flight is None or not self.awaiting_echo:
            return
        self.repairs += 1
        before = self._shadow.text
        for undo in reversed(flight.undos):
            before = undo.apply(before)
        self._flight = None
        with self._doc.transaction(origin=self.origin):
            self._feed(diff(flight.sent.apply(before), self._shadow.text))

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
    (each inserted piece found among theirs): an echo in disguise rather than typing. Line
    breaks are compared whatever their style: editors rewrite them as they apply an edit
    (``"c\\n"`` echoed as ``"c\\r\\n"`` in a CRLF file), and an echo missed for that ran on
    without bound."""
    sent = [_EOL.sub("\n", edit.text) for edit in flight.sent.edits() if edit.text]
    if not sent or not flight.changes:
        return False
    typed = "".join(part for op in flight.changes for part in op.parts if isinstance(part, str))
    typed = _EOL.sub("\n", typed)
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
    head = common_run(old, new, limit, forward=True)
    tail = common_run(old, new, limit - head, forward=False)
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


def _changing(op: TextOp, index: LineIndex) -> TextOp:
    """``op`` on the text of ``index`` without the replacements of a text by itself. The queue
    composes a teammate's deletion and re-insertion of the same text (a line break) into one,
    which went out as an edit that changes nothing: VS Code answers it "applied: true" and
    reports nothing, and the edit stayed in flight for good (found by tests/editor_fuzz.py).
    Other edits go out as they are (not narrowed: where an edit lands next to the user's
    typing depends on its range). Reads only what ``op`` replaces."""
    edits = op.edits()
    kept = [edit for edit in edits if index.slice(edit.start, edit.end) != edit.text]
    return op if len(kept) == len(edits) else TextOp.from_edits(op.base_length, kept)


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
