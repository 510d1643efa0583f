"""Summary commands in the editor: ``huddle.summarizeFile``, ``huddle.summarizeSelection``,
``huddle.catchUp`` and ``huddle.summarizeSession``, answered by the hub.

Each reports LSP work-done progress (``$/progress`` begin / report / end, cancellable), so any
client shows it; the text streams to our editor plugins as ``huddle/summaryPartial``; the
command's result carries the final markdown and the structured part the hub computed.
``$/cancelRequest`` or cancelling the progress stops the generation upstream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from lsprotocol.converters import get_converter
from pycrdt import Text
from pydantic import BaseModel, ValidationError
from pygls.uris import to_fs_path

from huddle.collab import schema
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position
from huddle.collab.sticky import sticky_position
from huddle.protocol import (
    EditorNotification,
    HubMethod,
    HubNotification,
    PartialText,
    RpcError,
    SummarizeParams,
    SummarizeResult,
    SummaryCommandResult,
    SummaryKind,
    SummaryPartialParams,
    SummaryProgress,
    invalid_params,
)

if TYPE_CHECKING:
    from huddle.lsp.workspace import Workspace

log = logging.getLogger("huddle.lsp.summaries")
_CONVERTER = get_converter()


TITLES = {
    "file": "Huddle: summarising the file",
    "selection": "Huddle: summarising the selection",
    "catch_up": "Huddle: catching up",
    "session": "Huddle: summarising the session",
}


class SummaryFailed(Exception):
    """The hub or the model could not summarise; the message is for the user."""


def parse_time(value: object, name: str) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 string (a naive one is local)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise SummaryFailed(f"`{name}` must be a time: seconds since the epoch or ISO 8601")


def _arg(args: tuple[Any, ...], index: int, key: str) -> Any:
    """Commands take positional arguments or one object: ``[uri, range]`` or
    ``[{"uri": ..., "range": ...}]``."""
    if args and isinstance(args[0], dict):
        return args[0].get(key)
    return args[index] if len(args) > index else None


async def summarize(
    ls: Workspace, kind: SummaryKind, args: tuple[Any, ...]
) -> SummaryCommandResult:
    session = ls.session
    if session is None or session.client is None:
        raise SummaryFailed("Huddle: not connected to a room")
    params: dict[str, Any] = {"kind": kind}
    if kind in ("file", "selection"):
        params.update(_code_params(ls, kind, args))
    else:
        since = parse_time(_arg(args, 0, "since"), "since")
        until = parse_time(_arg(args, 1, "until"), "until")
        if since is not None:
            params["since"] = since
        if until is not None:
            params["until"] = until
    progress = _Progress(ls, TITLES[kind])
    await progress.begin()

    def on_hub(method: HubNotification, payload: BaseModel) -> None:
        if isinstance(payload, SummaryProgress):
            progress.report(payload.message, payload.percentage)
        elif isinstance(payload, PartialText):
            ls.notify(
                EditorNotification.SUMMARY_PARTIAL,
                SummaryPartialParams(token=progress.token, kind=kind, text=payload.text),
            )

    try:
        asked = SummarizeParams.model_validate(params)
    except ValidationError as exc:
        raise SummaryFailed(f"Huddle: {invalid_params(exc).message}") from None
    outcome = "failed"
    try:
        result = await session.client.call(HubMethod.SUMMARIZE, asked, SummarizeResult, on_hub)
        outcome = "done"
    except RpcError as exc:
        raise SummaryFailed(f"Huddle AI: {exc.message}") from None
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        progress.end(outcome)
    return SummaryCommandResult(**result.model_dump(), token=progress.token)


def _code_params(ls: Workspace, kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
    uri = _arg(args, 0, "uri")
    if not isinstance(uri, str):
        raise SummaryFailed("which document? (a uri)")
    buffer = ls.buffers.get(uri)
    path = buffer.path if buffer is not None else None
    if path is None and ls.rules is not None:
        fs_path = to_fs_path(uri)
        path = ls.rules.relative(Path(fs_path)) if fs_path else None
    if path is None:
        raise SummaryFailed("this document is not shared in the room")
    params: dict[str, Any] = {"path": path}
    if kind == "file":
        return params
    if buffer is None or buffer.bridge is None or ls.session is None:
        raise SummaryFailed("open the document to summarise a selection")
    raw = _arg(args, 1, "range")
    try:
        selection = _CONVERTER.structure(raw, lsp.Range)
    except Exception:
        raise SummaryFailed("a selection needs a range") from None
    text = schema.files(ls.session.doc).get(path)
    if not isinstance(text, Text):
        raise SummaryFailed("this document is not shared in the room")
    index = buffer.bridge.shadow_index
    try:
        start = index.offset_at(
            Position(selection.start.line, selection.start.character), ls.encoding
        )
        end = index.offset_at(Position(selection.end.line, selection.end.character), ls.encoding)
    except CollabError as exc:
        raise SummaryFailed(f"invalid range: {exc}") from None
    bridge, shared = buffer.bridge, buffer.bridge.shared_index
    params["start"] = sticky_position(text, shared, bridge.to_shared(start))
    params["end"] = sticky_position(text, shared, bridge.to_shared(end))
    return params


class _Progress:
    """Server-initiated work-done progress, when the client supports it. Cancelling it in the
    client cancels the command."""

    def __init__(self, ls: Workspace, title: str) -> None:
        self.ls = ls
        self.title = title
        self.token = f"huddle-summary-{uuid.uuid4()}"
        caps = ls.client_capabilities.window
        self.enabled = bool(caps and caps.work_done_progress)
        self._last: tuple[str, int | None] | None = None

    async def begin(self) -> None:
        if not self.enabled:
            return
        try:
            await self.ls.work_done_progress.create_async(self.token)
        except Exception as exc:  # the client refused: summarise without a progress bar
            log.info("no progress bar: %s", exc)
            self.enabled = False
            return
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        cancel: concurrent.futures.Future[Any] | None = self.ls.work_done_progress.tokens.get(
            self.token
        )
        if cancel is not None and task is not None:
            cancel.add_done_callback(
                lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None
            )
        self.ls.work_done_progress.begin(
            self.token,
            lsp.WorkDoneProgressBegin(title=self.title, cancellable=True, percentage=0),
        )

    def report(self, message: str, percentage: object) -> None:
        pct = percentage if isinstance(percentage, int) else None
        if not self.enabled or (message, pct) == self._last:
            return
        self._last = (message, pct)
        self.ls.work_done_progress.report(
            self.token, lsp.WorkDoneProgressReport(message=message, percentage=pct)
        )

    def end(self, outcome: str) -> None:
        if self.enabled:
            self.ls.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=outcome))
            self.ls.work_done_progress.tokens.pop(self.token, None)
