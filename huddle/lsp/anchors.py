"""Positions shared with the room: code points of the editor's text <-> Yjs relative positions
(``StickyIndex``), whose offsets count UTF-16 units."""

from __future__ import annotations

from typing import Any

from pycrdt import Assoc, StickyIndex, Text

from huddle.collab.positions import LineIndex


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


def sticky_position(text: Text, index: LineIndex, offset: int) -> dict[str, Any] | None:
    """A Yjs relative position for ``offset`` (code points of ``index``), or None."""
    units = utf16_of(index, min(offset, len(index)))
    total = utf16_of(index, len(index))
    if total == 0:
        return None
    if min(units, total) > len(text):
        # The editor is ahead of the shared text (remote deletes on their way). len() counts
        # UTF-8 bytes, never fewer than UTF-16 units: past it is surely past the end, where
        # pycrdt would panic (and print a Rust backtrace) rather than raise.
        return None
    assoc = Assoc.AFTER if units < total else Assoc.BEFORE
    try:
        return dict(StickyIndex.new(text, min(units, total), assoc).to_json())
    except BaseException as exc:  # pycrdt panics on an index past the end of the text
        if type(exc).__name__ != "PanicException":
            raise
        return None
