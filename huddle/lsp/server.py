"""``huddle lsp``: the language server each editor launches over stdio.

It keeps a pycrdt replica of the room (``Session``), binds every shareable open buffer to the
room's ``Text`` through a ``Bridge`` (``documents``), sends the room's changes to the editor as
versioned ``workspace/applyEdit`` (``edits``), and shows who is where (``presence``). The
handlers below are registered from tables by ``build_server``; the names they answer to, and the
shapes of Huddle's own notifications and results, are in ``huddle.protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import sys
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Subscription, Text, TransactionEvent, UndoManager
from pydantic import BaseModel, ValidationError
from pygls.exceptions import (
    FeatureNotificationError,
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol.language_server import (
    LanguageServerProtocol,
    _prepare_command_arguments,
    lsp_method,
)
from pygls.uris import to_fs_path

from huddle import __version__
from huddle.collab import schema
from huddle.collab.bridge import TextChange
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position, PositionEncoding, Range
from huddle.lsp import stdio, summaries
from huddle.lsp.completion import CompletionFailed, Completions, Offer
from huddle.lsp.documents import (
    MAX_EXACT,
    Buffer,
    read_apply_edit_result,
    read_did_change,
    to_changes,
)
from huddle.lsp.edits import EditSender
from huddle.lsp.errors import SettingsError
from huddle.lsp.hub_client import Status
from huddle.lsp.ignore import ShareRules
from huddle.lsp.presence import Presence
from huddle.lsp.session import Session
from huddle.lsp.settings import LspSettings, resolve
from huddle.lsp.workspace import dump
from huddle.protocol import (
    SUMMARY_COMMANDS,
    Command,
    CreateFileParams,
    CreateFileResult,
    EditorNotification,
    EditorStatus,
    FollowResult,
    HubMethod,
    InviteParams,
    InviteResult,
    RpcError,
    SummaryKind,
    UndoResult,
    invalid_params,
)

log = logging.getLogger("huddle.lsp")


_DID_CHANGE = b'"textDocument/didChange"'
_METHOD = b'"method"'
_RESULT = b'"result"'
_APPLY_EDIT_RESPONSE = lsp.ApplyWorkspaceEditResponse


class HuddleProtocol(LanguageServerProtocol):
    """pygls keeps its own copy of every open document and patches it on each ``didChange``:
    O(file size) per keystroke (15 ms at 1 MB). Huddle keeps its own shadow in the bridge and
    never reads pygls's copy, so the protocol hands the notification straight over; over its
    own stdio transport (``stdio.serve``), without making lsprotocol objects of it (``take``),
    as it does with the editor's answer to each applyEdit."""

    def take(self, body: bytes) -> bool:
        """Handle a well-formed ``didChange``, or the answer to an applyEdit sent by hand, from
        its raw JSON body (True), as pygls would with its objects; anything else is left to
        pygls (False)."""
        if self._shutdown:
            return False
        if _DID_CHANGE in body:
            return self._take_did_change(body)
        if _METHOD not in body and _RESULT in body:
            return self._take_applied(body)
        return False

    def _take_applied(self, body: bytes) -> bool:
        """The answer to a ``workspace/applyEdit`` written by hand
        (:meth:`HuddleServer.workspace_apply_edit_async`): its future gets the result that
        pygls would have read."""
        try:
            parsed = read_apply_edit_result(json.loads(body))
        except ValueError:
            return False
        if parsed is None or self._result_types.get(parsed[0]) is not _APPLY_EDIT_RESPONSE:
            return False
        msg_id, result = parsed
        del self._result_types[msg_id]
        future = self._request_futures.pop(msg_id, None)
        if future is not None:
            future.set_result(result)
        return True

    def _take_did_change(self, body: bytes) -> bool:
        """A ``didChange``, handled as its handler would with pygls's objects. An error in the
        handler is reported as pygls reports one (``FeatureNotificationError``)."""
        server = self._server
        if not isinstance(server, HuddleServer) or lsp.TEXT_DOCUMENT_DID_CHANGE not in (
            self.fm.features
        ):
            return False
        try:
            parsed = read_did_change(json.loads(body))
        except ValueError:  # not JSON (or not UTF-8): pygls says so
            return False
        if parsed is None:
            return False
        try:
            server.change_text(*parsed)
        except Exception:
            error = JsonRpcInternalError.of(sys.exc_info())  # type: ignore[no-untyped-call]
            server._report_server_error(error, FeatureNotificationError)
        return True

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: lsp.DidChangeTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(lsp.WORKSPACE_EXECUTE_COMMAND)
    async def lsp_workspace__execute_command(  # type: ignore[override]
        self, params: lsp.ExecuteCommandParams
    ) -> Any:
        """pygls runs a command as a generator step whose task is not the one ``$/cancelRequest``
        cancels; run it as this request's own task so cancelling it reaches the command (and
        through it the hub and the model)."""
        if (handler := self.fm.commands.get(params.command)) is None:
            raise JsonRpcInvalidParams.of(ValueError(f"no command {params.command!r}"))
        try:
            args, kwargs = _prepare_command_arguments(handler, params, self._converter)
        except Exception as exc:
            raise JsonRpcInvalidParams.of(exc) from None
        result = handler(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    @lsp_method(lsp.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: lsp.DidOpenTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: lsp.DidCloseTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(lsp.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


class HuddleServer(LanguageServer):
    """The server's state: the workspace, the session, the open buffers; what happens to them
    lives in ``Presence``, ``EditSender``, ``Completions`` and ``summaries``, each of which
    sees this server as a ``Workspace``."""

    def __init__(self, solo_data_dir: Path | None = None) -> None:
        super().__init__(
            "huddle",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=HuddleProtocol,
        )
        self.solo_data_dir = solo_data_dir
        self.root: Path | None = None
        self.rules: ShareRules | None = None
        self.settings: LspSettings | None = None
        self.settings_error: str | None = None
        self.encoding = PositionEncoding.UTF16
        # The editor keeps a file's final newline outside its lines (Neovim's 'eol'): tells the
        # bridge what such an editor makes of a text without one (see Bridge.final_newline).
        self.final_newline = False
        self.line_diffs = False  # it reports changes as diffs of lines (Bridge.line_diffs)
        # Its "applied: true" is true (not Neovim's, said for skipped edits): see
        # Bridge.late_applies.
        self.late_applies = False
        # It rewrites the line breaks of the edits it applies to its own (VS Code says so in
        # its capabilities): see Bridge.normalizes_eol.
        self.normalizes_eol = False
        self.session: Session | None = None
        self.buffers: dict[str, Buffer] = {}
        self.origin = ("huddle-lsp", id(self))
        self.undo: UndoManager | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._binding: dict[str, asyncio.Task[None]] = {}
        self._doc_subscription: Subscription | None = None
        self._focus: str | None = None  # the buffer the user last opened or typed in
        self.malformed_changes = 0  # huddle/changes notifications ignored as malformed
        self.presence = Presence(self)
        self.edits = EditSender(self)
        self.completions = Completions(self)

    # -- the Workspace protocol ----------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def notify(self, method: EditorNotification, params: BaseModel) -> None:
        """Written as JSON straight from the model's dump: pygls's ``notify`` would wrap it in
        an attrs message and walk the plain dict again with cattrs (three quarters of the cost
        of a ``huddle/peers`` with ten teammates)."""
        message = {"jsonrpc": "2.0", "method": method.value, "params": dump(params)}
        self.protocol._send_data(message)

    def send_status(self) -> None:
        self.notify(EditorNotification.STATUS, self.describe())

    async def workspace_apply_edit_async(
        self, params: lsp.ApplyWorkspaceEditParams
    ) -> lsp.ApplyWorkspaceEditResult:
        """pygls's request, with the params written as JSON by hand where they have the one
        shape ``EditSender`` sends (a teammate's every keystroke): cattrs's unstructuring of
        the lsprotocol objects was a third of the request's cost. The answer is read by pygls."""
        payload = _apply_edit_json(params)
        if payload is None:
            return await super().workspace_apply_edit_async(params)
        protocol = self.protocol
        msg_id = str(uuid.uuid4())
        future: Future[lsp.ApplyWorkspaceEditResult] = Future()
        protocol._request_futures[msg_id] = future
        protocol._result_types[msg_id] = protocol.get_result_type(lsp.WORKSPACE_APPLY_EDIT)
        message = {"jsonrpc": "2.0", "id": msg_id, "method": lsp.WORKSPACE_APPLY_EDIT}
        protocol._send_data({**message, "params": payload})
        return await asyncio.wrap_future(future)

    # -- lifecycle -----------------------------------------------------------------------

    async def start_session(self) -> None:
        if self.settings is None:
            self.send_status()
            return
        self.session = await self._stack.enter_async_context(
            Session(
                self.settings,
                solo_data_dir=self.solo_data_dir,
                workspace=self.root,
                on_status=lambda status, reason: self._on_status(status),
                on_peers=lambda peers: self.presence.schedule(),
            )
        )
        files = schema.files(self.session.doc)
        self.undo = UndoManager(scopes=[files], capture_timeout_millis=500)
        self.undo.include_origin(self.origin)
        self._doc_subscription = self.session.doc.observe(self._on_transaction)
        for buffer in self.buffers.values():
            self._start_binding(buffer)
        self.spawn(self.edits.safety_net())
        self.send_status()

    def describe(self) -> EditorStatus:
        shared = sorted(b.path for b in self.buffers.values() if b.bridge is not None)
        extra: dict[str, Any] = {"repairs": self.edits.repairs, "shared": shared}
        if self.completions.outcomes.stats is not None:
            extra["acceptance"] = self.completions.outcomes.stats
        if self.session is not None:
            return self.session.describe(**extra)
        reason = self.settings_error or "not started"
        return EditorStatus(state="offline", reason=reason, **extra)

    async def stop_session(self) -> None:
        self.completions.close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for buffer in self.buffers.values():
            buffer.close()
        await self._stack.aclose()
        self.session = None

    def _on_status(self, status: Status) -> None:
        self.send_status()
        if status is Status.CONNECTED:
            for buffer in self.buffers.values():
                if buffer.bridge is None:
                    self._start_binding(buffer)

    # -- documents -----------------------------------------------------------------------

    def path_of(self, uri: str) -> str | None:
        if self.rules is None:
            return None
        fs_path = to_fs_path(uri)
        return None if fs_path is None else self.rules.relative(Path(fs_path))

    def open(self, params: lsp.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        path = self.path_of(item.uri)
        if path is None:
            log.info("not shared (outside the workspace or ignored): %s", item.uri)
            return
        buffer = Buffer(item.uri, path, item.version, item.text)
        self.buffers[item.uri] = buffer
        self._focus = item.uri
        if self.session is not None:
            self._start_binding(buffer)

    def _start_binding(self, buffer: Buffer) -> None:
        task = self._binding.get(buffer.uri)
        if task is None or task.done():
            self._binding[buffer.uri] = self.spawn(self._bind(buffer))

    async def _bind(self, buffer: Buffer) -> None:
        session = self.session
        assert session is not None and session.client is not None
        client = session.client
        while self.buffers.get(buffer.uri) is buffer and buffer.bridge is None:
            await client.synced.wait()
            existing = schema.files(session.doc).get(buffer.path)
            if isinstance(existing, Text):
                buffer.bind(
                    existing,
                    self.origin,
                    self.encoding,
                    final_newline=self.final_newline,
                    line_diffs=self.line_diffs,
                    late_applies=self.late_applies,
                    normalizes_eol=self.normalizes_eol,
                )
                log.info("shared %s", buffer.path)
                if self._focus == buffer.uri:
                    self.presence.bound(buffer)
                self.edits.schedule()
                return
            if existing is not None:
                log.error("room entry %s is not text; not sharing it", buffer.path)
                return
            if client.read_only:
                log.info("%s is not in the room and this token is read-only", buffer.path)
                return
            try:
                await client.call(
                    HubMethod.CREATE_FILE,
                    CreateFileParams(path=buffer.path, content=buffer.opened_with),
                    CreateFileResult,
                )
            except RpcError as exc:
                if exc.code not in ("offline", "disconnected"):
                    log.error("could not add %s to the room: %s", buffer.path, exc.message)
                    return

    def change(self, params: lsp.DidChangeTextDocumentParams) -> None:
        document = params.text_document
        self.change_text(document.uri, document.version, to_changes(list(params.content_changes)))

    def change_text(self, uri: str, version: int, changes: list[TextChange]) -> None:
        """A ``didChange``: ``changes`` in order, the editor's text at ``version`` after them."""
        buffer = self.buffers.get(uri)
        if buffer is None:
            if self.path_of(uri) is not None:
                log.warning("didChange for %s, which is not open: ignored", uri)
            return
        self._focus = uri
        bridge = buffer.bridge
        awaited_echo = bridge is not None and bridge.in_flight
        fed = bridge.fed if bridge is not None else 0
        outcomes = self.completions.outcomes
        before = bridge.shadow if bridge is not None and outcomes.watching(uri) else None
        try:
            buffer.change(version, changes)
            if before is not None:
                outcomes.changed(uri, before, changes, self.encoding)
        except CollabError as exc:
            log.error("rejected a change to %s: %s", buffer.path, exc)
            self.window_show_message(
                lsp.ShowMessageParams(lsp.MessageType.Warning, f"Huddle: {exc}; resyncing")
            )
            if bridge is not None:
                bridge.check()
        # The editor's echo of our own applyEdit is not the user moving: leave the cursor be.
        # It is one where the edit in flight was taken as applied and none of the changes was
        # the user's (an edit of several places comes back as several changes).
        echo = bridge is not None and awaited_echo and not bridge.in_flight and bridge.fed == fed
        last = changes[-1] if changes else None
        if last is not None and last.range is not None and bridge is not None and not echo:
            self.presence.from_edit(buffer, last.range.start, last.text)
        elif echo:
            # Teammates' cursors are shown in the editor's coordinates, which the echo just
            # moved: a tick resolved before it placed them against the text without the edit.
            self.presence.schedule()
        self.edits.schedule()

    def close(self, params: lsp.DidCloseTextDocumentParams) -> None:
        buffer = self.buffers.pop(params.text_document.uri, None)
        self.completions.close(params.text_document.uri)
        if buffer is not None:
            buffer.close()  # the shared document stays in the room
            task = self._binding.pop(buffer.uri, None)
            if task is not None:
                task.cancel()

    def _on_transaction(self, event: TransactionEvent) -> None:
        for buffer in self.buffers.values():
            buffer.dirty = True
        self.edits.schedule()
        self.presence.schedule()


def _apply_edit_json(params: lsp.ApplyWorkspaceEditParams) -> dict[str, Any] | None:
    """``params`` as lsprotocol writes them, where they are one versioned ``TextDocumentEdit``
    of plain ``TextEdit``s and nothing else; else None."""
    edit = params.edit
    if params.label is not None or params.metadata is not None or edit.changes is not None:
        return None
    if edit.change_annotations is not None or edit.document_changes is None:
        return None
    documents = []
    for change in edit.document_changes:
        if type(change) is not lsp.TextDocumentEdit:
            return None
        document = change.text_document
        edits = []
        for text_edit in change.edits:
            if type(text_edit) is not lsp.TextEdit:
                return None
            start, end = text_edit.range.start, text_edit.range.end
            where = {
                "start": {"line": start.line, "character": start.character},
                "end": {"line": end.line, "character": end.character},
            }
            edits.append({"range": where, "newText": text_edit.new_text})
        identifier = {"uri": document.uri, "version": document.version}
        documents.append({"textDocument": identifier, "edits": edits})
    return {"edit": {"documentChanges": documents}}


# -- handlers ----------------------------------------------------------------------------------


def initialize(ls: HuddleServer, params: lsp.InitializeParams) -> None:
    root_uri = params.root_uri or (
        params.workspace_folders[0].uri if params.workspace_folders else None
    )
    fs_root = to_fs_path(root_uri) if root_uri else None
    ls.root = Path(fs_root) if fs_root else None
    ls.rules = ShareRules(ls.root) if ls.root else None
    ls.encoding = PositionEncoding(ls.workspace.position_encoding or PositionEncoding.UTF16)
    neovim = params.client_info is not None and params.client_info.name == "Neovim"
    ls.final_newline = ls.line_diffs = neovim
    ls.late_applies = params.client_info is not None and not neovim
    workspace = params.capabilities.workspace
    edit = workspace.workspace_edit if workspace is not None else None
    ls.normalizes_eol = bool(edit is not None and edit.normalizes_line_endings)
    try:
        ls.settings = resolve(params.initialization_options, ls.root)
    except SettingsError as exc:
        ls.settings_error = str(exc)
        log.error("%s", exc)


async def initialized(ls: HuddleServer, params: lsp.InitializedParams) -> None:
    if ls.settings_error:
        ls.window_show_message(
            lsp.ShowMessageParams(lsp.MessageType.Error, f"Huddle: {ls.settings_error}")
        )
    await ls.start_session()


async def shutdown(ls: HuddleServer, params: None) -> None:
    await ls.stop_session()


def did_open(ls: HuddleServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.open(params)


def did_change(ls: HuddleServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.change(params)


def did_close(ls: HuddleServer, params: lsp.DidCloseTextDocumentParams) -> None:
    ls.close(params)


async def inline_completion(
    ls: HuddleServer, params: lsp.InlineCompletionParams
) -> lsp.InlineCompletionList | None:
    offer = await _complete(ls, params.text_document.uri, params.position)
    if offer is None:
        return None
    here = lsp.Range(params.position, params.position)
    item = lsp.InlineCompletionItem(
        insert_text=offer.text, range=here, command=_accepted_command(offer)
    )
    return lsp.InlineCompletionList(items=[item])


def _accepted_command(offer: Offer) -> lsp.Command | None:
    """The item's command: editors run it when the user accepts the item (VS Code does)."""
    if offer.id is None:
        return None
    return lsp.Command(
        title="Huddle: completion accepted",
        command=Command.COMPLETION_ACCEPTED,
        arguments=[offer.id],
    )


async def completion(ls: HuddleServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    """The AI completion as one item, for editors without inline completion."""
    caps = ls.client_capabilities.text_document
    if caps is not None and caps.inline_completion is not None:
        return lsp.CompletionList(is_incomplete=False, items=[])
    offer = await _complete(ls, params.text_document.uri, params.position)
    if offer is None:
        return lsp.CompletionList(is_incomplete=True, items=[])
    text = offer.text
    first = text.strip().splitlines()[0] if text.strip() else text
    item = lsp.CompletionItem(
        label=first if len(first) <= 60 else first[:59] + "…",
        kind=lsp.CompletionItemKind.Text,
        detail="Huddle AI",
        documentation=lsp.MarkupContent(lsp.MarkupKind.PlainText, text),
        sort_text="\x00",
        filter_text="",
        insert_text_format=lsp.InsertTextFormat.PlainText,
        text_edit=lsp.TextEdit(lsp.Range(params.position, params.position), text),
        command=_accepted_command(offer),
    )
    return lsp.CompletionList(is_incomplete=True, items=[item])


def cursor(ls: HuddleServer, params: Any) -> None:
    """``huddle/cursor`` (``CursorParams``), from editors whose LSP client reports no cursor."""
    try:
        uri = str(params.uri)
        head = Position(int(params.position.line), int(params.position.character))
        anchor = head
        selection = getattr(params, "selection", None)
        if selection is not None:
            anchor = Position(int(selection.start.line), int(selection.start.character))
    except (AttributeError, TypeError, ValueError):
        log.warning("ignored a malformed %s notification", EditorNotification.CURSOR)
        return
    ls.presence.set_cursor(uri, anchor, head)


def exact_changes(ls: HuddleServer, params: Any) -> None:
    """``{textDocument: {uri, version}, changes: [{range, text}] | null}``, ranges in UTF-8
    columns: one buffer change exactly as the editor made it (Neovim's ``on_bytes``), sent
    before the debounced ``didChange`` that reports it as a line diff. ``didChange`` uses
    these where they lead to the same text (see Buffer.change). Anything malformed is
    ignored (logged once): the didChange it belongs to then falls back to its report."""
    try:
        uri = params.textDocument.uri
        tick = params.textDocument.version
        raw = params.changes
        if not isinstance(uri, str) or type(tick) is not int:
            raise TypeError("textDocument")
        changes: list[TextChange] | None = None
        if raw is not None:
            if not isinstance(raw, list) or len(raw) > MAX_EXACT:
                raise TypeError("changes")
            changes = [
                TextChange(Range(_position(c.range.start), _position(c.range.end)), c.text)
                for c in raw
            ]
            if not all(isinstance(c.text, str) for c in changes):
                raise TypeError("text")
    except (AttributeError, TypeError, ValueError) as exc:
        ls.malformed_changes += 1
        if ls.malformed_changes == 1:
            log.warning("ignored a malformed %s notification (%s)", EditorNotification.CHANGES, exc)
        return
    buffer = ls.buffers.get(uri)
    if buffer is not None:
        buffer.add_exact(tick, changes)


def _position(value: Any) -> Position:
    """A ``{line, character}`` of a ``huddle/changes`` notification (TypeError if it is not)."""
    line, character = value.line, value.character
    if type(line) is not int or type(character) is not int or line < 0 or character < 0:
        raise TypeError("position")
    return Position(line, character)


# -- commands ------------------------------------------------------------------------------------


def status(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    return dump(ls.describe())


async def invite(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    if ls.session is None or ls.session.client is None:
        raise RuntimeError("not connected to a room")
    options = args[0] if args and isinstance(args[0], dict) else {}
    try:
        asked = InviteParams.model_validate(options)
        result = await ls.session.client.call(HubMethod.INVITE, asked, InviteResult)
    except ValidationError as exc:
        raise RuntimeError(f"cannot invite: {invalid_params(exc).message}") from None
    except RpcError as exc:
        raise RuntimeError(f"cannot invite: {exc.message}") from None
    return dump(result)


def completion_accepted(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    """The editor accepted the completion ``args[0]`` names (the item's command)."""
    completion_id = args[0] if args and isinstance(args[0], str) else None
    if completion_id is None:
        raise ValueError(f"{Command.COMPLETION_ACCEPTED} needs the completion's id")
    return {"recorded": ls.completions.outcomes.accepted(completion_id)}


def undo_mine(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    return dump(UndoResult(undone=ls.undo is not None and bool(ls.undo.undo())))


def follow(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    name = args[0] if args and isinstance(args[0], str) else None
    if not name:
        raise ValueError("huddle.follow needs a teammate's name")
    ls.presence.follow(name)
    return dump(FollowResult(following=name))


def unfollow(ls: HuddleServer, *args: Any) -> dict[str, Any]:
    ls.presence.follow(None)
    return dump(FollowResult(following=None))


def _summary_command(kind: SummaryKind) -> Callable[..., Coroutine[Any, Any, dict[str, Any]]]:
    async def command(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        try:
            return dump(await summaries.summarize(ls, kind, args))
        except summaries.SummaryFailed as exc:
            raise RequestFailed(str(exc)) from None

    return command


FEATURES: list[tuple[str, Callable[..., Any], Any]] = [
    (lsp.INITIALIZE, initialize, None),
    (lsp.INITIALIZED, initialized, None),
    (lsp.SHUTDOWN, shutdown, None),
    (lsp.TEXT_DOCUMENT_DID_OPEN, did_open, None),
    (lsp.TEXT_DOCUMENT_DID_CHANGE, did_change, None),
    (lsp.TEXT_DOCUMENT_DID_CLOSE, did_close, None),
    # pygls 2.1 advertises inline completion only when registered with its options
    (lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_completion, lsp.InlineCompletionOptions()),
    (lsp.TEXT_DOCUMENT_COMPLETION, completion, lsp.CompletionOptions()),
    (EditorNotification.CURSOR, cursor, None),
    (EditorNotification.CHANGES, exact_changes, None),
]

COMMANDS: dict[Command, Callable[..., Any]] = {
    Command.STATUS: status,
    Command.INVITE: invite,
    Command.UNDO_MINE: undo_mine,
    Command.FOLLOW: follow,
    Command.UNFOLLOW: unfollow,
    Command.COMPLETION_ACCEPTED: completion_accepted,
    **{name: _summary_command(kind) for name, kind in SUMMARY_COMMANDS.items()},
}


def build_server(solo_data_dir: Path | None = None) -> HuddleServer:
    server = HuddleServer(solo_data_dir)
    for method, handler, options in FEATURES:
        server.feature(method, options)(handler)
    for name, command in COMMANDS.items():
        server.command(name)(command)
    return server


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed: the request was valid but could not be served."""

    CODE = int(lsp.LSPErrorCodes.RequestFailed)
    MESSAGE = "request failed"


async def _complete(ls: HuddleServer, uri: str, position: lsp.Position) -> Offer | None:
    try:
        return await ls.completions.inline(uri, position)
    except CompletionFailed as exc:
        raise RequestFailed(str(exc)) from None


def main(solo_data_dir: Path | None = None) -> None:
    stdio.serve(build_server(solo_data_dir))
