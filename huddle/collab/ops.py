"""The change algebra of the bridge: ``TextOp`` (ot.js-style retain/insert/delete over a whole
text, in code points), ``transform`` (``a . b' == b . a'`` for ``(a', b') = transform(a, b)``),
``compose``, ``map_offset`` and ``diff``. Pure functions of strings: no CRDT, no editor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from huddle.collab.errors import CollabError


class BridgeError(CollabError):
    """A change the bridge cannot represent (e.g. a non-text item in a ``Text``)."""


Component = int | str
"""``n > 0`` keeps ``n`` code points, ``n < 0`` deletes ``-n``, a ``str`` inserts itself."""


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace code points ``[start, end)`` with ``text``."""

    start: int
    end: int
    text: str


def append_retain(parts: list[Component], n: int) -> None:
    if n <= 0:
        return
    if parts and isinstance(parts[-1], int) and parts[-1] > 0:
        parts[-1] += n
    else:
        parts.append(n)


def append_insert(parts: list[Component], s: str) -> None:
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


def append_delete(parts: list[Component], n: int) -> None:
    if n <= 0:
        return
    if parts and isinstance(parts[-1], int) and parts[-1] < 0:
        parts[-1] -= n
    else:
        parts.append(-n)


def _push(parts: list[Component], part: Component) -> None:
    if isinstance(part, str):
        append_insert(parts, part)
    elif part > 0:
        append_retain(parts, part)
    else:
        append_delete(parts, -part)


def _lengths(parts: list[Component]) -> tuple[int, int]:
    """The base and target lengths of an op made of ``parts``."""
    base = target = 0
    for part in parts:
        if isinstance(part, str):
            target += len(part)
        elif part > 0:
            base += part
            target += part
        else:
            base -= part
    return base, target


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
        self.base_length, self.target_length = _lengths(built)

    @classmethod
    def _normal(cls, parts: list[Component]) -> TextOp:
        """An op of ``parts`` already normal (built with the ``append_*`` functions)."""
        op = cls.__new__(cls)
        op.parts = tuple(parts)
        op.base_length, op.target_length = _lengths(parts)
        return op

    @classmethod
    def identity(cls, length: int) -> TextOp:
        if length < 0:
            return cls((length,))
        op = cls.__new__(cls)
        op.parts = (length,) if length else ()
        op.base_length = op.target_length = length
        return op

    @classmethod
    def from_edit(cls, length: int, start: int, end: int, text: str) -> TextOp:
        """Replace ``[start, end)`` of a text of ``length`` code points with ``text``."""
        if not 0 <= start <= end <= length:
            raise BridgeError(f"edit {start}..{end} is not inside 0..{length}")
        if start == end and not text:
            return cls.identity(length)
        # Built directly (already normal): one per editor change, the hot path of typing.
        op = cls.__new__(cls)
        parts: list[Component] = [start] if start else []
        if text:
            parts.append(text)
        if end > start:
            parts.append(start - end)
        if length > end:
            parts.append(length - end)
        op.parts = tuple(parts)
        op.base_length = length
        op.target_length = length - (end - start) + len(text)
        return op

    @classmethod
    def from_edits(cls, length: int, edits: Sequence[Edit]) -> TextOp:
        """Simultaneous edits, sorted by position and not overlapping, as one op."""
        parts: list[Component] = []
        pos = 0
        for edit in edits:
            if edit.start < pos or edit.end < edit.start or edit.end > length:
                raise BridgeError("edits must be sorted, non-overlapping and inside the text")
            append_retain(parts, edit.start - pos)
            append_insert(parts, edit.text)
            append_delete(parts, edit.end - edit.start)
            pos = edit.end
        append_retain(parts, length - pos)
        return cls(parts)

    @property
    def is_noop(self) -> bool:
        return self.base_length == self.target_length and all(
            isinstance(part, int) and part > 0 for part in self.parts
        )

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
        first, second = iter(self.parts), iter(other.parts)
        a: Component | None = next(first, None)
        b: Component | None = next(second, None)
        while a is not None or b is not None:
            if isinstance(a, int) and a < 0:
                append_delete(out, -a)
                a = next(first, None)
                continue
            if isinstance(b, str):
                append_insert(out, b)
                b = next(second, None)
                continue
            if a is None or b is None:
                raise BridgeError("compose: ops do not line up")
            if isinstance(a, int):  # retain a
                assert isinstance(b, int)
                if b > 0:
                    n = min(a, b)
                    append_retain(out, n)
                    a = a - n or next(first, None)
                    b = b - n or next(second, None)
                else:
                    n = min(a, -b)
                    append_delete(out, n)
                    a = a - n or next(first, None)
                    b = b + n or next(second, None)
            else:  # insert a
                assert isinstance(b, int)
                if b > 0:
                    n = min(len(a), b)
                    append_insert(out, a[:n])
                    a = a[n:] or next(first, None)
                    b = b - n or next(second, None)
                else:
                    n = min(len(a), -b)
                    a = a[n:] or next(first, None)
                    b = b + n or next(second, None)
        return TextOp._normal(out)

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
    first, second = iter(a.parts), iter(b.parts)
    x: Component | None = next(first, None)
    y: Component | None = next(second, None)

    while x is not None or y is not None:
        if isinstance(x, str):
            append_insert(a_out, x)
            append_retain(b_out, len(x))
            x = next(first, None)
            continue
        if isinstance(y, str):
            append_retain(a_out, len(y))
            append_insert(b_out, y)
            y = next(second, None)
            continue
        if x is None or y is None:
            raise BridgeError("transform: ops do not line up")
        if x > 0 and y > 0:
            n = min(x, y)
            append_retain(a_out, n)
            append_retain(b_out, n)
            x = x - n or next(first, None)
            y = y - n or next(second, None)
        elif x < 0 and y < 0:
            n = min(-x, -y)
            x = x + n or next(first, None)
            y = y + n or next(second, None)
        elif x < 0:  # a deletes what b keeps
            n = min(-x, y)
            append_delete(a_out, n)
            x = x + n or next(first, None)
            y = y - n or next(second, None)
        else:  # a keeps what b deletes
            n = min(x, -y)
            append_delete(b_out, n)
            x = x - n or next(first, None)
            y = y + n or next(second, None)
    return TextOp._normal(a_out), TextOp._normal(b_out)


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
    start = common_run(old, new, limit, forward=True)
    end = common_run(old, new, limit - start, forward=False)
    return TextOp.from_edit(len(old), start, len(old) - end, new[start : len(new) - end])


def common_run(old: str, new: str, limit: int, *, forward: bool) -> int:
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
