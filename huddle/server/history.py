"""A room as of any kept time, and what changed between two times and who changed it.

"As of ``ts``": the newest history point at or before ``ts`` plus every journal row after it
with a time before ``ts``, applied in commit (seq) order: pycrdt can drop an update applied
before one it depends on, and the hub committed them in an order that respects that. Updates
still on their way to the store at ``ts`` are not part of it.

Cost: a rebuild replays the journal from a history point. The rows are read a bounded page at
a time on the store's thread and applied page by page in worker threads, so neither commits nor
the event loop wait on a big room, a cancelled rebuild stops after the page in hand, and what
it held goes with it (``live_rebuilds`` counts the rebuilt docs still alive). ``ReplayLimits``
bound one rebuild: over them, the period is shortened to its most recent part that fits (from a
later history point) or refused (``TooMuchHistory``), and only the most recently changed files
that fit are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import logging
import math
import re
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pycrdt import Doc, Map, Subscription, Text

from huddle.collab import schema
from huddle.server.errors import ServerError
from huddle.server.store import JournalEntry, SqlDatabase, Store

log = logging.getLogger("huddle.history")

T = TypeVar("T")

_LINE = re.compile(r"[^\n]*\n|[^\n]+")  # "\n" only: str.splitlines also splits on \f, \r, ...
_NO_EOL = "\n\\ No newline at end of file\n"
_PAGE_ROWS = 2000  # journal rows read and applied in one step
_PAGE_BYTES = 2 * 1024 * 1024  # ... and their bytes, at most (one row may be larger)
_DIFF_STEP_CHARS = 1024 * 1024  # text compared in one worker-thread step

_live: weakref.WeakSet[Doc[Any]] = weakref.WeakSet()


def live_rebuilds() -> int:
    """Rebuilt docs still alive: 0 once every rebuild has finished or been cancelled and
    nothing holds what it built."""
    return len(_live)


class HistoryGap(ServerError):
    """The journal needed to rebuild the room as of ``at`` was trimmed (``history_days``)."""

    def __init__(self, room: str, at: float, kept_from: float | None) -> None:
        since = "" if kept_from is None else f" before {_iso(kept_from)}"
        super().__init__(f"history of room {room!r}{since} is no longer kept")
        self.room = room
        self.at = at
        self.kept_from = kept_from


@dataclass(frozen=True, slots=True)
class ReplayLimits:
    """What one rebuild may cost; None: no bound."""

    max_updates: int | None = None  # stored updates replayed
    max_bytes: int | None = None  # their bytes
    max_text_chars: int | None = None  # text of changed files compared (before and after)
    max_files: int | None = None  # changed files compared

    def fits(self, rows: int, size: int) -> bool:
        return (self.max_updates is None or rows <= self.max_updates) and (
            self.max_bytes is None or size <= self.max_bytes
        )


class TooMuchHistory(ServerError):
    """Rebuilding the asked period would replay more than ``ReplayLimits`` allow, and no later
    history point within it brings that under them."""

    def __init__(self, room: str, since: float, rows: int, size: int) -> None:
        super().__init__(
            f"room {room!r} holds {rows} stored updates ({size / 2**20:.1f} MiB) from "
            f"{_iso(since)}, more than a summary may replay, and no later history point "
            "brings that within the limit: ask about a shorter period"
        )
        self.rows = rows
        self.size = size


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    before: str | None  # None: the file did not exist at `since`
    after: str | None  # None: the file no longer exists at `until`
    authors: tuple[str, ...]  # sorted; whose updates in [since, until) touched this file
    added_lines: int
    removed_lines: int
    diff: str  # unified, "a/<path>" -> "b/<path>", 3 lines of context; "" if the texts are equal
    changed_at: float = field(default=0.0, compare=False)  # time of the last update touching it


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What ``changes_between`` found, and what it left out to stay within its limits."""

    changes: list[FileChange]  # sorted by path
    since: float  # where the period starts: later than asked when ``shortened``
    shortened: bool  # the asked period held too much history; this is its most recent part
    omitted: int  # changed files not compared (text or file limit): the oldest changes


@dataclass(frozen=True, slots=True)
class _Plan:
    base_seq: int
    since: float  # as asked, or a later history point's time when shortened
    until: float | None
    last_seq: int  # the journal's end when planned: commits after that are not replayed
    shortened: bool


async def texts_at(store: Store, room: str, ts: float) -> dict[str, str]:
    """Every file's text as of ``ts``; raises ``HistoryGap`` when that is no longer kept."""
    plan, base = await store.call(functools.partial(_plan, room=room, since=ts, until=ts))
    async with _rebuilt(store, room, plan, base, record=False) as replay:
        del base
        return await _in_thread(replay.texts)


async def file_changes(
    store: Store, room: str, since: float, until: float | None = None
) -> list[FileChange]:
    """The files that differ between ``since`` and ``until`` (default: every stored update),
    sorted by path. A file whose text is the same at both ends is left out even when someone
    touched it in between (typed, then deleted): it did not change. ``authors`` are the users
    whose updates in [since, until) edited, created, replaced or removed the file."""
    return (await changes_between(store, room, since, until)).changes


async def changes_between(
    store: Store,
    room: str,
    since: float,
    until: float | None = None,
    *,
    limits: ReplayLimits = ReplayLimits(),
    skip: Callable[[str, frozenset[str]], bool] | None = None,
) -> ChangeSet:
    """``file_changes`` within ``limits``. ``skip(path, authors)`` leaves a changed file out
    before it is compared (private files: they cost nothing and are never diffed). Raises
    ``HistoryGap`` or ``TooMuchHistory``."""
    if until is not None and until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    plan, base = await store.call(
        functools.partial(_plan, room=room, since=since, until=until, limits=limits)
    )
    async with _rebuilt(store, room, plan, base, record=True) as replay:
        del base
        chosen, omitted = await _in_thread(functools.partial(_choose, replay, limits, skip))
    del replay
    changes: list[FileChange] = []
    while chosen:  # compared in bounded steps, newest first
        step: list[_Chosen] = []
        size = 0
        while chosen and (not step or size < _DIFF_STEP_CHARS):
            item = chosen.pop()
            step.append(item)
            size += len(item[1] or "") + len(item[2] or "")
        changes += await _in_thread(functools.partial(_diff_all, step))
    changes.sort(key=lambda c: c.path)
    return ChangeSet(changes, plan.since, plan.shortened, omitted)


# -- store thread ----------------------------------------------------------------------


def _plan(
    db: SqlDatabase,
    *,
    room: str,
    since: float,
    until: float | None,
    limits: ReplayLimits = ReplayLimits(),
) -> tuple[_Plan, bytes | None]:
    base = db.history_base(room, since)
    if base is None:
        raise HistoryGap(room, since, db.history_kept_from(room))
    rows, size, last = db.journal_extent(room, after_seq=base.seq, until=until)
    if limits.fits(rows, size):
        return _Plan(base.seq, since, until, last, False), base.state
    # Too much to replay: start from the earliest later history point from which it fits
    # (what is left to replay only shrinks as the start moves later).
    points = db.history_points(room, after=since, before=math.inf if until is None else until)
    low, high, found = 0, len(points), None
    while low < high:
        middle = (low + high) // 2
        extent = db.journal_extent(room, after_seq=points[middle][0], until=until)
        if limits.fits(extent[0], extent[1]):
            found, high = points[middle], middle
        else:
            low = middle + 1
    if found is None:
        raise TooMuchHistory(room, since, rows, size)
    point = db.history_base(room, found[1])
    if point is None:
        raise HistoryGap(room, found[1], db.history_kept_from(room))
    return _Plan(point.seq, found[1], until, last, True), point.state


def _page(db: SqlDatabase, *, room: str, after: int, plan: _Plan) -> list[JournalEntry]:
    return db.journal_page(
        room,
        after_seq=after,
        upto_seq=plan.last_seq,
        until=plan.until,
        max_rows=_PAGE_ROWS,
        max_bytes=_PAGE_BYTES,
    )


def _still_kept(db: SqlDatabase, *, room: str, plan: _Plan) -> None:
    """The rows were read page by page: fail rather than be wrong if the journal was trimmed
    (``history_days``) while they were."""
    if db.history_base(room, plan.since) is None:
        raise HistoryGap(room, plan.since, db.history_kept_from(room))


# -- worker threads ----------------------------------------------------------------------


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run one bounded step in a worker thread. Cancelled meanwhile, wait for the step to end
    (it is short) before passing the cancellation on, so nothing still works on, or holds, a
    rebuild whose caller has gone."""
    step = asyncio.get_running_loop().run_in_executor(None, fn)
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        await asyncio.wait({step})
        raise


@contextlib.asynccontextmanager
async def _rebuilt(
    store: Store, room: str, plan: _Plan, base: bytes | None, *, record: bool
) -> AsyncIterator[_Replay]:
    replay = _Replay(plan.since if record else None)
    try:
        await _in_thread(functools.partial(replay.start, base))
        del base
        after = plan.base_seq
        while after < plan.last_seq:
            page = await store.call(functools.partial(_page, room=room, after=after, plan=plan))
            if not page:
                break
            after = page[-1].seq
            await _in_thread(functools.partial(replay.apply, page))
            del page
        await store.call(functools.partial(_still_kept, room=room, plan=plan))
        yield replay
    finally:
        replay.close()


class _Replay:
    """One rebuild: a Doc fed page by page, one step at a time, each in a worker thread.
    With ``since``, it keeps the files' texts as of ``since`` and records who touched which
    file, and when, from then on."""

    def __init__(self, since: float | None) -> None:
        self._doc: Doc[Any] | None = Doc()
        _live.add(self._doc)
        self._since = since
        self.before: dict[str, str] | None = None
        self.touched: dict[str, set[str]] = {}
        self.touched_at: dict[str, float] = {}
        self._author = ""
        self._ts = 0.0
        self._observed: tuple[Map[Text], Subscription] | None = None

    @property
    def doc(self) -> Doc[Any]:
        if self._doc is None:
            raise RuntimeError("the rebuild is closed")
        return self._doc

    def start(self, base: bytes | None) -> None:
        if base:
            _apply(self.doc, base)

    def apply(self, entries: list[JournalEntry]) -> None:
        doc = self.doc
        for entry in entries:
            if self._since is not None and self.before is None and entry.ts >= self._since:
                self.before = schema.file_texts(doc)
                files = schema.files(doc)  # unobserve wants the very object observed
                self._observed = (files, files.observe_deep(self._record))
            self._author, self._ts = entry.user, entry.ts
            _apply(doc, entry.update)

    def _record(self, events: list[Any]) -> None:
        for event in events:
            # inside a file: a TextEvent at [path]; else the files map itself: files added,
            # replaced or removed
            for key in [event.path[0]] if event.path else event.keys:
                self.touched.setdefault(str(key), set()).add(self._author)
                self.touched_at[str(key)] = self._ts

    def texts(self) -> dict[str, str]:
        return schema.file_texts(self.doc)

    def close(self) -> None:
        """Drop the doc; the observer goes first, as it refers back to this object through
        the doc (a cycle the garbage collector cannot see into)."""
        observed, self._observed = self._observed, None
        if observed is not None:
            observed[0].unobserve(observed[1])
        self._doc = None


_Chosen = tuple[str, str | None, str | None, frozenset[str], float]


def _choose(
    replay: _Replay,
    limits: ReplayLimits,
    skip: Callable[[str, frozenset[str]], bool] | None,
) -> tuple[list[_Chosen], int]:
    """The changed files to compare, oldest first: the most recently changed that fit
    ``limits``; and how many changed files were left out for them."""
    after = replay.texts()
    before = after if replay.before is None else replay.before
    changed = []
    for path in before.keys() | after.keys():
        if before.get(path) == after.get(path):
            continue
        authors = frozenset(replay.touched.get(path, ()))
        if skip is not None and skip(path, authors):
            continue
        changed.append((replay.touched_at.get(path, 0.0), path, authors))
    changed.sort(key=lambda c: (-c[0], c[1]))
    chosen: list[_Chosen] = []
    room = math.inf if limits.max_text_chars is None else limits.max_text_chars
    for at, path, authors in changed:
        if limits.max_files is not None and len(chosen) >= limits.max_files:
            break
        cost = len(before.get(path) or "") + len(after.get(path) or "")
        if cost <= room:
            room -= cost
            chosen.append((path, before.get(path), after.get(path), authors, at))
    chosen.reverse()
    return chosen, len(changed) - len(chosen)


def _diff_all(items: list[_Chosen]) -> list[FileChange]:
    return [_change(*item) for item in items]


def _apply(doc: Doc[Any], update: bytes) -> None:
    try:
        doc.apply_update(update)
    except ValueError:  # the room skipped it when loading too
        log.error("skipped a stored update that does not decode")


def _change(
    path: str, before: str | None, after: str | None, authors: frozenset[str], at: float
) -> FileChange:
    lines = list(
        difflib.unified_diff(
            _LINE.findall(before or ""), _LINE.findall(after or ""), f"a/{path}", f"b/{path}", n=3
        )
    )
    body = lines[2:]  # after the two file headers
    return FileChange(
        path=path,
        before=before,
        after=after,
        authors=tuple(sorted(authors)),
        added_lines=sum(1 for line in body if line.startswith("+")),
        removed_lines=sum(1 for line in body if line.startswith("-")),
        diff="".join(line if line.endswith("\n") else line + _NO_EOL for line in lines),
        changed_at=at,
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
