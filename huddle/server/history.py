"""A room as of any kept time, and what changed between two times and who changed it.

"As of ``ts``": the newest history point at or before ``ts`` plus every journal row after it
with a time before ``ts``, applied in commit (seq) order: pycrdt can drop an update applied
before one it depends on, and the hub committed them in an order that respects that. Updates
still on their way to the store at ``ts`` are not part of it.

The rows are read on the store's thread; the rebuild runs in a worker thread, which creates
and uses its own pycrdt Doc, so neither commits nor the event loop wait on a big room.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc

from huddle.collab import schema
from huddle.server.errors import ServerError
from huddle.server.store import Database, JournalEntry, Store

log = logging.getLogger("huddle.history")

_LINE = re.compile(r"[^\n]*\n|[^\n]+")  # "\n" only: str.splitlines also splits on \f, \r, ...
_NO_EOL = "\n\\ No newline at end of file\n"


class HistoryGap(ServerError):
    """The journal needed to rebuild the room as of ``at`` was trimmed (``history_days``)."""

    def __init__(self, room: str, at: float, kept_from: float | None) -> None:
        since = "" if kept_from is None else f" before {_iso(kept_from)}"
        super().__init__(f"history of room {room!r}{since} is no longer kept")
        self.room = room
        self.at = at
        self.kept_from = kept_from


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    before: str | None  # None: the file did not exist at `since`
    after: str | None  # None: the file no longer exists at `until`
    authors: tuple[str, ...]  # sorted; whose updates in [since, until) touched this file
    added_lines: int
    removed_lines: int
    diff: str  # unified, "a/<path>" -> "b/<path>", 3 lines of context; "" if the texts are equal


@dataclass(frozen=True, slots=True)
class _Span:
    base: bytes | None
    entries: list[JournalEntry]


async def texts_at(store: Store, room: str, ts: float) -> dict[str, str]:
    """Every file's text as of ``ts``; raises ``HistoryGap`` when that is no longer kept."""
    span = await store.call(lambda db: _span(db, room, ts, ts))
    return await asyncio.to_thread(_texts_of, span)


async def file_changes(
    store: Store, room: str, since: float, until: float | None = None
) -> list[FileChange]:
    """The files that differ between ``since`` and ``until`` (default: every stored update),
    sorted by path. A file whose text is the same at both ends is left out even when someone
    touched it in between (typed, then deleted): it did not change. ``authors`` are the users
    whose updates in [since, until) edited, created, replaced or removed the file."""
    if until is not None and until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    span = await store.call(lambda db: _span(db, room, since, until))
    return await asyncio.to_thread(_changes_of, span, since)


def _span(db: Database, room: str, at: float, until: float | None) -> _Span:
    base = db.history_base(room, at)
    if base is None:
        raise HistoryGap(room, at, db.history_kept_from(room))
    return _Span(base.state, db.journal(room, after_seq=base.seq, until=until))


# -- worker thread ---------------------------------------------------------------------


def _apply(doc: Doc[Any], update: bytes) -> None:
    try:
        doc.apply_update(update)
    except ValueError:  # the room skipped it when loading too
        log.error("skipped a stored update that does not decode")


def _doc(base: bytes | None, updates: Iterable[bytes]) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if base:
        _apply(doc, base)
    for update in updates:
        _apply(doc, update)
    return doc


def _texts_of(span: _Span) -> dict[str, str]:
    return schema.file_texts(_doc(span.base, (e.update for e in span.entries)))


def _changes_of(span: _Span, since: float) -> list[FileChange]:
    doc = _doc(span.base, (e.update for e in span.entries if e.ts < since))
    before = schema.file_texts(doc)
    touched: dict[str, set[str]] = {}
    author = ""

    def record(events: list[Any]) -> None:
        for event in events:
            if event.path:  # inside a file: a TextEvent at [path]
                touched.setdefault(str(event.path[0]), set()).add(author)
            else:  # the files map itself: files added, replaced or removed
                for key in event.keys:
                    touched.setdefault(str(key), set()).add(author)

    files = schema.files(doc)
    subscription = files.observe_deep(record)
    try:
        for entry in span.entries:
            if entry.ts >= since:
                author = entry.user
                _apply(doc, entry.update)
    finally:
        files.unobserve(subscription)
    after = schema.file_texts(doc)
    return [
        _change(path, before.get(path), after.get(path), touched.get(path, set()))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def _change(path: str, before: str | None, after: str | None, authors: set[str]) -> FileChange:
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
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
