"""Room -> editor: the bridge's pending edits go out as versioned ``workspace/applyEdit``, one in
flight per buffer; the answer (or its absence) goes back to the bridge; an editor that rejects an
edit is left alone until it reports its next change; and a safety net checks idle buffers
against the room and repairs any divergence (counted, and shown in ``huddle/status``)."""

from __future__ import annotations

import asyncio
import logging

from lsprotocol import types as lsp

from huddle.collab.errors import CollabError
from huddle.lsp.documents import Buffer, from_range
from huddle.lsp.workspace import Workspace

log = logging.getLogger("huddle.lsp")

APPLY_EDIT_TIMEOUT = 10.0
CHECK_INTERVAL = 2.0  # how often idle buffers are checked against the CRDT (seconds)
RETRY_BACKOFF = 0.5  # after a rejected edit, the first wait for the editor's next change (s)
RETRY_BACKOFF_MAX = 8.0  # doubled with each rejection in a row, up to this (seconds)


class EditSender:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._scheduled = False

    @property
    def repairs(self) -> int:
        return sum(b.bridge.repairs for b in self.ws.buffers.values() if b.bridge is not None)

    def schedule(self) -> None:
        """Send what is pending, soon (once, however many changes ask before then)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pump_all)

    def _pump_all(self) -> None:
        self._scheduled = False
        for buffer in list(self.ws.buffers.values()):
            self.pump(buffer)

    def pump(self, buffer: Buffer) -> None:
        edit = buffer.next_edit()
        if edit is None:
            return
        buffer.sending = True
        # No label: Neovim prints "Workspace edit <label>" for every edit that has one, a line
        # in :messages for each of a teammate's keystrokes.
        params = lsp.ApplyWorkspaceEditParams(
            edit=lsp.WorkspaceEdit(
                document_changes=[
                    lsp.TextDocumentEdit(
                        text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                            uri=buffer.uri, version=edit.version
                        ),
                        edits=[lsp.TextEdit(from_range(e.range), e.new_text) for e in edit.edits],
                    )
                ]
            ),
        )
        self.ws.spawn(self._send(buffer, edit.id, params))

    async def _send(
        self, buffer: Buffer, edit_id: int, params: lsp.ApplyWorkspaceEditParams
    ) -> None:
        settings = self.ws.settings
        timeout = APPLY_EDIT_TIMEOUT
        if settings is not None and settings.apply_edit_timeout_s is not None:
            timeout = settings.apply_edit_timeout_s
        sent_at = buffer.version
        request = asyncio.ensure_future(self.ws.workspace_apply_edit_async(params))
        # An answer after the timeout still finds its request waiting (pygls fails on the
        # answer to a cancelled one), and is dropped: the next didChange has told already.
        request.add_done_callback(lambda done: done.cancelled() or done.exception())
        rejected = False
        try:
            result = await asyncio.wait_for(asyncio.shield(request), timeout)
            applied = bool(result.applied)
            rejected = not applied
        except TimeoutError:
            applied = True  # no answer: the next didChange tells (see Bridge.edit_result)
        except Exception as exc:
            # eglot answers a stale versioned edit with an error, not "applied: false".
            log.info("applyEdit failed: %s", exc)
            applied = False
            rejected = True
        finally:
            buffer.sending = False
        try:
            if buffer.bridge is not None:
                buffer.bridge.edit_result(edit_id, applied)
        except CollabError:  # a bug must not leave the buffer stuck with an edit in flight
            log.exception("bridge failed on the answer to edit %d of %s", edit_id, buffer.path)
            buffer.dirty = True
        if rejected and buffer.version == sent_at:
            # Not when a didChange came in behind the edit (huddle.el sends its unreported
            # typing right after a stale rejection): what the editor has is known already.
            self._hold(buffer)
        else:
            buffer.rejections = 0
        self.pump(buffer)

    def _hold(self, buffer: Buffer) -> None:
        """After a rejected edit, send the buffer nothing until the editor's next didChange
        (its version moved on: the rejection's usual cause) or a backoff that doubles with each
        rejection in a row (an editor that rejects for another reason, with nothing to report)."""
        buffer.held = True
        backoff = RETRY_BACKOFF
        settings = self.ws.settings
        if settings is not None and settings.edit_retry_backoff_s is not None:
            backoff = settings.edit_retry_backoff_s
        delay = min(backoff * 2**buffer.rejections, max(backoff, RETRY_BACKOFF_MAX))
        buffer.rejections += 1

        def release() -> None:
            if buffer.held and self.ws.buffers.get(buffer.uri) is buffer:
                buffer.held = False
                self.pump(buffer)

        asyncio.get_running_loop().call_later(delay, release)

    def _settle_quiet(self, buffer: Buffer) -> None:
        """An edit the editor said it applied, and no echo recognised: once a whole check
        interval has passed with no change from the editor, take its text as it is
        (Bridge.settle), so that neither side waits for the user's next keystroke."""
        bridge = buffer.bridge
        assert bridge is not None
        if buffer.awaiting_since != buffer.version:
            buffer.awaiting_since = buffer.version
            return
        buffer.awaiting_since = None
        bridge.settle()
        log.warning(
            "%s: the editor applied an edit whose echo was not recognised; took its text as "
            "it is (repair #%d)",
            buffer.path,
            self.repairs,
        )
        self.pump(buffer)
        self.ws.send_status()

    async def safety_net(self) -> None:
        """Detect and repair divergence between editor shadow, pending edits and the CRDT."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)  # a period, not a wait for something
            for buffer in list(self.ws.buffers.values()):
                bridge = buffer.bridge
                if bridge is not None and not buffer.sending and bridge.awaiting_echo:
                    self._settle_quiet(buffer)
                    continue
                buffer.awaiting_since = None
                if bridge is None or buffer.sending or bridge.in_flight or not buffer.dirty:
                    continue
                buffer.dirty = False
                if not bridge.check():
                    log.warning("repaired %s (repair #%d)", buffer.path, self.repairs)
                    self.schedule()
                    self.ws.send_status()
