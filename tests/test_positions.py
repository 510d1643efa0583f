"""LineIndex: exact LSP position <-> code point <-> UTF-8 byte conversions, kept incrementally."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huddle.collab import positions
from huddle.collab.errors import CollabError
from huddle.collab.positions import (
    LineIndex,
    Position,
    PositionEncoding,
    PositionError,
    TextError,
    split_lines,
)

U8, U16, U32 = PositionEncoding.UTF8, PositionEncoding.UTF16, PositionEncoding.UTF32

# --- a deliberately naive reference, written without looking at the index -------------------


def ref_line_starts(text: str) -> list[int]:
    starts = [0]
    i = 0
    while i < len(text):
        if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            i += 2
            starts.append(i)
        elif text[i] in "\r\n":
            i += 1
            starts.append(i)
        else:
            i += 1
    return starts


def ref_content_end(text: str, starts: list[int], line: int) -> int:
    """Offset where ``line``'s content ends (before its line break)."""
    if line + 1 == len(starts):
        return len(text)
    end = starts[line + 1]
    return end - 2 if text[end - 2 : end] == "\r\n" else end - 1


def width(char: str, encoding: PositionEncoding) -> int:
    if encoding is U8:
        return len(char.encode("utf-8"))
    if encoding is U16:
        return 2 if ord(char) > 0xFFFF else 1
    return 1


def ref_offset(text: str, line: int, character: int, encoding: PositionEncoding) -> int | None:
    """None where the position falls inside a character."""
    starts = ref_line_starts(text)
    if line >= len(starts):
        return len(text)
    offset, end = starts[line], ref_content_end(text, starts, line)
    units = 0
    while offset < end and units < character:
        units += width(text[offset], encoding)
        offset += 1
    if units > character:
        return None
    return offset


def ref_position(text: str, offset: int, encoding: PositionEncoding) -> Position | None:
    """None between the \\r and \\n of a CRLF."""
    if 0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n":
        return None
    starts = ref_line_starts(text)
    line = max(i for i, start in enumerate(starts) if start <= offset)
    return Position(line, sum(width(c, encoding) for c in text[starts[line] : offset]))


def ref_offset_of_byte(text: str, byte: int) -> int | None:
    data = text.encode("utf-8")
    try:
        return len(data[:byte].decode("utf-8"))
    except UnicodeDecodeError:
        return None


def assert_matches_reference(index: LineIndex, text: str) -> None:
    assert index.text == text
    assert len(index) == len(text)
    assert index.byte_length == len(text.encode("utf-8"))
    assert list(index.lines()) == split_lines(text)
    starts = ref_line_starts(text)
    assert index.line_count == len(starts)
    for line, start in enumerate(starts):
        assert index.line_start(line) == start
    for offset in range(len(text) + 1):
        assert index.byte_offset(offset) == len(text[:offset].encode("utf-8"))
        for encoding in PositionEncoding:
            expected = ref_position(text, offset, encoding)
            if expected is None:
                with pytest.raises(PositionError):
                    index.position_at(offset, encoding)
            else:
                assert index.position_at(offset, encoding) == expected
    for byte in range(len(text.encode("utf-8")) + 1):
        expected_offset = ref_offset_of_byte(text, byte)
        if expected_offset is None:
            with pytest.raises(PositionError):
                index.offset_of_byte(byte)
        else:
            assert index.offset_of_byte(byte) == expected_offset
    for line in range(len(starts) + 1):
        for character in range(12):
            for encoding in PositionEncoding:
                want = ref_offset(text, line, character, encoding)
                if want is None:
                    with pytest.raises(PositionError):
                        index.offset_at(Position(line, character), encoding)
                else:
                    assert index.offset_at(Position(line, character), encoding) == want


# --- exact conversions --------------------------------------------------------------------


EMOJI = "\U0001f600"  # 4 UTF-8 bytes, a UTF-16 surrogate pair
ZWJ = "\U0001f469\u200d\U0001f4bb"  # woman technologist: 3 code points, 5 UTF-16 units


@pytest.mark.parametrize(
    ("line", "u8", "u16", "u32"),
    [
        ("abc", 3, 3, 3),
        ("é", 2, 1, 1),
        ("中文", 6, 2, 2),
        (EMOJI, 4, 2, 1),
        (ZWJ, 11, 5, 3),
    ],
)
def test_line_end_in_each_encoding(line: str, u8: int, u16: int, u32: int) -> None:
    index = LineIndex(f"x\n{line}\ny")
    end = 2 + len(line)
    for encoding, units in ((U8, u8), (U16, u16), (U32, u32)):
        assert index.position_at(end, encoding) == Position(1, units)
        assert index.offset_at(Position(1, units), encoding) == end
    assert index.byte_offset(end) == 2 + len(line.encode())
    assert index.offset_of_byte(2 + len(line.encode())) == end


def test_mixed_line_exact_columns() -> None:
    text = f"aé中{EMOJI}b"
    index = LineIndex(text)
    # (code-point offset, utf-8, utf-16, utf-32)
    table = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 3, 2, 2), (3, 6, 3, 3), (4, 10, 5, 4), (5, 11, 6, 5)]
    for offset, u8, u16, u32 in table:
        assert index.position_at(offset, U8) == Position(0, u8)
        assert index.position_at(offset, U16) == Position(0, u16)
        assert index.position_at(offset, U32) == Position(0, u32)
        assert index.offset_at(Position(0, u8), U8) == offset
        assert index.offset_at(Position(0, u16), U16) == offset
        assert index.offset_at(Position(0, u32), U32) == offset
        assert index.byte_offset(offset) == u8
        assert index.offset_of_byte(u8) == offset


def test_zwj_sequence_components_are_addressable() -> None:
    # LSP counts code units, not grapheme clusters: between the parts of a ZWJ sequence is a
    # valid place (an editor may put a cursor there); only inside a surrogate pair is not.
    index = LineIndex(ZWJ)
    assert index.offset_at(Position(0, 2), U16) == 1
    assert index.offset_at(Position(0, 3), U16) == 2
    for bad in (1, 4):
        with pytest.raises(PositionError):
            index.offset_at(Position(0, bad), U16)


def test_line_breaks_crlf_lf_and_lone_cr() -> None:
    text = "a\r\nb\rc\nd\r\n\re"
    index = LineIndex(text)
    assert list(index.lines()) == ["a\r\n", "b\r", "c\n", "d\r\n", "\r", "e"]
    assert index.line_count == 6
    assert index.offset_at(Position(1, 0)) == 3
    assert index.offset_at(Position(2, 0)) == 5
    assert index.offset_at(Position(4, 0)) == 10
    assert index.offset_at(Position(5, 1)) == 12
    assert index.position_at(5) == Position(2, 0)
    with pytest.raises(PositionError, match="between"):
        index.position_at(2)


def test_unicode_line_separators_are_not_line_breaks() -> None:
    # str.splitlines() would split at all of these; LSP does not.
    text = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"
    index = LineIndex(text)
    assert index.line_count == 1
    assert index.position_at(len(text), U32) == Position(0, len(text))


def test_crlf_text_stays_crlf_through_edits() -> None:
    index = LineIndex("one\r\ntwo\r\n")
    index.replace(5, 5, "new\r\n")
    assert index.text == "one\r\nnew\r\ntwo\r\n"
    assert index.line_count == 4


def test_cr_and_lf_join_and_part() -> None:
    index = LineIndex("a\rb", block_size=1)
    index.replace(2, 3, "\n")  # "a\r\n": the \r and the new \n become one line break
    assert list(index.lines()) == ["a\r\n", ""]
    index.replace(2, 2, "x")  # "a\rx\n": parted again
    assert list(index.lines()) == ["a\r", "x\n", ""]
    index.replace(2, 3, "")  # deleting the x joins them once more
    assert list(index.lines()) == ["a\r\n", ""]
    index.replace(1, 2, "")  # a lone \n remains
    assert list(index.lines()) == ["a\n", ""]


# --- clamping and errors ------------------------------------------------------------------


def test_character_past_line_end_clamps_before_the_line_break() -> None:
    index = LineIndex("ab\r\ncd")
    assert index.offset_at(Position(0, 99)) == 2
    assert index.offset_at(Position(1, 99)) == 6


def test_line_past_the_end_clamps_to_document_end() -> None:
    index = LineIndex("ab\ncd\n")
    assert index.offset_at(Position(2, 0)) == 6  # the empty last line
    assert index.offset_at(Position(3, 0)) == 6
    assert index.offset_at(Position(1000, 5)) == 6


def test_utf16_position_inside_surrogate_pair_raises() -> None:
    index = LineIndex(f"a{EMOJI}b")
    with pytest.raises(PositionError, match="surrogate"):
        index.offset_at(Position(0, 2), U16)
    assert index.offset_at(Position(0, 3), U16) == 2


@pytest.mark.parametrize("character", [2, 3, 4])
def test_utf8_position_inside_multibyte_raises(character: int) -> None:
    index = LineIndex(f"a{EMOJI}")
    with pytest.raises(PositionError, match="multi-byte"):
        index.offset_at(Position(0, character), U8)


def test_byte_offset_inside_character_raises() -> None:
    index = LineIndex("é中")
    assert index.offset_of_byte(2) == 1
    for byte in (1, 3, 4):
        with pytest.raises(PositionError):
            index.offset_of_byte(byte)
    with pytest.raises(PositionError):
        index.offset_of_byte(6)


def test_out_of_range_and_negative_raise_collab_errors() -> None:
    index = LineIndex("abc")
    for call in (
        lambda: index.offset_at(Position(-1, 0)),
        lambda: index.offset_at(Position(0, -1)),
        lambda: index.position_at(4),
        lambda: index.byte_offset(-1),
        lambda: index.replace(2, 1, ""),
        lambda: index.replace(0, 4, ""),
        lambda: index.line(1),
    ):
        with pytest.raises(CollabError):
            call()


def test_lone_surrogate_rejected_without_changing_anything() -> None:
    index = LineIndex("abc")
    with pytest.raises(TextError):
        index.replace(1, 1, "\ud800")
    assert index.text == "abc"


def test_negotiation_prefers_code_points_then_utf8_and_defaults_to_utf16() -> None:
    assert PositionEncoding.negotiate(None) is U16
    assert PositionEncoding.negotiate([]) is U16
    assert PositionEncoding.negotiate(["utf-16"]) is U16
    assert PositionEncoding.negotiate(["utf-16", "utf-8"]) is U8
    assert PositionEncoding.negotiate(["utf-8", "utf-16", "utf-32"]) is U32


def test_slice_across_blocks() -> None:
    text = "".join(f"line {i}é\r\n" for i in range(50))
    index = LineIndex(text, block_size=3)
    for start, end in ((0, 0), (0, len(text)), (7, 200), (len(text) - 3, len(text))):
        assert index.slice(start, end) == text[start:end]


# --- incremental == rebuilt == reference ----------------------------------------------------

ALPHABET = ["a", "b", "é", "中", EMOJI, "\u200d", "\r", "\n", "\r\n"]
texts = st.lists(st.sampled_from(ALPHABET), max_size=30).map("".join)


@st.composite
def edit_scripts(draw: st.DrawFn) -> tuple[str, int, list[tuple[float, float, str]]]:
    initial = draw(texts)
    block_size = draw(st.sampled_from([1, 2, 3, 32]))
    edits = draw(
        st.lists(
            st.tuples(
                st.floats(0, 1),
                st.floats(0, 1),
                st.lists(st.sampled_from(ALPHABET), max_size=6).map("".join),
            ),
            max_size=15,
        )
    )
    return initial, block_size, edits


@settings(max_examples=150, deadline=None)
@given(edit_scripts())
def test_incremental_updates_equal_a_rebuild_and_the_reference(
    script: tuple[str, int, list[tuple[float, float, str]]],
) -> None:
    text, block_size, edits = script
    index = LineIndex(text, block_size=block_size)
    assert_matches_reference(index, text)
    for a, b, inserted in edits:
        start = int(a * len(text))
        end = start + int(b * (len(text) - start))
        index.replace(start, end, inserted)
        text = text[:start] + inserted + text[end:]
        fresh = LineIndex(text, block_size=block_size)
        assert list(index.lines()) == list(fresh.lines())
        assert (index.line_count, len(index), index.byte_length) == (
            fresh.line_count,
            len(fresh),
            fresh.byte_length,
        )
        assert_matches_reference(index, text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["\n", "x\n", "", "\n\n\n"]))))
def test_many_blocks_split_and_shrink(ops: list[tuple[int, str]]) -> None:
    text = "ab\n" * 40
    index = LineIndex(text, block_size=2)
    for where, inserted in ops:
        start = where % (len(text) + 1)
        end = min(len(text), start + where % 7)
        index.replace(start, end, inserted)
        text = text[:start] + inserted + text[end:]
    assert index.text == text
    assert list(index.lines()) == split_lines(text)
    for line, start in enumerate(ref_line_starts(text)):
        assert index.line_start(line) == start


# --- cost per edit does not depend on the document size -------------------------------------


def test_an_edit_touches_only_nearby_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "".join(f"{i:07d} some words é 中 {EMOJI}\n" for i in range(40_000))  # ~1.3 MB
    index = LineIndex(text)
    seen: list[int] = []
    rebuilds: list[int] = []
    real_split = positions.split_lines

    def spy_split(chunk: str) -> list[str]:
        seen.append(len(chunk))
        return real_split(chunk)

    real_tree = positions._Tree.__init__

    def spy_tree(self: positions._Tree, *args: list[int]) -> None:
        rebuilds.append(1)
        real_tree(self, *args)

    monkeypatch.setattr(positions, "split_lines", spy_split)
    monkeypatch.setattr(positions._Tree, "__init__", spy_tree)
    middle = index.line_start(20_000) + 5
    index.replace(middle, middle, "x")
    index.replace(middle, middle + 1, "")
    index.replace(middle, middle, "\n")
    assert max(seen) < 200  # three short lines, never the document
    assert rebuilds == []  # the block tree was updated in place
    assert index.text == text[:middle] + "\n" + text[middle:]
