"""AI code completions in the editor: ``textDocument/inlineCompletion`` (LSP 3.18) and a
``textDocument/completion`` item for editors without inline completion.

The hub builds the prompt from the room and streams the answer back; each streamed piece is
forwarded as ``huddle/inlineCompletionPartial`` so our editor plugins show ghost text at the
first token, and the final response carries the whole item.

A completion is reused while the user types into it: if the text typed since it was asked
for is the start of the completion (finished or still streaming), the rest is answered
without asking the model again. A request the editor cancels (``$/cancelRequest``, or a
newer request) is cancelled on the hub, which closes the backend stream; the cancellation
waits ``REUSE_GRACE_S`` first, so that the request an editor sends right after cancelling
(as VS Code does on every keystroke) can adopt a completion that still matches.

What becomes of each completion shown (accepted, partly, ignored) is watched by ``Outcomes``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lsprotocol import types as lsp
from pycrdt import Text
from pydantic import BaseModel

from huddle.collab import schema
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position
from huddle.collab.sticky import sticky_position
from huddle.lsp.hub_client import HubClient
from huddle.lsp.outcomes import Outcomes
from huddle.protocol import (
    CompleteParams,
    CompleteResult,
    DocumentId,
    EditorNotification,
    HubMethod,
    HubNotification,
    InlinePartialParams,
    LspPosition,
    PartialText,
    RpcError,
)

if TYPE_CHECKING:
    from huddle.lsp.workspace import Workspace

log = logging.getLogger("huddle.lsp.completion")

REUSE_GRACE_S = 0.015
ANCHOR_CHARS = 256  # text before the cursor that must be unchanged for a completion to be reused


class CompletionFailed(Exception):
    """The hub or the model could not complete; the message is for the user."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What to show at the cursor, and the completion it is (the rest of) for its outcome."""

    text: str
    id: str | None


@dataclass
class Flight:
    """One completion asked of the hub, shared by every editor request it can answer."""

    uri: str
    position: lsp.Position
    offset: int  # code points into the editor's text
    anchor: str  # the text just before ``offset`` when it was asked for
    task: asyncio.Task[CompleteResult]
    partial: str = ""
    waiters: int = 0
    cancel_timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def typed_since(self, text: str, offset: int) -> str | None:
        """What was typed after ``self.offset`` if the text before it is unchanged, else None."""
        before = text[self.offset - len(self.anchor) : self.offset]
        if offset < self.offset or before != self.anchor:
            return None
        return text[self.offset : offset]


class Completions:
    def __init__(self, server: Workspace, grace_s: float = REUSE_GRACE_S) -> None:
        self.server = server
        self.grace_s = grace_s
        self.flights: dict[str, Flight] = {}
        self.reused = 0
        self.asked = 0
        self.outcomes = Outcomes(server)

    async def inline(self, uri: str, position: lsp.Position) -> Offer | None:
        """The completion to show at ``position``; None when there is nothing to offer."""
        server = self.server
        buffer = server.buffers.get(uri)
        session = server.session
        if buffer is None or buffer.bridge is None or session is None or session.client is None:
            return None
        text = buffer.bridge.shadow
        try:
            offset = buffer.bridge.shadow_index.offset_at(
                Position(position.line, position.character), server.encoding
            )
        except CollabError as exc:
            raise CompletionFailed(f"invalid position: {exc}") from None

        flight = self.flights.get(uri)
        if flight is not None:
            typed = flight.typed_since(text, offset)
            usable = not flight.task.done() or (
                not flight.task.cancelled() and flight.task.exception() is None
            )
            matches = flight.task.done() or flight.partial.startswith(typed or "")
            if typed is not None and usable and matches:
                result = await self._wait(flight)
                if result is not None and result.text.startswith(typed):
                    self.reused += bool(typed)
                    return self._offer(flight, result, offset)
            if not flight.task.done():
                self._cancel(flight)
        self.outcomes.moved_on()

        files = schema.files(session.doc)
        crdt_text = files.get(buffer.path)
        if not isinstance(crdt_text, Text):
            return None
        # Anchored in the shared text, where a teammate's edit may already be and not yet in
        # the editor. None for an empty file: the hub reads it as the start of the file.
        shared = buffer.bridge.to_shared(offset)
        cursor = sticky_position(crdt_text, buffer.bridge.shared_index, shared)
        scope = server.settings.completion_scope if server.settings is not None else None
        params = CompleteParams(
            path=buffer.path,
            cursor=cursor,
            offset=shared,
            state=base64.b64encode(session.doc.get_state()).decode(),
            scope=scope or "auto",
        )
        anchor = text[max(0, offset - ANCHOR_CHARS) : offset]
        flights: list[Flight] = []  # the partial callback runs once the task does, after this
        task = asyncio.ensure_future(
            self._ask(session.client, params, lambda t: self._partial(flights[0], t))
        )
        task.add_done_callback(_retrieve)
        new = Flight(uri, position, offset, anchor, task)
        flights.append(new)
        self.flights[uri] = new
        self.asked += 1
        result = await self._wait(new)
        return None if result is None else self._offer(new, result, offset)

    def _offer(self, flight: Flight, result: CompleteResult, offset: int) -> Offer | None:
        """The rest of ``result`` after what was typed since it was asked (up to ``offset``)."""
        rest = result.text[offset - flight.offset :]
        if not rest:
            return None
        if result.id is not None:
            self.outcomes.shown(flight.uri, result.id, result.text, flight.offset, offset)
        return Offer(rest, result.id)

    def _partial(self, flight: Flight, text: str) -> None:
        flight.partial = text
        self.server.notify(
            EditorNotification.INLINE_PARTIAL,
            InlinePartialParams(
                text_document=DocumentId(uri=flight.uri),
                position=LspPosition(
                    line=flight.position.line, character=flight.position.character
                ),
                text=text,
            ),
        )

    @staticmethod
    async def _ask(
        client: HubClient, params: CompleteParams, on_partial: Callable[[str], None]
    ) -> CompleteResult:
        def relay(method: HubNotification, payload: BaseModel) -> None:
            if isinstance(payload, PartialText):
                on_partial(payload.text)

        try:
            result = await client.call(HubMethod.COMPLETE, params, CompleteResult, relay)
        except RpcError as exc:
            raise CompletionFailed(f"Huddle AI: {exc.message}") from None
        return result

    async def _wait(self, flight: Flight) -> CompleteResult | None:
        """The flight's completion; None if it was cancelled by someone else (the hub lets a
        newer request of the same user win, perhaps from another editor)."""
        if flight.cancel_timer is not None:
            flight.cancel_timer.cancel()
            flight.cancel_timer = None
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if flight.task.cancelled() and me is not None and not me.cancelling():
                return None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # The editor cancelled: stop the model unless a newer request adopts it.
                loop = asyncio.get_running_loop()
                flight.cancel_timer = loop.call_later(self.grace_s, self._cancel, flight)

    def _cancel(self, flight: Flight) -> None:
        if flight.cancel_timer is not None:
            flight.cancel_timer.cancel()
            flight.cancel_timer = None
        if not flight.task.done():
            flight.task.cancel()

    def close(self, uri: str) -> None:
        self.outcomes.closed(uri)
        flight = self.flights.pop(uri, None)
        if flight is not None:
            self._cancel(flight)

    def close_all(self) -> None:
        self.outcomes.stop()
        for uri in list(self.flights):
            self.close(uri)


def _retrieve(task: asyncio.Task[CompleteResult]) -> None:
    """A flight nobody waits for any more must not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()
