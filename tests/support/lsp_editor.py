"""A scripted editor on top of pytest-lsp's real LSP client, driving a real `huddle lsp`.

It behaves like the editors seen in the wild:

- ``vscode``: answers a versioned ``workspace/applyEdit`` whose version is stale with
  ``applied: false``; sends one ``didChange`` per edit.
- ``neovim``: skips a stale edit but answers ``applied: true`` (it lies); debounces
  ``didChange`` and sends many changes in one notification, versions jumping by more than one.
- ``eglot``: sends ``didChange`` only once the user has stopped typing for ``debounce`` (0.5 s
  by default, eglot's ``eglot-send-changes-idle-time``), every change since in one
  notification; answers a stale versioned edit with a JSON-RPC error (code 32603, positive),
  as eglot does.

Every applied server edit is echoed back as a ``didChange``, as real editors do.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections import deque, namedtuple
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pygls.protocol import JsonRPCNotification
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from huddle.collab.positions import LineIndex, PositionEncoding
from huddle.collab.positions import Position as CPosition
from tests.support.peers import eventually


@functools.cache
def _object_type(type_name: str, keys: tuple[str, ...]) -> Any:
    return namedtuple(type_name, keys, rename=True)


def _notification_with_objects(obj: dict[str, Any], cls: type[Any]) -> Any:
    """pygls's own hook for the params of a notification it has no type for (ours), with the
    namedtuple classes cached: pygls makes a new class for every object of every message, which
    takes a whole core at the rate a long soak gets ``huddle/peers``."""
    params = obj.get("params")
    if isinstance(params, dict):
        type_name = params.pop("type_name", "Object")
        obj["params"] = json.loads(
            json.dumps(params),
            object_hook=lambda d: _object_type(type_name, tuple(d))(*d.values()),
        )
    return cls(**obj)


@dataclass
class Buffer:
    uri: str
    text: str
    version: int
    pending: list[lsp.TextDocumentContentChangeEvent] = field(default_factory=list)


class Editor:
    def __init__(
        self,
        root: Path,
        *,
        style: str = "vscode",
        encoding: str = "utf-16",
        init_options: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        debounce: float | None = None,
        inline_completion: bool = True,
        keep_notifications: int | None = None,
        answer_delay: float = 0.0,
        client_name: str | None = None,
    ) -> None:
        self.root = root
        self.style = style
        self.encoding = PositionEncoding(encoding)
        self.init_options = init_options
        self.env = env or {}
        self.debounce = debounce if debounce is not None else 0.5 if style == "eglot" else 0.05
        self.inline_completion = inline_completion
        # clientInfo.name: huddle lsp takes a named editor other than Neovim for one whose
        # "applied: true" is true (Bridge.late_applies); unnamed, it is not.
        self.client_name = client_name
        self.buffers: dict[str, Buffer] = {}
        self.client: LanguageClient = make_test_lsp_client()
        # Every notification by method; only the last ``keep_notifications`` of each where
        # set (a long run receives hundreds of ``huddle/peers`` a second).
        self.notifications: dict[str, list[Any] | deque[Any]] = {}
        self._keep = keep_notifications
        self.rejected = 0
        self.applied = 0
        self.requests = 0  # workspace/applyEdit requests received
        self.answered = 0  # and answered
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._edit_arrived = asyncio.Event()
        # The next this many applied edits land in the buffer with a character more than sent,
        # and are reported so (VS Code garbles an edit this way when the user types in between:
        # Bridge.settle): an echo no bridge can recognise.
        self.garble_echoes = 0

        def apply_edit(client: LanguageClient, params: lsp.ApplyWorkspaceEditParams) -> Any:
            return self._on_apply_edit(params)

        async def apply_edit_answering_late(
            client: LanguageClient, params: lsp.ApplyWorkspaceEditParams
        ) -> Any:
            result = self._on_apply_edit(params)  # applied (and echoed) at once
            await asyncio.sleep(answer_delay)  # an editor busy with something else
            self.answered += 1
            return result

        late = answer_delay > 0
        self.client.feature(lsp.WORKSPACE_APPLY_EDIT)(
            apply_edit_answering_late if late else apply_edit
        )
        self.client.protocol._converter.register_structure_hook(
            JsonRPCNotification, _notification_with_objects
        )
        for method in (
            "huddle/status",
            "huddle/peers",
            "huddle/inlineCompletionPartial",
            "huddle/summaryPartial",
        ):
            self.client.feature(method)(self._recorder(method))

    def _recorder(self, method: str) -> Any:
        def record(client: LanguageClient, params: Any) -> None:
            if method not in self.notifications:
                self.notifications[method] = [] if self._keep is None else deque(maxlen=self._keep)
            self.notifications[method].append(params)

        return record

    async def __aenter__(self) -> Editor:
        await self.client.start_io(
            sys.executable, "-m", "huddle.cli", "lsp", env={**os.environ, **self.env}
        )
        capabilities = client_capabilities(
            "visual-studio-code" if self.style == "vscode" else "neovim"
        )
        capabilities.general = lsp.GeneralClientCapabilities(
            position_encodings=[self.encoding.value]
        )
        if self.inline_completion and capabilities.text_document is not None:
            capabilities.text_document.inline_completion = lsp.InlineCompletionClientCapabilities()
        result = await self.client.initialize_session(
            lsp.InitializeParams(
                capabilities=capabilities,
                root_uri=self.root.as_uri(),
                workspace_folders=[
                    lsp.WorkspaceFolder(uri=self.root.as_uri(), name=self.root.name)
                ],
                initialization_options=self.init_options,
                client_info=None if self.client_name is None else lsp.ClientInfo(self.client_name),
            )
        )
        assert result.capabilities.position_encoding == self.encoding.value
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()
        await self.client.shutdown_session()
        for task in self._flushers.values():
            task.cancel()

    async def wait_status(self, state: str, timeout: float = 20.0) -> None:
        """Until the latest ``huddle/status`` notification reports ``state``."""

        def latest() -> bool:
            notes = self.notifications.get("huddle/status", [])
            return bool(notes) and notes[-1].state == state

        await eventually(latest, timeout=timeout, what=f"status {state}")

    # -- the user ------------------------------------------------------------------------

    def uri(self, path: str) -> str:
        return (self.root / path).as_uri()

    def open(self, path: str, text: str) -> str:
        uri = self.uri(path)
        self.buffers[uri] = Buffer(uri, text, 1)
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)
            )
        )
        return uri

    def close(self, path: str) -> None:
        self.client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri=self.uri(path)))
        )

    def text(self, path: str) -> str:
        return self.buffers[self.uri(path)].text

    def replace(self, path: str, start: int, end: int, new_text: str) -> None:
        """The user replaces code points [start, end) with ``new_text``."""
        buf = self.buffers[self.uri(path)]
        index = LineIndex(buf.text)
        lsp_range = lsp.Range(
            start=self._lsp_pos(index.position_at(start, self.encoding)),
            end=self._lsp_pos(index.position_at(end, self.encoding)),
        )
        buf.text = buf.text[:start] + new_text + buf.text[end:]
        self._changed(buf, [lsp.TextDocumentContentChangePartial(range=lsp_range, text=new_text)])

    def type(self, path: str, offset: int, new_text: str) -> None:
        self.replace(path, offset, offset, new_text)

    def position(self, path: str, offset: int) -> lsp.Position:
        index = LineIndex(self.text(path))
        return self._lsp_pos(index.position_at(offset, self.encoding))

    def ask_inline(self, path: str, offset: int, msg_id: str | None = None) -> asyncio.Future[Any]:
        """Send ``textDocument/inlineCompletion`` at ``offset``; returns the response future.
        Changes still debounced are sent first, as Neovim does before any request."""
        self._flush(self.buffers[self.uri(path)])
        params = lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
            ),
            text_document=lsp.TextDocumentIdentifier(uri=self.uri(path)),
            position=self.position(path, offset),
        )
        # Sent now, as an editor does: pytest-lsp's send_request_async is a coroutine, which
        # would send it only once its task runs, after any change made in the meantime.
        sent = self.client.protocol.send_request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )
        return asyncio.wrap_future(sent)

    async def inline(self, path: str, offset: int) -> str | None:
        """The inline completion at ``offset``, as an editor shows it (None: no suggestion)."""
        result = await self.ask_inline(path, offset)
        if result is None:
            return None
        items = result.items if isinstance(result, lsp.InlineCompletionList) else result
        assert len(items) == 1
        text = items[0].insert_text
        assert isinstance(text, str)
        return text

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))

    # -- the editor ----------------------------------------------------------------------

    @staticmethod
    def _lsp_pos(pos: CPosition) -> lsp.Position:
        return lsp.Position(line=pos.line, character=pos.character)

    def _changed(self, buf: Buffer, changes: list[lsp.TextDocumentContentChangeEvent]) -> None:
        buf.version += 1
        if self.style == "eglot":  # an idle timer, restarted by every change
            buf.pending.extend(changes)
            flusher = self._flushers.get(buf.uri)
            if flusher is not None:
                flusher.cancel()
            self._flushers[buf.uri] = asyncio.ensure_future(self._debounced(buf))
        elif self.style == "neovim":
            buf.pending.extend(changes)
            if buf.uri not in self._flushers or self._flushers[buf.uri].done():
                self._flushers[buf.uri] = asyncio.ensure_future(self._debounced(buf))
        else:
            self._send(buf, changes)

    async def _debounced(self, buf: Buffer) -> None:
        await asyncio.sleep(self.debounce)  # the editor's own debounce timer
        self._flush(buf)

    def _flush(self, buf: Buffer) -> None:
        if buf.pending:
            changes, buf.pending = buf.pending, []
            self._send(buf, changes)

    async def flush(self) -> None:
        for buf in self.buffers.values():
            self._flush(buf)

    def _send(self, buf: Buffer, changes: list[lsp.TextDocumentContentChangeEvent]) -> None:
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=buf.uri, version=buf.version),
                content_changes=changes,
            )
        )

    def _on_apply_edit(self, params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        self._edit_arrived.set()
        self.requests += 1
        for change in params.edit.document_changes or []:
            assert isinstance(change, lsp.TextDocumentEdit)
            buf = self.buffers.get(change.text_document.uri)
            if buf is None:
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="not open")
            if change.text_document.version != buf.version:
                self.rejected += 1
                if self.style == "neovim":
                    return lsp.ApplyWorkspaceEditResult(applied=True)  # skipped, yet "applied"
                if self.style == "eglot":
                    name = Path(change.text_document.uri).name
                    raise JsonRpcException(
                        f"Edits on '{name}' require version {change.text_document.version}, "
                        f"you have {buf.version}",
                        code=32603,
                    )
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="stale version")
            index = LineIndex(buf.text)
            spans = []
            for edit in change.edits:
                assert isinstance(edit, lsp.TextEdit)
                start = index.offset_at(
                    CPosition(edit.range.start.line, edit.range.start.character), self.encoding
                )
                end = index.offset_at(
                    CPosition(edit.range.end.line, edit.range.end.character), self.encoding
                )
                spans.append((start, end, edit.new_text, edit.range))
            if self.garble_echoes > 0:
                self.garble_echoes -= 1
                start, end, new_text, edit_range = spans[-1]
                spans[-1] = (start, end, new_text + "¿", edit_range)
            # LSP: all ranges refer to the document before the edit; apply back to front.
            for start, end, new_text, _ in sorted(spans, key=lambda s: s[0], reverse=True):
                buf.text = buf.text[:start] + new_text + buf.text[end:]
            echo: list[lsp.TextDocumentContentChangeEvent] = [
                lsp.TextDocumentContentChangePartial(range=r, text=t)
                for _, _, t, r in sorted(spans, key=lambda s: s[0], reverse=True)
            ]
            self.applied += 1
            self._changed(buf, echo)
        return lsp.ApplyWorkspaceEditResult(applied=True)
