"""Shaping a streamed completion: where it stops, what is shown while it streams, and what is
dropped because it repeats the code after the cursor."""

from __future__ import annotations

import pytest

from huddle.llm.shaping import Shaper, healed


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


# -- a model that does not know where to stop (found by benchmarks/quality.py's oracle) --------

BODY_BEFORE = "def f(xs):\n    total = 0\n    for x in xs:\n"
BODY_AFTER = "    return total\n\n\ndef g():\n    pass\n"


def test_at_column_0_of_a_line_of_code_the_completion_inserts_whole_lines() -> None:
    """The HumanEval hole: the cursor at the start of the line after the missing one. Without
    its line break the answer joined the line below ('total += x    return total')."""
    shaper = Shaper("auto", "", BODY_AFTER, text_before_cursor=BODY_BEFORE)
    for piece in ["        total", " += x", "\n"]:
        shaper.feed(piece)
    assert shaper.final() == "        total += x\n"


def test_the_completion_stops_where_it_reaches_the_code_after_the_cursor() -> None:
    """The model writes the missing line, then the rest of the file and more (the old rule
    kept 16 lines and could not trim them: they do not end with the text after the cursor)."""
    stream = "        total += x\n" + BODY_AFTER + "\n\nprint(f([1, 2]))\n"
    pieces = [stream[i : i + 3] for i in range(0, len(stream), 3)]
    text, stopped, used = shape_before(pieces, BODY_BEFORE, after=BODY_AFTER)
    assert (text, stopped) == ("        total += x\n", True)
    assert used * 3 < len("        total += x\n" + "    return total\n") + 3  # closed at once


def test_a_last_line_cut_short_while_repeating_the_code_after_the_cursor_is_dropped() -> None:
    """The stream ran out of tokens in the middle of repeating the next line."""
    pieces = ["        total += x\n", "    return to"]
    assert shape_before(pieces, BODY_BEFORE, after=BODY_AFTER) == (
        "        total += x\n",
        False,
        2,
    )


def test_a_line_that_may_be_the_next_line_of_code_is_not_shown_until_it_is_not() -> None:
    shaper = Shaper("auto", "", BODY_AFTER, text_before_cursor=BODY_BEFORE)
    shaper.feed("        total += x\n    return")
    assert shaper.visible == "        total += x"
    shaper.feed(" total * 2\n")  # not the line after the cursor after all: shown
    assert shaper.visible == "        total += x\n    return total * 2"


def test_at_column_0_inside_indented_code_a_line_at_column_0_ends_the_block() -> None:
    """Base indentation 0 let the completion run on into the next function."""
    pieces = ["        total += x\n", "    return total\n", "def g():\n", "    pass\n"]
    assert shape_before(pieces, BODY_BEFORE, after="") == (
        "        total += x\n    return total",
        True,
        3,
    )


def shape_before(
    pieces: list[str], before: str, after: str, max_lines: int = 16
) -> tuple[str, bool, int]:
    """``shape`` with the cursor at column 0 after ``before``."""
    shaper = Shaper("auto", "", after, max_lines=max_lines, text_before_cursor=before)
    for used, piece in enumerate(pieces, start=1):
        if shaper.feed(piece):
            return shaper.final(), True, used
    return shaper.final(), False, len(pieces)


def test_on_a_line_of_indentation_the_space_left_out_of_the_prompt_is_dropped() -> None:
    """The prompt ends one space short (``healed``); the model writes it with its first word
    and the editor already has it: kept, it indented the line by one space more."""
    assert healed("    ") == " " and healed("    x = ") == "" and healed("") == ""
    shaper = Shaper("auto", "    ", "\n", text_before_cursor='def f(x):\n    """Double."""\n')
    for piece in [" return", " x * 2", "\n```", "\n"]:
        shaper.feed(piece)
    assert shaper.final() == "return x * 2"
    # A model that does not write the space: its text is kept whole.
    assert shape(["return 1"], before="    ", after="\n")[0] == "return 1"


def test_inside_indented_code_a_blank_line_does_not_end_the_block() -> None:
    """A function body's next paragraph is the same block (it stopped at the blank line)."""
    pieces = ["result = []\n", "\n", "    for x in xs:\n", "        result.append(x)\n"]
    pieces += ["    return result\n", "\n", "\n", "def g():\n"]
    assert shape(pieces, before="    ") == (
        "result = []\n\n    for x in xs:\n        result.append(x)\n    return result",
        True,
        8,
    )


def test_a_line_inserted_above_one_that_ends_alike_is_kept_whole() -> None:
    """HumanEval/92: '        return False' above '    return False' was cut to its indent
    (taken for a repeat of the line below, less that line's indentation)."""
    before = "def f(x):\n    if x:\n"
    after = "    return False\n"
    pieces = ["        return False\n", "    return False\n"]
    assert shape_before(pieces, before, after=after) == ("        return False\n", True, 2)


def test_lines_inserted_above_code_end_with_the_file_s_line_break() -> None:
    shaper = Shaper("auto", "", "    return x\r\n", text_before_cursor="def f(x):\r\n")
    shaper.feed("    x += 1\r\n    return x\r\n")
    assert shaper.done and shaper.final() == "    x += 1\r\n"
