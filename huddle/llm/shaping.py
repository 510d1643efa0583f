"""Shaping a streamed code completion into what an editor should show.

A model keeps writing past the point a completion is useful. ``Shaper`` is fed the stream
chunk by chunk and says when the completion is complete, so the gateway can close the
upstream stream early (freeing the backend) instead of paying for tokens nobody sees:

- ``line``: up to the end of the current line;
- ``block``: up to the end of the block the cursor is in: the first line indented less than
  the cursor's line, or at top level a blank line followed by a line at column 0 (the next
  top-level statement), and at most ``max_lines`` lines. Inside indented code a blank line
  is a paragraph of the same body (measured on HumanEval's multi-line tasks with the cursor
  on an indented line: stopping there too lost 3.5% of them);
- ``auto``: ``line`` when there is code before the cursor on its line, ``block`` on an
  empty (or only indented) line. This is what Copilot does.

A model that does not know where to stop writes on into the code that follows the cursor.
A line of the completion that is the next line of code after the cursor (the cursor's own
line when the cursor is at its start) means it got there: the completion stops before it,
and a last line cut short while repeating it is dropped. Other text repeated from after the
cursor (a closing bracket the editor already has) is dropped at the end, so accepting never
duplicates code.

At column 0 of a line that holds code the completion inserts lines above that code: it ends
with a line break so the code keeps its own line. There the cursor has no indentation of its
own; inside indented code a line back at column 0 ends the block.

On a line holding only indentation the prompt leaves out the indentation's last space
(:func:`healed`): code tokenizers join that space to the word after it (``"    return"`` is
``"   "`` then ``" return"``), so a prompt ending in the whole indentation is one no model saw in
training, and small models answer it with a line break (the embedded SmolLM2 answered
``"\ndef ..."`` under a docstring, and ``" return x * 2"`` without the space). The model then
writes the space itself; it is dropped from the answer, as the editor already has it.
"""

from __future__ import annotations

from typing import Literal

Scope = Literal["auto", "line", "block"]

_OVERLAP_WINDOW = 2000


def auto_scope(line_before_cursor: str) -> Literal["line", "block"]:
    """What ``auto`` means at a cursor: ``line`` after code on its line, else ``block``."""
    return "line" if line_before_cursor.strip() else "block"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


class Shaper:
    def __init__(
        self,
        scope: Scope,
        line_before_cursor: str,
        text_after_cursor: str,
        *,
        max_lines: int = 16,
        text_before_cursor: str = "",
    ) -> None:
        """``text_before_cursor``: the file before the cursor (only its last line of code is
        read: the indentation around a cursor at column 0)."""
        if scope == "auto":
            scope = auto_scope(line_before_cursor)
        self.scope: Literal["line", "block"] = scope
        self._line_before = line_before_cursor
        self._after = text_after_cursor[:_OVERLAP_WINDOW]
        self._max_lines = max_lines
        cursor_line, _, below = self._after.partition("\n")
        # The next line of code after the cursor, whole; the completion's first line is only
        # compared with it where nothing but indentation comes before the cursor.
        self._anchor = _first_code_line(below)
        self._anchor0: str | None = None
        if not line_before_cursor.strip():
            whole = line_before_cursor + cursor_line
            self._anchor = self._anchor0 = whole.rstrip() if whole.strip() else self._anchor
        self._inserts_lines = line_before_cursor == "" and bool(cursor_line.strip())
        self._line_break = "\r\n" if cursor_line.endswith("\r") else "\n"
        self._base_indent = _indent(line_before_cursor)
        if line_before_cursor == "":
            above = _last_code_line(text_before_cursor)
            inside = above is not None and _indent(above) > 0
            if inside and (self._anchor is None or _indent(self._anchor) > 0):
                self._base_indent = 1  # indented code around: column 0 is outside the block
        self._healed = healed(line_before_cursor)
        self._text = ""
        self._kept = 0  # length of ``_text`` decided to be part of the completion
        self.done = False

    def feed(self, chunk: str) -> bool:
        """Add streamed text; True once the completion is complete (stop reading)."""
        if self.done or not chunk:
            return self.done
        if self._healed:  # the first text: the space left out of the prompt is the editor's
            chunk, self._healed = chunk.removeprefix(self._healed), ""
            if not chunk:
                return False
        self._text += chunk
        if self.scope == "line":
            self._decide_line()
        else:
            self._decide_block()
        return self.done

    @property
    def visible(self) -> str:
        """What may be shown now: never retracted later except by ``final``'s trimming."""
        return self._text[: self._kept]

    def final(self) -> str:
        """The completion once the stream is over: trailing whitespace and text repeated from
        after the cursor removed; a line break at the end where it inserts lines above code."""
        if self.done:
            kept = self._text[: self._kept]
        else:
            kept = self._text
            last = kept.rsplit("\n", 1)[-1]
            if self._repeats(last, len(kept) == len(last), complete=False) == "maybe":
                kept = kept[: len(kept) - len(last)]  # cut short while repeating what follows
        if not self._inserts_lines:
            return _drop_overlap(kept.rstrip(), self._after)
        # Whole lines above the cursor's line: a line that repeats it has ended them already,
        # and one that merely ends as it does ("        return False" above "    return
        # False") is the answer, not a repeat.
        text = kept.rstrip()
        return text + self._line_break if text.strip() and (self.done or "\n" in kept) else text

    def _repeats(self, line: str, first: bool, *, complete: bool) -> Literal["yes", "maybe", "no"]:
        """Whether ``line`` of the completion is the next line of code after the cursor:
        ``maybe`` while it is being written and could still be."""
        anchor = self._anchor0 if first else self._anchor
        whole = self._line_before + line if first else line
        if anchor is None or not whole.strip():
            return "no"
        if complete:
            return "yes" if whole.rstrip() == anchor else "no"
        return "maybe" if anchor.startswith(whole.rstrip()) else "no"

    def _decide_line(self) -> None:
        text = self._text
        end = text.find("\n")
        line = text if end < 0 else text[:end]
        repeats = self._repeats(line, True, complete=end >= 0)
        if end >= 0:
            self._kept, self.done = (0 if repeats == "yes" else end), True
        elif repeats == "no":
            self._kept = len(text)

    def _decide_block(self) -> None:
        lines = self._text.split("\n")
        blank_seen = False
        start = 0  # of the line looked at, in ``_text``
        for number, line in enumerate(lines):
            complete = number < len(lines) - 1
            whole = self._line_before + line if number == 0 else line
            if not whole.strip():
                blank_seen = blank_seen or (complete and number > 0)
                start += len(line) + 1
                continue
            if number > 0 or self._line_before == "":  # a line of its own: is it in the block?
                indent = _indent(whole)
                ends_block = indent < self._base_indent or (blank_seen and indent == 0)
                if number >= self._max_lines or ends_block:
                    self.done = True
                    return
            repeats = self._repeats(line, number == 0, complete=complete)
            if repeats == "yes":
                self.done = True
                return
            if repeats == "maybe":
                return  # hidden until it is known not to repeat the code after the cursor
            blank_seen = False
            self._kept = start + len(line)
            start += len(line) + 1
        # A line still being written whose indent is not known yet stays hidden.


def healed(line_before_cursor: str) -> str:
    """What the prompt leaves out of the text before the cursor for the model to write: the
    last space of a line that holds only indentation (see the module docstring)."""
    if line_before_cursor.endswith(" ") and not line_before_cursor.strip():
        return " "
    return ""


def _first_code_line(text: str) -> str | None:
    for line in text.split("\n"):
        if line.strip():
            return line.rstrip()
    return None


def _last_code_line(text: str) -> str | None:
    end = len(text)
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        if text[start:end].strip():
            return text[start:end]
        end = start - 1
    return None


def _drop_overlap(completion: str, after: str) -> str:
    """Remove the end of ``completion`` that repeats the start of ``after``, when that repeated
    part ends where a line of ``after`` ends (so one coincidental character is kept)."""
    limit = min(len(completion), len(after))
    for k in range(limit, 0, -1):
        head = after[:k]
        if not head.strip():
            continue
        at_line_end = k == len(after) or after[k] in "\r\n"
        if at_line_end and completion.endswith(head):
            return completion[:-k].rstrip(" \t") if "\n" in head else completion[:-k]
    stripped = after.lstrip(" \t")
    line = stripped.split("\n", 1)[0].rstrip("\r")
    if line.strip() and completion.endswith(line) and len(completion) > len(line):
        return completion[: -len(line)]
    return completion
