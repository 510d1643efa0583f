"""Shaping a streamed code completion into what an editor should show.

A model keeps writing past the point a completion is useful. ``Shaper`` is fed the stream
chunk by chunk and says when the completion is complete, so the gateway can close the
upstream stream early (freeing the backend) instead of paying for tokens nobody sees:

- ``line``: up to the end of the current line;
- ``block``: up to the end of the block the cursor is in: the first line indented less than
  the cursor's line, or a blank line followed by a line at most that indented (the next
  top-level statement), and at most ``max_lines`` lines;
- ``auto``: ``line`` when there is code before the cursor on its line, ``block`` on an
  empty (or only indented) line. This is what Copilot does.

Text the model repeats from after the cursor (a closing bracket the editor already has,
the next lines of the file) is dropped at the end, so accepting never duplicates code.
"""

from __future__ import annotations

from typing import Literal

Scope = Literal["auto", "line", "block"]

_OVERLAP_WINDOW = 2000


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
    ) -> None:
        if scope == "auto":
            scope = "line" if line_before_cursor.strip() else "block"
        self.scope: Literal["line", "block"] = scope
        self._base_indent = _indent(line_before_cursor)
        self._after = text_after_cursor[:_OVERLAP_WINDOW]
        self._max_lines = max_lines
        self._text = ""
        self._kept = 0  # length of ``_text`` decided to be part of the completion
        self.done = False

    def feed(self, chunk: str) -> bool:
        """Add streamed text; True once the completion is complete (stop reading)."""
        if self.done or not chunk:
            return self.done
        self._text += chunk
        self._decide()
        return self.done

    @property
    def visible(self) -> str:
        """What may be shown now: never retracted later except by ``final``'s trimming."""
        return self._text[: self._kept]

    def final(self) -> str:
        """The completion once the stream is over: trailing whitespace and text repeated from
        after the cursor removed."""
        kept = self._text[: self._kept] if self.done else self._text
        return _drop_overlap(kept.rstrip(), self._after)

    def _decide(self) -> None:
        text = self._text
        if self.scope == "line":
            end = text.find("\n")
            if end >= 0:
                self._kept, self.done = end, True
            else:
                self._kept = len(text)
            return
        lines = text.split("\n")
        blank_seen = False
        offset = len(lines[0])
        self._kept = offset
        for number, line in enumerate(lines[1:], start=1):
            complete = number < len(lines) - 1
            if not line.strip():
                if complete:
                    blank_seen = True
                offset += 1 + len(line)
                continue
            indent = _indent(line)
            ends_block = indent < self._base_indent or (blank_seen and indent <= self._base_indent)
            if number >= self._max_lines or ends_block:
                self.done = True
                return
            blank_seen = False
            offset += 1 + len(line)
            self._kept = offset
        # A line still being written whose indent is not known yet stays hidden.


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
