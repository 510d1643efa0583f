"""Open editor buffers and their binding to the room's shared texts.

A buffer is *unbound* from ``didOpen`` until the room's replica is synced and holds the file
(the hub creates a missing file exactly once, from the content the buffer opened with). Until
then its ``didChange`` notifications are recorded; on binding they are replayed into the
bridge, which transforms them over whatever the room had, so nothing typed before the sync
(offline, say) is lost or doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Text

from huddle.collab.bridge import ApplyEdit, Bridge, TextChange
from huddle.collab.errors import CollabError
from huddle.collab.positions import LineIndex, Position, PositionEncoding, Range

log = logging.getLogger("huddle.lsp")

MAX_EXACT = 1024
"""Exact changes (``huddle/changes``) kept for a buffer until the ``didChange`` they belong to;
past that they are dropped (that ``didChange`` then falls back to the editor's own report)."""


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


_UINTEGER = 2**31  # LSP's uinteger: 0 <= n < 2**31


def read_did_change(message: Any) -> tuple[str, int, list[TextChange]] | None:
    """A ``textDocument/didChange`` notification as plain JSON (``json.loads``) -> its ``(uri,
    version, changes)``, or None for anything else or any value lsprotocol would not accept as
    it is (the message then goes the ordinary way, through pygls and lsprotocol, which rejects
    what is malformed): a typist's every keystroke, read without building lsprotocol objects
    through cattrs (half of the notification's cost)."""
    if not isinstance(message, dict) or message.get("method") != "textDocument/didChange":
        return None
    if message.get("jsonrpc") != "2.0" or "id" in message:
        return None
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    document, raw = params.get("textDocument"), params.get("contentChanges")
    if not isinstance(document, dict) or not isinstance(raw, list):
        return None
    uri, version = document.get("uri"), document.get("version")
    if type(uri) is not str or type(version) is not int or not -_UINTEGER <= version < _UINTEGER:
        return None
    changes: list[TextChange] = []
    for change in raw:
        if not isinstance(change, dict) or type(text := change.get("text")) is not str:
            return None
        if "range" not in change:
            changes.append(TextChange(None, text))
            continue
        where = change["range"]
        length = change.get("rangeLength")
        if not isinstance(where, dict) or (length is not None and type(length) is not int):
            return None
        start, end = where.get("start"), where.get("end")
        if not isinstance(start, dict) or not isinstance(end, dict):
            return None
        numbers: tuple[Any, ...] = (
            start.get("line"),
            start.get("character"),
            end.get("line"),
            end.get("character"),
        )
        if any(type(n) is not int or not 0 <= n < _UINTEGER for n in numbers):
            return None
        line, character, end_line, end_character = numbers
        changes.append(
            TextChange(Range(Position(line, character), Position(end_line, end_character)), text)
        )
    return uri, version, changes


_APPLIED_KEYS = frozenset(("applied", "failureReason", "failedChange"))


def read_apply_edit_result(message: Any) -> tuple[str, lsp.ApplyWorkspaceEditResult] | None:
    """The editor's answer to a ``workspace/applyEdit`` as plain JSON -> its ``(id, result)``,
    or None for anything else or any value lsprotocol would not read as it is (the answer then
    goes through pygls). The answer to every edit sent, read without cattrs and without pygls's
    ``isinstance`` checks against its message protocols (a third of that answer's cost)."""
    if not isinstance(message, dict) or message.keys() != {"jsonrpc", "id", "result"}:
        return None
    msg_id, result = message["id"], message["result"]
    if message["jsonrpc"] != "2.0" or type(msg_id) is not str or not isinstance(result, dict):
        return None
    if not result.keys() <= _APPLIED_KEYS or type(applied := result.get("applied")) is not bool:
        return None
    reason, failed = result.get("failureReason"), result.get("failedChange")
    if (reason is not None and type(reason) is not str) or (
        failed is not None and (type(failed) is not int or not 0 <= failed < _UINTEGER)
    ):
        return None
    return msg_id, lsp.ApplyWorkspaceEditResult(applied, reason, failed)


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
    # The version at the safety net's last look while an applied edit's echo was awaited
    # (None: not awaiting); the same version at the next look: the editor went quiet.
    awaiting_since: int | None = None
    # Huddle's Neovim plugin reports each buffer change exactly (on_bytes), in UTF-8 columns,
    # with the b:changedtick it saw, before Neovim's own debounced didChange (a line diff,
    # which may be ambiguous). None: a change the plugin could not read back.
    exact: list[tuple[int, list[TextChange] | None]] = field(default_factory=list)
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
        line_diffs: bool = False,
        late_applies: bool = False,
        normalizes_eol: bool = False,
    ) -> None:
        bridge = Bridge(
            text,
            origin=origin,
            version=self.open_version,
            encoding=encoding,
            editor_text=self.opened_with,
            final_newline=final_newline,
            line_diffs=line_diffs,
            late_applies=late_applies,
            normalizes_eol=normalizes_eol,
        )
        for version, changes in self.recorded:
            bridge.local_change(version, changes)
        self.recorded.clear()
        self.exact.clear()  # they belong to the reports just replayed
        self.bridge = bridge

    def change(self, version: int, changes: list[TextChange]) -> None:
        self.version = version
        self.held = False  # the editor has told what it has: an edit can be based on it
        if self.bridge is None:
            self.recorded.append((version, changes))
        else:
            exact = self._take_exact(version, changes)
            if exact is None:
                self.bridge.local_change(version, changes)
            else:
                log.debug("didChange v%d of %s: used the exact changes", version, self.path)
                self.bridge.local_change(version, exact, exact=True)

    def add_exact(self, tick: int, changes: list[TextChange] | None) -> None:
        """A ``huddle/changes`` notification: one change, exactly, seen at ``tick``."""
        self.exact.append((tick, changes))
        if len(self.exact) > MAX_EXACT:
            # Too many for one didChange: that one falls back to the editor's report.
            self.exact = [(tick, None)]

    def _take_exact(self, version: int, reported: list[TextChange]) -> list[TextChange] | None:
        """The exact changes behind the ``didChange`` that makes ``version``, in the bridge's
        encoding, where they lead to the text the editor reported; else None (the report is
        used as it is). O(n): both are applied to copies of the shadow.

        They are all those received since the previous ``didChange``, not a range of versions:
        Neovim's ``on_bytes`` sees ``b:changedtick`` before the change is counted for most
        changes (typing: the change that the LSP client reports as version 6 comes with tick 5)
        and after it for others (put, undo: several versions, then all their bytes with the
        last tick), so a tick only bounds which ``didChange`` a change can belong to: none
        before ``tick``. The plugin sends them at once and the client debounces its report,
        so they arrive first; one that came late (a report sent at once) makes the next
        comparison fail, and that ``didChange`` falls back to the report as well."""
        taken = [changes for tick, changes in self.exact if tick <= version]
        self.exact = [(tick, changes) for tick, changes in self.exact if tick > version]
        bridge = self.bridge
        if not taken or bridge is None or any(changes is None for changes in taken):
            return None
        shadow = bridge.shadow
        mine, theirs = LineIndex(shadow), LineIndex(shadow)
        result: list[TextChange] = []
        try:
            for changes in taken:
                assert changes is not None
                for change in changes:
                    assert change.range is not None
                    start = mine.offset_at(change.range.start, PositionEncoding.UTF8)
                    end = mine.offset_at(change.range.end, PositionEncoding.UTF8)
                    if end < start:
                        return None
                    where = Range(
                        mine.position_at(start, bridge.encoding),
                        mine.position_at(end, bridge.encoding),
                    )
                    result.append(TextChange(where, change.text))
                    mine.replace(start, end, change.text)
            for change in reported:
                if change.range is None:
                    theirs = LineIndex(change.text)
                    continue
                start = theirs.offset_at(change.range.start, bridge.encoding)
                end = theirs.offset_at(change.range.end, bridge.encoding)
                theirs.replace(min(start, end), max(start, end), change.text)
        except CollabError:
            return None
        return result if mine.text == theirs.text else None

    def next_edit(self) -> ApplyEdit | None:
        if self.bridge is None or self.sending or self.held:
            return None
        return self.bridge.next_apply_edit()

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
