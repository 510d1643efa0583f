"""``huddle lsp``: the language server each editor launches over stdio.

It keeps a pycrdt replica of the room (``Session``), binds every shareable open buffer to the
room's ``Text`` through a ``Bridge``, sends remote changes to the editor as versioned
``workspace/applyEdit``, and shows who is where (``huddle/peers``, ``huddle/status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Doc, Subscription, Text, TransactionEvent, UndoManager
from pydantic import ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol.language_server import (
    LanguageServerProtocol,
    _prepare_command_arguments,
    lsp_method,
)
from pygls.uris import from_fs_path, to_fs_path

from huddle import __version__
from huddle.collab import schema
from huddle.collab.bridge import TextChange
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position, PositionEncoding, Range
from huddle.collab.sticky import StickyResolver, Utf16Offsets, sticky_position
from huddle.lsp import stdio, summaries
from huddle.lsp.completion import CompletionFailed, Completions
from huddle.lsp.documents import MAX_EXACT, Buffer, from_range, to_changes
from huddle.lsp.errors import SettingsError
from huddle.lsp.ignore import ShareRules
from huddle.lsp.room_paths import room_path
from huddle.lsp.session import Session
from huddle.lsp.settings import LspSettings, resolve
from huddle.protocol import (
    CreateFileParams,
    CreateFileResult,
    HubMethod,
    InviteParams,
    InviteResult,
    RpcError,
    invalid_params,
)
from huddle.server.client import Status

log = logging.getLogger("huddle.lsp")

STATUS = "huddle/status"
PEERS = "huddle/peers"
CURSOR = "huddle/cursor"
CHANGES = "huddle/changes"  # Huddle's Neovim plugin: the exact changes behind a didChange
APPLY_EDIT_TIMEOUT = 10.0
PRESENCE_INTERVAL = 0.05  # coalesce cursor and peer updates (seconds)
# A teammate's head and anchor in the editor's coordinates (None: not in the text).
CursorPair = tuple[dict[str, int] | None, dict[str, int] | None]
CHECK_INTERVAL = 2.0  # how often idle buffers are checked against the CRDT (seconds)
RETRY_BACKOFF = 0.5  # after a rejected edit, the first wait for the editor's next change (s)
RETRY_BACKOFF_MAX = 8.0  # doubled with each rejection in a row, up to this (seconds)


class HuddleProtocol(LanguageServerProtocol):
    """pygls keeps its own copy of every open document and patches it on each ``didChange``:
    O(file size) per keystroke (15 ms at 1 MB). Huddle keeps its own shadow in the bridge and
    never reads pygls's copy, so the protocol hands the notification straight over."""

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
        self.session: Session | None = None
        self.buffers: dict[str, Buffer] = {}
        self.origin = ("huddle-lsp", id(self))
        self.undo: UndoManager | None = None
        self.following: str | None = None
        self._followed_file: str | None = None
        self._stack = contextlib.AsyncExitStack()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._binding: dict[str, asyncio.Task[None]] = {}
        self._doc_subscription: Subscription | None = None
        self._pump_scheduled = False
        self._presence_scheduled = False
        self._cursor: tuple[str, int, int] | None = None  # (path, anchor, head) in code points
        self._focus: str | None = None  # the buffer the user last opened or typed in
        self._published_cursor: tuple[str, int, int] | None = ("", -1, -1)  # nothing yet
        self._published_peers: dict[str, Any] | None = None
        # Teammates' cursors as last resolved, by client id: (what they depend on, head, anchor).
        self._peer_cursors: dict[int, tuple[tuple[Any, ...], CursorPair]] = {}
        self._uris: dict[tuple[Path, str], str | None] = {}
        self.malformed_changes = 0  # huddle/changes notifications ignored as malformed
        self.completions = Completions(self)

    # -- lifecycle -----------------------------------------------------------------------

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
                on_peers=lambda peers: self.schedule_presence(),
            )
        )
        files = schema.files(self.session.doc)
        self.undo = UndoManager(scopes=[files], capture_timeout_millis=500)
        self.undo.include_origin(self.origin)
        self._doc_subscription = self.session.doc.observe(self._on_transaction)
        for buffer in self.buffers.values():
            self._start_binding(buffer)
        self.spawn(self._safety_net())
        self.send_status()

    async def _safety_net(self) -> None:
        """Detect and repair divergence between editor shadow, pending edits and the CRDT."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)  # a period, not a wait for something
            for buffer in list(self.buffers.values()):
                bridge = buffer.bridge
                if bridge is None or buffer.sending or bridge.in_flight or not buffer.dirty:
                    continue
                buffer.dirty = False
                if not bridge.check():
                    log.warning("repaired %s (repair #%d)", buffer.path, self.repairs)
                    self.schedule_pump()
                    self.send_status()

    @property
    def repairs(self) -> int:
        return sum(b.bridge.repairs for b in self.buffers.values() if b.bridge is not None)

    def describe(self) -> dict[str, Any]:
        if self.session is not None:
            payload = self.session.describe()
        else:
            payload = {"state": "offline", "reason": self.settings_error or "not started"}
        payload["repairs"] = self.repairs
        payload["shared"] = sorted(b.path for b in self.buffers.values() if b.bridge is not None)
        return payload

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

    def send_status(self) -> None:
        self.protocol.notify(STATUS, self.describe())

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
                )
                log.info("shared %s", buffer.path)
                if self._focus == buffer.uri and (self._cursor or ("",))[0] != buffer.path:
                    self._cursor = (buffer.path, 0, 0)  # where the user is now, until they type
                    self.schedule_presence()
                self.schedule_pump()
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
        uri = params.text_document.uri
        buffer = self.buffers.get(uri)
        if buffer is None:
            if self.path_of(uri) is not None:
                log.warning("didChange for %s, which is not open: ignored", uri)
            return
        self._focus = uri
        changes = to_changes(list(params.content_changes))
        awaited_echo = buffer.bridge is not None and buffer.bridge.in_flight
        try:
            buffer.change(params.text_document.version, changes)
        except CollabError as exc:
            log.error("rejected a change to %s: %s", buffer.path, exc)
            self.window_show_message(
                lsp.ShowMessageParams(lsp.MessageType.Warning, f"Huddle: {exc}; resyncing")
            )
            if buffer.bridge is not None:
                buffer.bridge.check()
        # The editor's echo of our own applyEdit is not the user moving: leave the cursor be.
        echo = awaited_echo and len(changes) == 1 and not buffer.bridge.in_flight  # type: ignore[union-attr]
        last = changes[-1] if changes else None
        if last is not None and last.range is not None and buffer.bridge is not None and not echo:
            self._cursor_from_edit(buffer, last.range.start, last.text)
        self.schedule_pump()

    def close(self, params: lsp.DidCloseTextDocumentParams) -> None:
        buffer = self.buffers.pop(params.text_document.uri, None)
        self.completions.close(params.text_document.uri)
        if buffer is not None:
            buffer.close()  # the shared document stays in the room
            task = self._binding.pop(buffer.uri, None)
            if task is not None:
                task.cancel()

    # -- CRDT -> editor ------------------------------------------------------------------

    def _on_transaction(self, event: TransactionEvent) -> None:
        for buffer in self.buffers.values():
            buffer.dirty = True
        self.schedule_pump()
        self.schedule_presence()

    def schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump_all)

    def _pump_all(self) -> None:
        self._pump_scheduled = False
        for buffer in list(self.buffers.values()):
            self._pump(buffer)

    def _pump(self, buffer: Buffer) -> None:
        edit = buffer.next_edit()
        if edit is None:
            return
        buffer.sending = True
        params = lsp.ApplyWorkspaceEditParams(
            label="Huddle",
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
        self.spawn(self._send_edit(buffer, edit.id, params))

    async def _send_edit(
        self, buffer: Buffer, edit_id: int, params: lsp.ApplyWorkspaceEditParams
    ) -> None:
        timeout = APPLY_EDIT_TIMEOUT
        if self.settings is not None and self.settings.apply_edit_timeout_s is not None:
            timeout = self.settings.apply_edit_timeout_s
        sent_at = buffer.version
        request = asyncio.ensure_future(self.workspace_apply_edit_async(params))
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
        self._pump(buffer)

    def _hold(self, buffer: Buffer) -> None:
        """After a rejected edit, send the buffer nothing until the editor's next didChange
        (its version moved on: the rejection's usual cause) or a backoff that doubles with each
        rejection in a row (an editor that rejects for another reason, with nothing to report)."""
        buffer.held = True
        backoff = RETRY_BACKOFF
        if self.settings is not None and self.settings.edit_retry_backoff_s is not None:
            backoff = self.settings.edit_retry_backoff_s
        delay = min(backoff * 2**buffer.rejections, max(backoff, RETRY_BACKOFF_MAX))
        buffer.rejections += 1

        def release() -> None:
            if buffer.held and self.buffers.get(buffer.uri) is buffer:
                buffer.held = False
                self._pump(buffer)

        asyncio.get_running_loop().call_later(delay, release)

    # -- presence ------------------------------------------------------------------------

    def _cursor_from_edit(self, buffer: Buffer, start: Position, inserted: str) -> None:
        assert buffer.bridge is not None
        try:
            offset = buffer.bridge.shadow_index.offset_at(start, self.encoding) + len(inserted)
        except CollabError:
            return
        self._cursor = (buffer.path, offset, offset)
        self.schedule_presence()

    def set_cursor(self, uri: str, anchor: Position, head: Position) -> None:
        buffer = self.buffers.get(uri)
        if buffer is None or buffer.bridge is None:
            return
        index = buffer.bridge.shadow_index
        try:
            self._cursor = (
                buffer.path,
                index.offset_at(anchor, self.encoding),
                index.offset_at(head, self.encoding),
            )
        except CollabError as exc:
            log.warning("ignored an invalid cursor: %s", exc)
            return
        self.schedule_presence()

    def schedule_presence(self) -> None:
        if not self._presence_scheduled:
            self._presence_scheduled = True
            asyncio.get_running_loop().call_later(PRESENCE_INTERVAL, self._presence)

    def _presence(self) -> None:
        self._presence_scheduled = False
        session = self.session
        if session is None or session.client is None:
            return
        if self._cursor != self._published_cursor:
            self._published_cursor = self._cursor
            state: dict[str, Any] = {"user": {"name": session.user, "color": session.color}}
            if self._cursor is not None:
                path, anchor, head = self._cursor
                text = schema.files(session.doc).get(path)
                buffer = next((b for b in self.buffers.values() if b.path == path), None)
                if isinstance(text, Text) and buffer is not None and buffer.bridge is not None:
                    bridge = buffer.bridge
                    shared = bridge.shared_index
                    state["file"] = path
                    state["cursor"] = {
                        "anchor": sticky_position(text, shared, bridge.to_shared(anchor)),
                        "head": sticky_position(text, shared, bridge.to_shared(head)),
                    }
            if state != session.client.local_state:
                session.client.set_presence(state)
        peers = {"peers": self._peers()}
        if peers != self._published_peers:
            self._published_peers = peers
            self.protocol.notify(PEERS, peers)
        self._follow()

    def _peers(self) -> list[dict[str, Any]]:
        session = self.session
        assert session is not None and session.client is not None
        by_path = {b.path: b for b in self.buffers.values() if b.bridge is not None}
        resolver = _CursorResolver(session.doc, self.encoding)
        peers = []
        for client_id, state in sorted(session.client.peers.items()):
            raw_user = state.get("user")
            user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
            path = room_path(state.get("file"))  # a teammate's claim: shown only if well-formed
            peer: dict[str, Any] = {
                "clientId": client_id,
                "name": str(user.get("name", "")),
                "color": str(user.get("color", "")),
                "file": path,
                "uri": self._uri_of(path),
            }
            buffer = by_path.get(path or "")
            cursor = state.get("cursor")
            if buffer is not None and isinstance(cursor, dict):
                head, anchor = self._peer_cursor(client_id, buffer, cursor, resolver)
                if head is not None:
                    peer["position"] = head
                    peer["selection"] = {"start": anchor or head, "end": head}
            peers.append(peer)
        for gone in self._peer_cursors.keys() - session.client.peers.keys():
            del self._peer_cursors[gone]
        return peers

    def _peer_cursor(
        self, client_id: int, buffer: Buffer, cursor: dict[str, Any], resolver: _CursorResolver
    ) -> CursorPair:
        """A teammate's head and anchor in this editor's coordinates; worked out again only
        when the cursor, the shared text or the editor's text changed since the last tick."""
        assert buffer.bridge is not None
        shadow, shared = buffer.bridge.shadow_index, buffer.bridge.shared_index
        key = (buffer.path, cursor, shadow.revision, shared.revision)
        cached = self._peer_cursors.get(client_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        found = (
            resolver.resolve(buffer, cursor.get("head")),
            resolver.resolve(buffer, cursor.get("anchor")),
        )
        self._peer_cursors[client_id] = (key, found)
        return found

    def _uri_of(self, path: object) -> str | None:
        """The local URI of ``path`` from a teammate's presence, or None unless it names a file
        of the room (a ``Text`` in ``files``) that this workspace shares: a room path in its
        plain form, inside the workspace root with symlinks resolved, not ignored. Everything
        an editor opens on a teammate's word (follow, the peers' ``uri``) comes from here."""
        path = room_path(path)
        if path is None or self.root is None or self.rules is None or self.session is None:
            return None
        if not isinstance(schema.files(self.session.doc).get(path), Text):
            return None  # not (yet) in the room: asked again when the document changes
        key = (self.root, path)
        if key not in self._uris:  # asked for every teammate at every presence tick
            shared = self.rules.relative(self.root / path) == path
            self._uris[key] = from_fs_path(str(self.root / path)) if shared else None
        return self._uris[key]

    def _follow(self) -> None:
        """Show the editor the file the followed teammate is in, found by name: the hub
        publishes each state under its token's user, so the name cannot be borrowed."""
        if self.following is None or self.session is None or self.session.client is None:
            return
        for state in self.session.client.peers.values():
            user = state.get("user")
            if isinstance(user, dict) and user.get("name") == self.following:
                path = state.get("file")
                uri = self._uri_of(path)
                if uri is not None and path != self._followed_file:
                    self._followed_file = path
                    self.spawn(
                        self.window_show_document_async(
                            lsp.ShowDocumentParams(uri=uri, take_focus=True)
                        )
                    )
                return


def _position(value: Any) -> Position:
    """A ``{line, character}`` of a ``huddle/changes`` notification (TypeError if it is not)."""
    line, character = value.line, value.character
    if type(line) is not int or type(character) is not int or line < 0 or character < 0:
        raise TypeError("position")
    return Position(line, character)


def build_server(solo_data_dir: Path | None = None) -> HuddleServer:
    server = HuddleServer(solo_data_dir)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: HuddleServer, params: lsp.InitializeParams) -> None:
        root_uri = params.root_uri or (
            params.workspace_folders[0].uri if params.workspace_folders else None
        )
        fs_root = to_fs_path(root_uri) if root_uri else None
        ls.root = Path(fs_root) if fs_root else None
        ls.rules = ShareRules(ls.root) if ls.root else None
        ls.encoding = PositionEncoding(ls.workspace.position_encoding or PositionEncoding.UTF16)
        ls.final_newline = params.client_info is not None and params.client_info.name == "Neovim"
        ls.line_diffs = ls.final_newline  # Neovim, both
        ls.late_applies = params.client_info is not None and params.client_info.name != "Neovim"
        try:
            ls.settings = resolve(params.initialization_options, ls.root)
        except SettingsError as exc:
            ls.settings_error = str(exc)
            log.error("%s", exc)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: HuddleServer, params: lsp.InitializedParams) -> None:
        if ls.settings_error:
            ls.window_show_message(
                lsp.ShowMessageParams(lsp.MessageType.Error, f"Huddle: {ls.settings_error}")
            )
        await ls.start_session()

    @server.feature(lsp.SHUTDOWN)
    async def shutdown(ls: HuddleServer, params: None) -> None:
        await ls.stop_session()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: HuddleServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.open(params)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: HuddleServer, params: lsp.DidChangeTextDocumentParams) -> None:
        ls.change(params)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: HuddleServer, params: lsp.DidCloseTextDocumentParams) -> None:
        ls.close(params)

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: HuddleServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList | None:
        text = await _complete(ls, params.text_document.uri, params.position)
        if text is None:
            return None
        here = lsp.Range(params.position, params.position)
        return lsp.InlineCompletionList(
            items=[lsp.InlineCompletionItem(insert_text=text, range=here)]
        )

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions())
    async def completion(ls: HuddleServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        """The AI completion as one item, for editors without inline completion."""
        caps = ls.client_capabilities.text_document
        if caps is not None and caps.inline_completion is not None:
            return lsp.CompletionList(is_incomplete=False, items=[])
        text = await _complete(ls, params.text_document.uri, params.position)
        if not text:
            return lsp.CompletionList(is_incomplete=True, items=[])
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
        )
        return lsp.CompletionList(is_incomplete=True, items=[item])

    @server.feature(CURSOR)
    def cursor(ls: HuddleServer, params: Any) -> None:
        try:
            uri = str(params.uri)
            head = Position(int(params.position.line), int(params.position.character))
            anchor = head
            selection = getattr(params, "selection", None)
            if selection is not None:
                anchor = Position(int(selection.start.line), int(selection.start.character))
        except (AttributeError, TypeError, ValueError):
            log.warning("ignored a malformed %s notification", CURSOR)
            return
        ls.set_cursor(uri, anchor, head)

    @server.feature(CHANGES)
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
                log.warning("ignored a malformed %s notification (%s)", CHANGES, exc)
            return
        buffer = ls.buffers.get(uri)
        if buffer is not None:
            buffer.add_exact(tick, changes)

    @server.command("huddle.status")
    def status(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        return ls.describe()

    @server.command("huddle.invite")
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
        return result.model_dump(mode="json")

    async def summary(ls: HuddleServer, kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
        try:
            return await summaries.summarize(ls, kind, args)
        except summaries.SummaryFailed as exc:
            raise RequestFailed(str(exc)) from None

    @server.command("huddle.summarizeFile")
    async def summarize_file(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        return await summary(ls, "file", args)

    @server.command("huddle.summarizeSelection")
    async def summarize_selection(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        return await summary(ls, "selection", args)

    @server.command("huddle.catchUp")
    async def catch_up(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        return await summary(ls, "catch_up", args)

    @server.command("huddle.summarizeSession")
    async def summarize_session(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        return await summary(ls, "session", args)

    @server.command("huddle.undoMine")
    def undo_mine(ls: HuddleServer, *args: Any) -> dict[str, bool]:
        if ls.undo is None:
            return {"undone": False}
        return {"undone": bool(ls.undo.undo())}

    @server.command("huddle.follow")
    def follow(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        name = args[0] if args and isinstance(args[0], str) else None
        if not name:
            raise ValueError("huddle.follow needs a teammate's name")
        ls.following, ls._followed_file = name, None
        ls.schedule_presence()
        return {"following": name}

    @server.command("huddle.unfollow")
    def unfollow(ls: HuddleServer, *args: Any) -> dict[str, Any]:
        ls.following = None
        return {"following": None}

    return server


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed: the request was valid but could not be served."""

    CODE = int(lsp.LSPErrorCodes.RequestFailed)
    MESSAGE = "request failed"


async def _complete(ls: HuddleServer, uri: str, position: lsp.Position) -> str | None:
    try:
        return await ls.completions.inline(uri, position)
    except CompletionFailed as exc:
        raise RequestFailed(str(exc)) from None


def main(solo_data_dir: Path | None = None) -> None:
    stdio.serve(build_server(solo_data_dir))


class _CursorResolver:
    """Yjs relative positions to LSP positions in this editor's coordinates, for one presence
    tick: what every cursor needs (the document's state vector, a file's UTF-16 form) is
    worked out once, not per cursor (20 teammates move the cursors 40 times a second)."""

    def __init__(self, doc: Doc[Any], encoding: PositionEncoding) -> None:
        self.doc = doc
        self.encoding = encoding
        self._sticky = StickyResolver(doc)
        self._units: dict[str, Utf16Offsets] = {}

    def resolve(self, buffer: Buffer, relative: object) -> dict[str, int] | None:
        assert buffer.bridge is not None
        text = schema.files(self.doc).get(buffer.path)
        if not isinstance(text, Text):
            return None
        units = self._sticky.units(text, relative)
        if units is None:
            return None
        shadow = buffer.bridge.shadow_index
        offsets = self._units.get(buffer.path)
        if offsets is None:  # nothing changes the shadow during a tick
            offsets = self._units[buffer.path] = Utf16Offsets(shadow)
        try:
            pos = shadow.position_at(offsets.offset_of(units), self.encoding)
        except CollabError:
            return None
        return {"line": pos.line, "character": pos.character}
