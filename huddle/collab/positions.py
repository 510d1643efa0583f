"""LSP positions <-> code-point offsets <-> UTF-8 byte offsets, kept up to date edit by edit.

Three coordinate systems meet in the language server:

- LSP ``(line, character)``: ``character`` counts UTF-16 code units by default, UTF-8 bytes or
  code points when negotiated (LSP 3.17 ``general.positionEncodings``). Lines end at ``\\r\\n``,
  ``\\n`` or ``\\r`` and at nothing else (``str.splitlines`` also splits at ``\\v``, ``\\f``,
  ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029, so it is not used here).
- code-point offsets: Python ``str`` indexes; the bridge computes in these.
- UTF-8 byte offsets: what ``pycrdt.Text`` indexes with. An offset inside a multi-byte
  character makes pycrdt silently append at the end or delete to the end, so every
  conversion here is exact and raises :class:`PositionError` rather than guessing.

Rules for out-of-range input (LSP leaves some of this to the server):

- ``character`` past the end of its line is clamped to the line's end, before the line break
  (LSP: "If the character value is greater than the line length it defaults back to the line
  length"). So a clamped position never lands between the ``\\r`` and ``\\n`` of a CRLF.
- ``line`` past the last line is clamped to the end of the document; editors send such
  positions for edits that append at the end (``{line: N, character: 0}`` with N lines).
- negative numbers, a ``character`` that splits a UTF-16 surrogate pair or a UTF-8 sequence,
  and byte offsets inside a character raise :class:`PositionError`.
- A code-point offset between the ``\\r`` and ``\\n`` of a CRLF has no LSP position:
  :meth:`LineIndex.position_at` raises for it (the bridge widens such edits to the whole CRLF).

:class:`LineIndex` stores the lines in blocks of at most ``2 * block_size`` lines, and one
Fenwick tree over the blocks that sums three measures at once (lines, code points, UTF-8
bytes); one descent of the tree locates a line, an offset or a byte offset. A replace re-splits
only the lines it overlaps plus one neighbour on each side (a ``\\r`` and a ``\\n`` may join
or part) and updates the tree in O(log blocks). The tree is rebuilt from the per-block totals
(O(blocks), no line re-read) only when the number of blocks changes: a block that outgrows
``2 * block_size`` lines splits, which costs O(lines / block_size**2) per inserted line break
amortised, or a large edit spans blocks. So a keystroke costs
O(log lines + block_size + length of the touched lines), independent of the document's size,
except in documents made of very long lines (minified files), where the touched line is the
cost.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from huddle.collab.errors import CollabError

__all__ = [
    "LineIndex",
    "Position",
    "PositionEncoding",
    "PositionError",
    "Range",
    "TextError",
    "split_lines",
]


class PositionError(CollabError):
    """A position or offset that does not name a place between two characters of the text."""


class TextError(CollabError):
    """Text that cannot be stored: not valid Unicode (a lone surrogate)."""


class PositionEncoding(StrEnum):
    """What an LSP ``character`` counts."""

    UTF8 = "utf-8"
    UTF16 = "utf-16"
    UTF32 = "utf-32"

    @classmethod
    def negotiate(cls, offered: Sequence[str] | None) -> PositionEncoding:
        """The encoding to answer in ``ServerCapabilities.positionEncoding``.

        Prefers UTF-32 (code points: no per-line conversion at all), then UTF-8, and falls back
        to UTF-16, which every client must support and is the default when nothing is offered.
        """
        kinds = set(offered or ())
        for choice in (cls.UTF32, cls.UTF8):
            if choice.value in kinds:
                return choice
        return cls.UTF16


@dataclass(frozen=True, slots=True)
class Position:
    """An LSP position: zero-based line and character (in the negotiated encoding)."""

    line: int
    character: int


@dataclass(frozen=True, slots=True)
class Range:
    start: Position
    end: Position


_BREAK = re.compile(r"\r\n|\r|\n")
_revisions = itertools.count(1)  # LineIndex.revision, unique across indexes


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` with their line breaks; the last item is the unterminated rest.

    ``"".join(split_lines(t)) == t`` and the result is never empty (``[""]`` for ``""``).
    """
    if "\r" not in text:
        parts = text.split("\n")
        last = parts.pop()
        lines = [part + "\n" for part in parts]
        lines.append(last)
        return lines
    lines = []
    pos = 0
    for match in _BREAK.finditer(text):
        lines.append(text[pos : match.end()])
        pos = match.end()
    lines.append(text[pos:])
    return lines


def _break_len(line: str) -> int:
    last = line[-1:]
    if last == "\n":
        return 2 if line[-2:-1] == "\r" else 1
    return 1 if last == "\r" else 0


def _utf8_len(text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TextError("text contains a lone surrogate, which is not valid Unicode") from exc


def _units(text: str, encoding: PositionEncoding) -> int:
    """Length of ``text`` in ``encoding``'s code units."""
    if encoding is PositionEncoding.UTF32 or text.isascii():
        return len(text)
    if encoding is PositionEncoding.UTF8:
        return _utf8_len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _column(content: str, character: int, encoding: PositionEncoding, line: int) -> int:
    """Code points of ``content`` (a line without its break) before ``character`` units."""
    if encoding is PositionEncoding.UTF32 or content.isascii():
        return min(character, len(content))
    if encoding is PositionEncoding.UTF8:
        encoded = content.encode("utf-8")
        if character >= len(encoded):
            return len(content)
        try:
            return len(encoded[:character].decode("utf-8"))
        except UnicodeDecodeError:
            raise PositionError(
                f"line {line} character {character} (utf-8) falls inside a multi-byte character"
            ) from None
    encoded = content.encode("utf-16-le", "surrogatepass")
    if 2 * character >= len(encoded):
        return len(content)
    prefix = encoded[: 2 * character]
    last = int.from_bytes(prefix[-2:], "little") if prefix else 0
    if 0xD800 <= last <= 0xDBFF:
        raise PositionError(f"line {line} character {character} (utf-16) splits a surrogate pair")
    return len(prefix.decode("utf-16-le", "surrogatepass"))


# Measures kept per block, in this order, by _Tree.
_LINES, _CPS, _BYTES = 0, 1, 2


class _Tree:
    """Fenwick tree over the blocks, three measures at once (lines, code points, bytes).

    Prefix sums, point updates and searches are O(log blocks); one descent yields all three
    measures, so locating a line or an offset is a single pass.
    """

    __slots__ = ("_size", "_trees")

    def __init__(self, lines: Sequence[int], cps: Sequence[int], nbytes: Sequence[int]) -> None:
        size = len(lines)
        trees = [[0, *lines], [0, *cps], [0, *nbytes]]
        for tree in trees:
            for i in range(1, size + 1):
                parent = i + (i & -i)
                if parent <= size:
                    tree[parent] += tree[i]
        self._size = size
        self._trees = trees

    def add(self, index: int, d_lines: int, d_cps: int, d_bytes: int) -> None:
        t_lines, t_cps, t_bytes = self._trees
        i = index + 1
        while i <= self._size:
            t_lines[i] += d_lines
            t_cps[i] += d_cps
            t_bytes[i] += d_bytes
            i += i & -i

    def prefix(self, count: int) -> tuple[int, int, int]:
        """Sums of the first ``count`` blocks: (lines, code points, bytes)."""
        t_lines, t_cps, t_bytes = self._trees
        lines = cps = nbytes = 0
        while count > 0:
            lines += t_lines[count]
            cps += t_cps[count]
            nbytes += t_bytes[count]
            count -= count & -count
        return lines, cps, nbytes

    def search(self, measure: int, target: int) -> tuple[int, int, int, int]:
        """The largest ``i`` whose prefix in ``measure`` is ``<= target``, and its three sums."""
        t_lines, t_cps, t_bytes = self._trees
        key = self._trees[measure]
        size = self._size
        pos = lines = cps = nbytes = 0
        acc = 0
        step = 1 << size.bit_length()
        while step:
            nxt = pos + step
            if nxt <= size and acc + key[nxt] <= target:
                pos = nxt
                acc += key[nxt]
                lines += t_lines[nxt]
                cps += t_cps[nxt]
                nbytes += t_bytes[nxt]
            step >>= 1
        return pos, lines, cps, nbytes


# Where a line is: (block, row inside the block, line number, code-point offset, byte offset).
_Loc = tuple[int, int, int, int, int]


class LineIndex:
    """A text kept as lines, answering position and offset questions in O(log n).

    Not thread-safe. ``block_size`` only tunes speed (tests use tiny blocks to exercise splits).
    """

    __slots__ = (
        "_block_size",
        "_blocks",
        "_bytes",
        "_cps",
        "_ends",
        "_length",
        "_line_bytes",
        "_lines",
        "_total_bytes",
        "_tree",
        "revision",
    )

    def __init__(self, text: str = "", *, block_size: int = 32) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self._block_size = block_size
        self.revision = 0  # unique to this text of this index; set by _set_lines
        self._blocks: list[list[str]] = []
        self._line_bytes: list[list[int]] = []
        # Per block, where each line ends (code points from the block's start), built when a
        # block is first searched after a change (None until then): C-speed bisection instead of
        # a Python walk over up to 2 * block_size lines for every lookup.
        self._ends: list[list[int] | None] = []
        self._set_lines(split_lines(text))

    # --- whole-text views -------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The whole text (O(n))."""
        return "".join(itertools.chain.from_iterable(self._blocks))

    def __len__(self) -> int:
        """Length in code points."""
        return self._length

    @property
    def byte_length(self) -> int:
        return self._total_bytes

    @property
    def line_count(self) -> int:
        """Number of lines; a text ending in a line break has an empty last line."""
        return self._lines

    def lines(self) -> Iterator[str]:
        """Every line with its line break."""
        for block in self._blocks:
            yield from block

    def line(self, line: int) -> str:
        """Line ``line`` with its line break."""
        if not 0 <= line < self._lines:
            raise PositionError(f"line {line} is outside 0..{self._lines - 1}")
        block, row, *_ = self._locate_line(line)
        return self._blocks[block][row]

    def slice(self, start: int, end: int) -> str:
        """``text[start:end]`` in code points, in O(log n + end - start)."""
        self._check_range(start, end)
        if start == end:
            return ""
        block, row, _, line_offset, _ = self._locate_offset(start)
        parts: list[str] = []
        want = end - start
        col = start - line_offset
        while want > 0:
            piece = self._blocks[block][row][col : col + want]
            parts.append(piece)
            want -= len(piece)
            col = 0
            row += 1
            if row == len(self._blocks[block]):
                block += 1
                row = 0
        return "".join(parts)

    # --- conversions --------------------------------------------------------------------------

    def offset_at(
        self, position: Position, encoding: PositionEncoding = PositionEncoding.UTF16
    ) -> int:
        """Code-point offset of an LSP position (clamped as the module docstring says)."""
        line, character = position.line, position.character
        if line < 0 or character < 0:
            raise PositionError(f"negative position {line}:{character}")
        if line >= self._lines:
            return self._length
        block, row, _, line_offset, _ = self._locate_line(line)
        text = self._blocks[block][row]
        content = text[: len(text) - _break_len(text)]
        return line_offset + _column(content, character, encoding, line)

    def position_at(
        self, offset: int, encoding: PositionEncoding = PositionEncoding.UTF16
    ) -> Position:
        """LSP position of a code-point offset."""
        self._check_offset(offset)
        block, row, line, line_offset, _ = self._locate_offset(offset)
        text = self._blocks[block][row]
        col = offset - line_offset
        if col > len(text) - _break_len(text):
            raise PositionError(f"offset {offset} falls between the \\r and \\n of a line break")
        return Position(line, _units(text[:col], encoding))

    def byte_offset(self, offset: int) -> int:
        """UTF-8 byte offset of a code-point offset."""
        self._check_offset(offset)
        block, row, _, line_offset, line_byte = self._locate_offset(offset)
        return line_byte + _utf8_len(self._blocks[block][row][: offset - line_offset])

    def offset_of_byte(self, byte: int) -> int:
        """Code-point offset of a UTF-8 byte offset; raises inside a multi-byte character."""
        if not 0 <= byte <= self._total_bytes:
            raise PositionError(f"byte offset {byte} is outside 0..{self._total_bytes}")
        block, _, cps, nbytes = self._tree.search(_BYTES, byte)
        if block == len(self._blocks):  # the end of the text
            return self._length
        text = self._blocks[block]
        widths = self._line_bytes[block]
        row = 0
        last = len(text) - 1
        while row < last and nbytes + widths[row] <= byte:
            nbytes += widths[row]
            cps += len(text[row])
            row += 1
        line = text[row]
        col = byte - nbytes
        if line.isascii():
            return cps + col
        try:
            return cps + len(line.encode("utf-8")[:col].decode("utf-8"))
        except UnicodeDecodeError:
            raise PositionError(f"byte offset {byte} falls inside a multi-byte character") from None

    def line_start(self, line: int) -> int:
        """Code-point offset where ``line`` starts."""
        if not 0 <= line < self._lines:
            raise PositionError(f"line {line} is outside 0..{self._lines - 1}")
        return self._locate_line(line)[3]

    # --- editing ------------------------------------------------------------------------------

    def replace(self, start: int, end: int, text: str) -> None:
        """Replace code points ``[start, end)`` with ``text``."""
        self._check_range(start, end)
        if start == end and not text:
            return
        size = _utf8_len(text)  # reject lone surrogates before changing anything
        if "\n" not in text and "\r" not in text and self._replace_in_line(start, end, text, size):
            return
        start_line = self._locate_offset(start)[2]
        end_line = start_line if end == start else self._locate_offset(end)[2]
        head = self._locate_line(max(start_line - 1, 0))
        tail = self._locate_line(min(end_line + 1, self._lines - 1))
        region: list[str] = []
        block, row = head[0], head[1]
        while True:
            region.append(self._blocks[block][row])
            if block == tail[0] and row == tail[1]:
                break
            row += 1
            if row == len(self._blocks[block]):
                block += 1
                row = 0
        joined = "".join(region)
        cut_start = start - head[3]
        cut_end = end - head[3]
        new_lines = split_lines(joined[:cut_start] + text + joined[cut_end:])
        if tail[2] < self._lines - 1:
            # The region ends with a line break that survives (line ``tail`` is untouched),
            # so the split ends with an empty rest that is not a line of the document.
            new_lines.pop()
        self._splice(head, tail, new_lines)
        self._length += len(text) - (end - start)
        self.revision = next(_revisions)

    def _replace_in_line(self, start: int, end: int, text: str, size: int) -> bool:
        """:meth:`replace` where it stays inside one line's content and ``text`` (``size``
        UTF-8 bytes) holds no line break: the line is rewritten in place, no line joins or
        splits (typing). False, changing nothing, where it does not apply."""
        block, row, _, line_offset, _ = self._locate_offset(start)
        line = self._blocks[block][row]
        col, col_end = start - line_offset, end - line_offset
        if col_end > len(line) - _break_len(line):
            return False
        if not col and not text and line[col_end : col_end + 1] == "\n":
            return False  # the line's content all deleted: a "\r" before it may join its "\n"
        d_cps = len(text) - (end - start)
        d_bytes = size - _utf8_len(line[col:col_end])
        self._blocks[block][row] = line[:col] + text + line[col_end:]
        self._line_bytes[block][row] += d_bytes
        self._ends[block] = None
        self._cps[block] += d_cps
        self._bytes[block] += d_bytes
        self._total_bytes += d_bytes
        self._length += d_cps
        self._tree.add(block, 0, d_cps, d_bytes)
        self.revision = next(_revisions)
        return True

    # --- internals ----------------------------------------------------------------------------

    def _line_ends(self, block: int) -> list[int]:
        ends = self._ends[block]
        if ends is None:
            ends = self._ends[block] = list(itertools.accumulate(map(len, self._blocks[block])))
        return ends

    def _check_offset(self, offset: int) -> None:
        if not 0 <= offset <= self._length:
            raise PositionError(f"offset {offset} is outside 0..{self._length}")

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self._length:
            raise PositionError(f"range {start}..{end} is not inside 0..{self._length}")

    def _set_lines(self, lines: list[str]) -> None:
        size = self._block_size
        self._blocks = [lines[i : i + size] for i in range(0, len(lines), size)]
        self._line_bytes = [[_utf8_len(line) for line in block] for block in self._blocks]
        self._ends = [None] * len(self._blocks)
        self._cps = [sum(map(len, block)) for block in self._blocks]
        self._bytes = [sum(widths) for widths in self._line_bytes]
        self._length = sum(self._cps)
        self._reindex()
        self.revision = next(_revisions)

    def _reindex(self) -> None:
        """Rebuild the tree from the per-block totals: O(blocks), only when blocks change."""
        self._total_bytes = sum(self._bytes)
        self._lines = sum(map(len, self._blocks))
        self._tree = _Tree([len(block) for block in self._blocks], self._cps, self._bytes)

    def _locate_line(self, line: int) -> _Loc:
        block, lines, cps, nbytes = self._tree.search(_LINES, line)
        row = line - lines
        if row:
            cps += self._line_ends(block)[row - 1]
            nbytes += sum(self._line_bytes[block][:row])
        return block, row, line, cps, nbytes

    def _locate_offset(self, offset: int) -> _Loc:
        block, lines, cps, nbytes = self._tree.search(_CPS, offset)
        if block == len(self._blocks):  # the end of the text: its last line
            block -= 1
            lines = self._lines - len(self._blocks[block])
            cps = self._length - self._cps[block]
            nbytes = self._total_bytes - self._bytes[block]
        ends = self._line_ends(block)
        # The first line that ends past ``offset``; the block's last one at the end of the text.
        row = min(bisect_right(ends, offset - cps), len(ends) - 1)
        if row:
            cps += ends[row - 1]
            nbytes += sum(self._line_bytes[block][:row])
        return block, row, lines + row, cps, nbytes

    def _splice(self, head: _Loc, tail: _Loc, new_lines: list[str]) -> None:
        """Replace the lines from ``head`` to ``tail`` (inclusive) with ``new_lines``."""
        first, last = head[0], tail[0]
        lines = self._blocks[first][: head[1]] + new_lines + self._blocks[last][tail[1] + 1 :]
        widths = (
            self._line_bytes[first][: head[1]]
            + [_utf8_len(line) for line in new_lines]
            + self._line_bytes[last][tail[1] + 1 :]
        )
        count = last - first + 1
        if len(lines) >= count and -(-len(lines) // count) <= 2 * self._block_size:
            # As many blocks as before: spread the lines over them, update the tree in place.
            for i in range(count):
                lo, hi = i * len(lines) // count, (i + 1) * len(lines) // count
                block = first + i
                chunk, chunk_widths = lines[lo:hi], widths[lo:hi]
                d_lines = len(chunk) - len(self._blocks[block])
                d_cps = sum(map(len, chunk)) - self._cps[block]
                d_bytes = sum(chunk_widths) - self._bytes[block]
                self._blocks[block] = chunk
                self._line_bytes[block] = chunk_widths
                self._ends[block] = None
                self._cps[block] += d_cps
                self._bytes[block] += d_bytes
                self._total_bytes += d_bytes
                self._lines += d_lines
                self._tree.add(block, d_lines, d_cps, d_bytes)
            return
        size = self._block_size
        starts = range(0, len(lines), size)
        self._blocks[first : last + 1] = [lines[i : i + size] for i in starts]
        self._line_bytes[first : last + 1] = [widths[i : i + size] for i in starts]
        self._ends[first : last + 1] = [None] * len(starts)
        self._cps[first : last + 1] = [sum(map(len, lines[i : i + size])) for i in starts]
        self._bytes[first : last + 1] = [sum(widths[i : i + size]) for i in starts]
        self._reindex()
