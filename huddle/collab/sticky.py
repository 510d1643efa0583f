"""Positions shared with the room, in one place: code points of a text <-> Yjs relative positions
(``StickyIndex`` JSON), whose offsets count UTF-16 units.

pycrdt panics (a Rust panic surfacing as ``PanicException``, a ``BaseException``, after printing
a backtrace) instead of raising on two inputs that arrive from other peers every day: a relative
position naming an item this replica has not received yet, and an index past the end of a text.
Both are checked before pycrdt sees them, and the one guard below catches what slips through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pycrdt import Assoc, Doc, StickyIndex, Text

from huddle.collab import wire
from huddle.collab.positions import LineIndex

_T = TypeVar("_T")


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def _guarded(call: Callable[[], _T]) -> _T | None:
    """``call()``, or None where pycrdt refuses its input: by raising, or by panicking."""
    try:
        return call()
    except (ValueError, KeyError, TypeError, RuntimeError, OverflowError):
        return None
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        return None


def utf16_of(index: LineIndex, offset: int) -> int:
    """Code points -> UTF-16 units (Yjs positions). O(1) for ASCII text, else O(offset)."""
    if index.byte_length == len(index):
        return offset
    return len(index.slice(0, offset).encode("utf-16-le")) // 2


class Utf16Offsets:
    """UTF-16 units -> code points of one text, clamped to it: O(1) for ASCII text; else the
    text is encoded once, then O(units) per lookup."""

    def __init__(self, index: LineIndex) -> None:
        self.index = index
        self._encoded: bytes | None = None

    def offset_of(self, units: int) -> int:
        index = self.index
        if index.byte_length == len(index):
            return min(units, len(index))
        if self._encoded is None:
            self._encoded = index.text.encode("utf-16-le")
        return len(self._encoded[: 2 * units].decode("utf-16-le", errors="ignore"))


def code_points(content: str, units: int) -> int | None:
    """UTF-16 units -> code points of ``content``, exactly: None past the end or inside a
    surrogate pair (a position no editor could have meant)."""
    if content.isascii():
        return units if 0 <= units <= len(content) else None
    count = 0
    for index, char in enumerate(content):
        if count >= units:
            return index if count == units else None
        count += 2 if ord(char) > 0xFFFF else 1
    return len(content) if count == units else None


def sticky_position(text: Text, index: LineIndex, offset: int) -> dict[str, Any] | None:
    """A Yjs relative position for ``offset`` (code points of ``index``, the text as this
    replica shares it), or None for an empty text (a cursor there needs no anchor)."""
    units = utf16_of(index, min(offset, len(index)))
    total = utf16_of(index, len(index))
    if total == 0:
        return None
    if min(units, total) > len(text):
        # The editor is ahead of the shared text (remote deletes on their way). len() counts
        # UTF-8 bytes, never fewer than UTF-16 units: past it is surely past the end.
        return None
    assoc = Assoc.AFTER if units < total else Assoc.BEFORE
    try:
        return dict(StickyIndex.new(text, min(units, total), assoc).to_json())
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        return None


class StickyResolver:
    """Yjs relative positions -> UTF-16 offsets in one document's texts. Long-lived: the
    document's state vector is kept as a lower bound (a replica's only grows) and decoded again
    only for a position naming an item past it, so one resolver can serve every presence tick.

    :meth:`parse` checks a position once (the costly part: it comes as JSON from anyone);
    :meth:`index` then reads where it is now, as often as the text changes."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.doc = doc
        self._known: dict[int, int] = {}

    def _received(self, client: int, clock: int) -> bool:
        if clock < self._known.get(client, 0):
            return True
        self._known = wire.decode_state_vector(self.doc.get_state())
        return clock < self._known.get(client, 0)

    def parse(self, text: Text, relative: object) -> StickyIndex | None:
        """``relative`` (StickyIndex JSON from anyone) as a position in ``text``'s document;
        None if it is malformed or names an item this replica does not have yet (parse it
        again later: it may arrive)."""
        if not isinstance(relative, dict):
            return None
        item = relative.get("item")
        if item is not None:
            if not isinstance(item, dict):
                return None
            client, clock = item.get("client"), item.get("clock")
            if type(client) is not int or type(clock) is not int:
                return None
            if not self._received(client, clock):
                return None  # pycrdt would panic on an item it has not received
        return _guarded(lambda: StickyIndex.from_json(relative, text))

    @staticmethod
    def index(sticky: StickyIndex) -> int | None:
        """The UTF-16 offset a position from :meth:`parse` points at now (None: it cannot be
        read, which pycrdt may say by panicking)."""
        return _guarded(lambda: int(sticky.get_index()))

    def units(self, text: Text, relative: object) -> int | None:
        """The UTF-16 offset ``relative`` (StickyIndex JSON from anyone) points at in ``text``;
        None if it is malformed or names an item this replica does not have yet."""
        sticky = self.parse(text, relative)
        return None if sticky is None else self.index(sticky)
