"""Shaping a streamed completion: where it stops, what is shown while it streams, and what is
dropped because it repeats the code after the cursor."""

from __future__ import annotations

import pytest

from huddle.llm.shaping import Shaper


def shape(
    pieces: list[str], before: str = "", after: str = "", scope: str = "auto", max_lines: int = 16
) -> tuple[str, bool, int]:
    """(final text, stopped early, pieces consumed)."""
    shaper = Shaper(scope, before, after, max_lines=max_lines)  # type: ignore[arg-type]
    for used, piece in enumerate(pieces, start=1):
        if shaper.feed(piece):
            return shaper.final(), True, used
    return shaper.final(), False, len(pieces)


def test_auto_is_a_line_after_code_and_a_block_on_an_empty_line() -> None:
    assert Shaper("auto", "    x = ", "").scope == "line"
    assert Shaper("auto", "    ", "").scope == "block"
    assert Shaper("auto", "", "").scope == "block"


def test_line_scope_stops_at_the_first_line_break() -> None:
    assert shape(["foo(", "1)\nbar()", "\n"], before="x = ") == ("foo(1)", True, 2)
    assert shape(["foo(1)"], before="x = ") == ("foo(1)", False, 1)


def test_block_scope_stops_at_a_dedent() -> None:
    pieces = ["if x:\n", "        y()\n", "    return y\n", "z = 1\n", "never read"]
    assert shape(pieces, before="    ") == ("if x:\n        y()\n    return y", True, 4)


def test_block_scope_at_top_level_stops_at_the_next_statement_after_a_blank_line() -> None:
    pieces = ["def f():\n", "    return 1\n", "\n", "def g():\n"]
    assert shape(pieces) == ("def f():\n    return 1", True, 4)
    # Without a blank line a following statement at the same level is still the same block.
    assert shape(["a = 1\n", "b = 2\n"]) == ("a = 1\nb = 2", False, 2)


def test_block_scope_respects_max_lines() -> None:
    assert shape(["a\n", "b\n", "c\n", "d\n"], max_lines=2) == ("a\nb", True, 3)


def test_partial_text_hides_a_line_whose_indent_is_not_known_yet() -> None:
    shaper = Shaper("block", "    ", "")
    shaper.feed("if x:\n    ")
    assert shaper.visible == "if x:"
    shaper.feed("    y()")
    assert shaper.visible == "if x:\n        y()"
    shaper.feed("\n")
    assert shaper.visible == "if x:\n        y()"  # the next line could still end the block


@pytest.mark.parametrize(
    ("completion", "after", "expected"),
    [
        ("a, b)", ")\n", "a, b"),  # the closing bracket is already there
        ("a, b):", "):\n    pass\n", "a, b"),
        ("x + 1", "", "x + 1"),
        ("value", "e + 1\n", "value"),  # a coincidental "e", not the rest of the line: kept
        ("value", "e\n", "valu"),  # the rest of the line is "e": accepting gives "value"
        ("return total\n    ", "\n", "return total"),
    ],
)
def test_text_that_repeats_what_follows_the_cursor_is_dropped(
    completion: str, after: str, expected: str
) -> None:
    assert shape([completion], before="x(", after=after, scope="line")[0] == expected


def test_next_lines_repeated_by_a_block_completion_are_dropped() -> None:
    after = "\n    return result\n"
    pieces = ["result = compute()\n", "    return result"]
    assert shape(pieces, before="    ", after=after)[0] == "result = compute()"
