"""Open editor buffers and their binding to the room's shared texts.

A buffer is *unbound* from ``didOpen`` until the room's replica is synced and holds the file
(the hub creates a missing file exactly once, from the content the buffer opened with). Until
then its ``didChange`` notifications are recorded; on binding they are replayed into the
bridge, which transforms them over whatever the room had, so nothing typed before the sync
(offline, say) is lost or doubled.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from lsprotocol import types as lsp
from pycrdt import Text

from huddle.collab.bridge import ApplyEdit, Bridge, TextChange
from huddle.collab.positions import Position, PositionEncoding, Range


def to_range(value: lsp.Range) -> Range:
    return Range(
        Position(value.start.line, value.start.character),
        Position(value.end.line, value.end.character),
    )


def from_range(value: Range) -> lsp.Range:
    return lsp.Range(
        start=lsp.Position(line=value.start.line, character=value.start.character),
        end=lsp.Position(line=value.end.line, character=value.end.character),
    )


def to_changes(changes: list[lsp.TextDocumentContentChangeEvent]) -> list[TextChange]:
    result = []
    for change in changes:
        if isinstance(change, lsp.TextDocumentContentChangePartial):
            result.append(TextChange(to_range(change.range), change.text))
        else:
            result.append(TextChange(None, change.text))
    return result


@dataclass
class Buffer:
    uri: str
    path: str
    version: int
    opened_with: str
    recorded: list[tuple[int, list[TextChange]]] = field(default_factory=list)
    bridge: Bridge | None = None
    sending: bool = False
    # After a rejected edit (``applied: false`` or an error answer): send nothing until the
    # editor's next didChange or the end of a backoff (an editor that reports its changes late,
    # such as eglot, would otherwise be sent the same stale edit again and again).
    held: bool = False
    rejections: int = 0  # rejected edits in a row (the backoff doubles with each)
    dirty: bool = True  # changed since the safety net last checked it
    open_version: int = field(init=False)

    def __post_init__(self) -> None:
        self.open_version = self.version

    def bind(
        self,
        text: Text,
        origin: Hashable,
        encoding: PositionEncoding,
        *,
        final_newline: bool = False,
    ) -> None:
        bridge = Bridge(
            text,
            origin=origin,
            version=self.open_version,
            encoding=encoding,
            editor_text=self.opened_with,
            final_newline=final_newline,
        )
        for version, changes in self.recorded:
            bridge.local_change(version, changes)
        self.recorded.clear()
        self.bridge = bridge

    def change(self, version: int, changes: list[TextChange]) -> None:
        self.version = version
        self.held = False  # the editor has told what it has: an edit can be based on it
        if self.bridge is None:
            self.recorded.append((version, changes))
        else:
            self.bridge.local_change(version, changes)

    def next_edit(self) -> ApplyEdit | None:
        if self.bridge is None or self.sending or self.held:
            return None
        return self.bridge.next_apply_edit()

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
