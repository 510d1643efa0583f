"""Shared positions (huddle.collab.sticky): what other peers send as cursors is hostile input,
and pycrdt panics, rather than raising, on some of it."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from huddle.collab.positions import LineIndex
from huddle.collab.schema import files
from huddle.collab.sticky import StickyResolver, code_points, sticky_position


def _doc(content: str) -> tuple[Doc[Any], Text]:
    doc: Doc[Any] = Doc()
    text = Text(content)
    files(doc)["f.py"] = text
    return doc, text


@pytest.mark.parametrize("content", ["hello\nworld\n", "é😀 = 1\n中文\n"])
def test_positions_round_trip_in_code_points(content: str) -> None:
    doc, text = _doc(content)
    index = LineIndex(content)
    resolver = StickyResolver(doc)
    for offset in range(len(content) + 1):
        relative = sticky_position(text, index, offset)
        units = resolver.units(text, relative)
        assert units is not None and code_points(content, units) == offset


def test_a_position_in_an_edit_not_received_yet_does_not_panic() -> None:
    theirs, their_text = _doc("shared\n")
    mine: Doc[Any] = Doc()
    mine.apply_update(theirs.get_update())
    their_text.insert(3, "NEW")  # not sent to `mine`
    ahead = sticky_position(their_text, LineIndex(str(their_text)), 5)
    my_text = files(mine)["f.py"]
    assert isinstance(my_text, Text)
    assert StickyResolver(mine).units(my_text, ahead) is None


@pytest.mark.parametrize(
    "relative",
    [
        None,
        "item",
        [],
        {"item": "x"},
        {"item": {"client": [], "clock": 0}},  # unhashable: a TypeError in the old resolver
        {"item": {"client": 1, "clock": "0"}},
        {"item": {"client": True, "clock": 0}},
        {"item": {"client": 2**70, "clock": 0}},
        {"tname": 5, "assoc": 0},
        {"assoc": "after"},
    ],
)
def test_malformed_positions_resolve_to_nothing(relative: object) -> None:
    doc, text = _doc("abc\n")
    assert StickyResolver(doc).units(text, relative) is None


def test_code_points_refuses_the_middle_of_a_surrogate_pair_and_the_end() -> None:
    assert code_points("a😀b", 1) == 1
    assert code_points("a😀b", 2) is None  # inside 😀
    assert code_points("a😀b", 3) == 2
    assert code_points("a😀b", 5) is None
    assert code_points("abc", 4) is None
