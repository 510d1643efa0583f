"""Which of the equivalent readings of an editor's change the user meant.

An editor that reports changes as a diff of lines (Neovim's incremental sync: the span between
the old and new line's common prefix and common suffix) reports a text, not an intention. Where
the inserted (or deleted) text borders on the same characters, several changes lead to the
same buffer: ``"x1"`` typed before ``"xyz"`` is reported as ``"1x"`` inserted after its first
``x``, and deleting the line ``"foo\\n"`` before ``"foo bar"`` as deleting ``"\\nfoo"`` after
the first ``foo``. On its own buffer the readings are the same; next to a concurrent edit they
are not: a teammate who deleted ``"xyz"`` meanwhile would delete the user's new ``x`` and leave
``"1x"``.

The readings of one change form a window: an insert of ``t`` at ``p`` slides left while the
character before ``p`` equals ``t``'s last (``t`` rotates), right while the one after equals
its first; a deletion of ``[a, b)`` slides while the characters at its two edges agree.
:func:`choose` picks, in this order:

1. the reading that starts where the previous change of the same notification ended (the
   cursor: typing continues where it was; plain LSP carries no other cursor);
2. the reading that keeps the text around it whole: whole lines for an insert or a deletion
   that holds line breaks (before a line start, or after a line end), else word boundaries at
   its edges. Neovim's prefix-first diff puts every change as far right as it can, which moves
   a line typed above similar lines into the line below it, and a word typed before a similar
   one into that word;
3. short of whole lines, the reading whose text does not start with a closing bracket nor end
   with an opening one. ``<`` and ``>`` are not word characters, so a token ``<a2>`` typed
   before ``<e1>`` had two readings with word edges, ``<a2>`` and Neovim's ``a2><``, and the
   nearer one (Neovim's) left the new token's ``<`` to a teammate who deleted ``<e1>`` (found
   by tests/editor_fuzz.py);
4. the reading nearest to the reported one (the editor's own, where nothing speaks against it).

The choice changes nothing in the editor's buffer; it decides which characters the CRDT takes
for the user's new ones, and so where concurrent edits land.
"""

from __future__ import annotations

from huddle.collab.positions import LineIndex

__all__ = ["MAX_SLIDE", "choose"]

MAX_SLIDE = 256
"""How far (code points) a change is slid each way in search of readings: a bound on the work
per change in long runs of one character (indentation)."""

_BREAKS = "\r\n"
_OPENERS = "([{<"
_CLOSERS = ")]}>"


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def choose(
    index: LineIndex, start: int, end: int, text: str, caret: int | None = None
) -> tuple[int, int, str]:
    """The reading of "replace ``[start, end)`` of ``index``'s text with ``text``" to feed.

    Only a pure insert or a pure deletion has other readings; anything else is returned as it
    is. ``caret``: where the previous change of the same notification ended, if any."""
    if (start == end) == (not text):
        return start, end, text
    window = _Window(index, start, end)
    readings = window.readings(start, end, text)
    if len(readings) == 1:
        return start, end, text
    return max(readings, key=lambda reading: window.score(reading, start, caret))


class _Window:
    """The text around a change, as far as a reading of it can slide (``MAX_SLIDE``)."""

    def __init__(self, index: LineIndex, start: int, end: int) -> None:
        self.lo = max(0, start - MAX_SLIDE - 1)
        self.hi = min(len(index), end + MAX_SLIDE + 1)
        self.local = index.slice(self.lo, self.hi)
        self.size = len(index)

    def at(self, offset: int) -> str:
        return self.local[offset - self.lo]

    def line_start(self, offset: int) -> bool:
        return offset == 0 or self.at(offset - 1) == "\n"

    def line_end(self, offset: int) -> bool:
        return offset == self.size or self.at(offset) in _BREAKS

    def word_edge(self, offset: int) -> bool:
        return offset in (0, self.size) or not (
            _word(self.at(offset - 1)) and _word(self.at(offset))
        )

    def readings(self, start: int, end: int, text: str) -> list[tuple[int, int, str]]:
        """Every (start, end, text) that gives the same text: the change slid left and right
        over equal characters."""
        at, lo, hi = self.at, self.lo, self.hi
        found: list[tuple[int, int, str]] = [(start, end, text)]
        if text:  # an insert: t at p
            p, t = start, text
            while p > lo and start - p < MAX_SLIDE and at(p - 1) == t[-1]:
                p, t = p - 1, t[-1] + t[:-1]
                found.append((p, p, t))
            p, t = start, text
            while p < hi and p - start < MAX_SLIDE and at(p) == t[0]:
                p, t = p + 1, t[1:] + t[0]
                found.append((p, p, t))
        else:  # a deletion of [a, b)
            a, b = start, end
            while a > lo and start - a < MAX_SLIDE and at(a - 1) == at(b - 1):
                a, b = a - 1, b - 1
                found.append((a, b, ""))
            a, b = start, end
            while b < hi and a - start < MAX_SLIDE and at(a) == at(b):
                a, b = a + 1, b + 1
                found.append((a, b, ""))
        return found

    def score(
        self, reading: tuple[int, int, str], start: int, caret: int | None
    ) -> tuple[int, int, int, int]:
        """The rule of the module docstring, as a key: higher is preferred."""
        a, b, t = reading
        if t:
            cursor = a == caret
            lines = (t[-1] == "\n" and self.line_start(a)) or (t[0] in _BREAKS and self.line_end(a))
            words = self.word_edge(a)
            changed = t
        else:
            cursor = caret in (a, b)
            changed = self.local[a - self.lo : b - self.lo]
            lines = (self.line_start(a) and (self.line_start(b) or b == self.size)) or (
                changed[0] in _BREAKS and self.line_end(b)
            )
            words = self.word_edge(a) and self.word_edge(b)
        rank = 2 if lines else 1 if words else 0
        whole = not lines and changed[0] not in _CLOSERS and changed[-1] not in _OPENERS
        # Ties: nearest to the reported reading, then the one on the left (Neovim reports the
        # rightmost, so a tie at equal distance is one the editor could not tell either).
        return int(cursor), rank, int(whole), -abs(a - start) * 2 - (a > start)
