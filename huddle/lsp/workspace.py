"""What the language server's features need of it, as a protocol: ``Completions``, summaries,
presence and edit sending take a ``Workspace``, not the pygls server, so each can be read (and
tested) on its own, and none imports ``lsp.server``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lsprotocol import types as lsp
from pydantic import BaseModel

from huddle.collab.positions import PositionEncoding
from huddle.protocol import EditorNotification

if TYPE_CHECKING:
    from pygls.progress import Progress

    from huddle.lsp.documents import Buffer
    from huddle.lsp.ignore import ShareRules
    from huddle.lsp.session import Session
    from huddle.lsp.settings import LspSettings


class Workspace(Protocol):
    buffers: dict[str, Buffer]  # the open buffers by URI
    session: Session | None  # the room, once started
    settings: LspSettings | None
    encoding: PositionEncoding  # the editor's position encoding
    root: Path | None  # the workspace folder
    rules: ShareRules | None  # which of its files are shared

    def notify(self, method: EditorNotification, params: BaseModel) -> None:
        """Send the editor one of Huddle's notifications."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the server owns (cancelled when the session stops)."""

    def send_status(self) -> None:
        """Tell the editor the session's state (``huddle/status``)."""

    @property
    def client_capabilities(self) -> lsp.ClientCapabilities: ...

    @property
    def work_done_progress(self) -> Progress: ...

    async def workspace_apply_edit_async(
        self, params: lsp.ApplyWorkspaceEditParams
    ) -> lsp.ApplyWorkspaceEditResult: ...

    async def window_show_document_async(
        self, params: lsp.ShowDocumentParams
    ) -> lsp.ShowDocumentResult: ...


def dump(params: BaseModel) -> dict[str, Any]:
    """An editor payload as JSON: LSP's camelCase names, and only the fields that were set (an
    absent ``position`` stays absent: Lua reads a JSON null as a true value)."""
    return params.model_dump(mode="json", by_alias=True, exclude_unset=True)
