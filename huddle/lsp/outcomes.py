"""What became of the completion on offer, read from the editor's own changes, so it works in
every LSP editor; the hub is told (``completion_outcome``).

The completion is watched where it would be inserted: a zone of the editor's text that starts
empty at the cursor and grows with what is inserted at its end (the editor accepting it, all
at once or a word at a time, or the user typing it). Changes before the zone move it; changes
after it leave it be. The outcome:

- the zone holds the whole completion: *accepted*;
- the zone stops being a start of the completion (the user typed something else): *partly*
  if it shares a start with it, else *ignored*;
- otherwise it is decided when another completion is shown, the file is closed, or
  ``BOUND_S`` passes: *partly* if a start of it was inserted, else *ignored*.

The editor may also say it accepted (``huddle.completionAccepted``: VS Code runs the item's
command on accept, Huddle's Neovim plugin sends it from its accept key): that decides it too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from huddle.collab.bridge import TextChange
from huddle.collab.errors import CollabError
from huddle.collab.positions import LineIndex, PositionEncoding
from huddle.protocol import (
    AcceptanceStats,
    CompletionOutcome,
    CompletionOutcomeParams,
    CompletionOutcomeResult,
    HubMethod,
    RpcError,
)

if TYPE_CHECKING:
    from huddle.lsp.workspace import Workspace

log = logging.getLogger("huddle.lsp.outcomes")

BOUND_S = 30.0
_DECIDED = 256  # ids remembered as decided, so a late report of one is not counted twice


@dataclass
class Watch:
    uri: str
    id: str
    text: str  # the whole completion
    start: int  # code points into the editor's text
    end: int  # the end of what was inserted at ``start`` since
    timer: asyncio.TimerHandle | None = None

    def moved(self, start: int, end: int, inserted: int) -> None:
        """The editor replaced ``[start, end)`` with ``inserted`` code points."""
        if start == end == self.end and inserted:
            self.end += inserted  # inserted at the zone's end: into it
        elif end <= self.start:
            shift = inserted - (end - start)
            self.start += shift
            self.end += shift
        elif start < self.end:  # overlaps the zone: the zone takes the change
            self.end = max(self.end, end) + inserted - (end - start)
            self.start = min(self.start, start)


class Outcomes:
    """The one completion on offer in this editor (there is one cursor), and its outcome."""

    def __init__(self, server: Workspace, bound_s: float = BOUND_S) -> None:
        self.server = server
        self.bound_s = bound_s
        self.watch: Watch | None = None
        self.stats: AcceptanceStats | None = None  # the hub's latest count for this user
        self._decided_ids: collections.deque[str] = collections.deque(maxlen=_DECIDED)

    def shown(self, uri: str, completion_id: str, text: str, start: int, end: int) -> None:
        """The completion ``completion_id`` (all of ``text``, to go at ``start``) is on offer;
        ``[start, end)`` already holds the start of it the user typed since it was asked."""
        watch = self.watch
        if watch is not None and watch.id == completion_id:
            return  # the same one again, what was typed of it is in the zone already
        if completion_id in self._decided_ids:
            return
        self.moved_on()
        loop = asyncio.get_running_loop()
        self.watch = Watch(uri, completion_id, text, start, end)
        self.watch.timer = loop.call_later(self.bound_s, self._expire, completion_id)

    def moved_on(self) -> None:
        """Another completion was asked for: the one on offer is over."""
        if self.watch is not None:
            self._decide_by_now(self.watch)

    def stop(self) -> None:
        """The session ends: the one on offer goes unreported."""
        if self.watch is not None and self.watch.timer is not None:
            self.watch.timer.cancel()
        self.watch = None

    def closed(self, uri: str) -> None:
        if self.watch is not None and self.watch.uri == uri:
            self._decide_by_now(self.watch)

    def accepted(self, completion_id: str) -> bool:
        """The editor says it accepted ``completion_id``; False if it is not the one on offer
        (decided already from the text)."""
        watch = self.watch
        if watch is None or watch.id != completion_id:
            return False
        self._decide(watch, "accepted", len(watch.text), "editor")
        return True

    def watching(self, uri: str) -> bool:
        return self.watch is not None and self.watch.uri == uri

    def changed(
        self, uri: str, before: str, changes: list[TextChange], encoding: PositionEncoding
    ) -> None:
        """A ``didChange`` of ``uri``: ``changes`` as the editor reported them, against the
        editor's text ``before`` them. O(n) in the text, only while a completion is on offer."""
        watch = self.watch
        if watch is None or watch.uri != uri:
            return
        index = LineIndex(before)
        try:
            for change in changes:
                if change.range is None:
                    start, end = 0, len(index)
                else:
                    start = index.offset_at(change.range.start, encoding)
                    end = index.offset_at(change.range.end, encoding)
                    start, end = min(start, end), max(start, end)
                old = index.slice(start, end)
                index.replace(start, end, change.text)
                # An editor that reports a line as replaced (Neovim's line diffs) changed only
                # what differs in it.
                start, end, new = _trimmed(old, start, end, change.text)
                watch.moved(start, end, len(new))
        except CollabError as exc:
            log.debug("lost track of the completion on offer: %s", exc)
            self._decide_by_now(watch)
            return
        inserted = index.slice(watch.start, watch.end)
        if inserted == watch.text:
            self._decide(watch, "accepted", len(inserted), "text")
        elif not watch.text.startswith(inserted):
            taken = _common_prefix(inserted, watch.text)
            self._decide(watch, "partly" if taken else "ignored", taken, "text")

    def _expire(self, completion_id: str) -> None:
        if self.watch is not None and self.watch.id == completion_id:
            self._decide_by_now(self.watch)

    def _decide_by_now(self, watch: Watch) -> None:
        taken = 0
        buffer = self.server.buffers.get(watch.uri)
        if buffer is not None and buffer.bridge is not None:
            shadow = buffer.bridge.shadow_index
            if watch.end <= len(shadow):
                inserted = shadow.slice(watch.start, watch.end)
                if watch.text.startswith(inserted):
                    taken = len(inserted)
        self._decide(watch, "partly" if taken else "ignored", taken, "text")

    def _decide(
        self,
        watch: Watch,
        outcome: CompletionOutcome,
        taken: int,
        source: Literal["text", "editor"],
    ) -> None:
        if watch.timer is not None:
            watch.timer.cancel()
        self.watch = None
        self._decided_ids.append(watch.id)
        params = CompletionOutcomeParams(
            id=watch.id, outcome=outcome, accepted_chars=taken, source=source
        )
        self.server.spawn(self._report(params))

    async def _report(self, params: CompletionOutcomeParams) -> None:
        session = self.server.session
        if session is None or session.client is None:
            return
        try:
            result = await session.client.call(
                HubMethod.COMPLETION_OUTCOME, params, CompletionOutcomeResult
            )
        except RpcError as exc:  # offline, or an older hub: the count is the hub's loss
            log.debug("the completion's outcome was not reported: %s", exc.message)
            return
        self.stats = result.acceptance


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _trimmed(old: str, start: int, end: int, new: str) -> tuple[int, int, str]:
    """``old`` at ``[start, end)`` replaced by ``new``, less the start and end they share."""
    head = _common_prefix(old, new)
    old, new, start = old[head:], new[head:], start + head
    tail = _common_prefix(old[::-1], new[::-1])
    return start, end - tail, new[: len(new) - tail]
