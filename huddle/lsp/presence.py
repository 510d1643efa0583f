"""Who is where: the user's cursor published to the room (Yjs awareness), teammates' cursors sent
to the editor in its own coordinates (``huddle/peers``), and following a teammate.

Cursor and peer updates are coalesced into one tick every ``PRESENCE_INTERVAL``: 20 teammates
move their cursors 40 times a second, and each tick resolves every cursor once at most (and not
at all when neither the cursor nor the texts it lives in changed).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Doc, Text
from pygls.uris import from_fs_path

from huddle.collab import schema
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position, PositionEncoding
from huddle.collab.sticky import StickyResolver, Utf16Offsets, sticky_position
from huddle.lsp.documents import Buffer
from huddle.lsp.room_paths import room_path
from huddle.lsp.workspace import Workspace
from huddle.protocol import EditorNotification, LspPosition, LspRange, Peer, PeersParams

log = logging.getLogger("huddle.lsp")

PRESENCE_INTERVAL = 0.05  # coalesce cursor and peer updates (seconds)
# A teammate's head and anchor in the editor's coordinates (None: not in the text).
CursorPair = tuple[LspPosition | None, LspPosition | None]


class Presence:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.following: str | None = None
        self._followed_file: str | None = None
        self._scheduled = False
        self._cursor: tuple[str, int, int] | None = None  # (path, anchor, head) in code points
        self._published_cursor: tuple[str, int, int] | None = ("", -1, -1)  # nothing yet
        self._published_peers: PeersParams | None = None
        # Teammates' cursors as last resolved, by client id: (what they depend on, head, anchor).
        self._peer_cursors: dict[int, tuple[tuple[Any, ...], CursorPair]] = {}
        self._uris: dict[tuple[Path, str], str | None] = {}

    # -- the user's cursor ---------------------------------------------------------------

    def bound(self, buffer: Buffer) -> None:
        """The buffer the user is in was just shared: they are at its start until they move."""
        if (self._cursor or ("",))[0] != buffer.path:
            self._cursor = (buffer.path, 0, 0)
            self.schedule()

    def from_edit(self, buffer: Buffer, start: Position, inserted: str) -> None:
        """The user typed: their cursor is after what they inserted."""
        assert buffer.bridge is not None
        try:
            offset = buffer.bridge.shadow_index.offset_at(start, self.ws.encoding) + len(inserted)
        except CollabError:
            return
        self._cursor = (buffer.path, offset, offset)
        self.schedule()

    def set_cursor(self, uri: str, anchor: Position, head: Position) -> None:
        buffer = self.ws.buffers.get(uri)
        if buffer is None or buffer.bridge is None:
            return
        index = buffer.bridge.shadow_index
        try:
            self._cursor = (
                buffer.path,
                index.offset_at(anchor, self.ws.encoding),
                index.offset_at(head, self.ws.encoding),
            )
        except CollabError as exc:
            log.warning("ignored an invalid cursor: %s", exc)
            return
        self.schedule()

    # -- following -----------------------------------------------------------------------

    def follow(self, name: str | None) -> None:
        """Follow the teammate called ``name`` (None: stop)."""
        self.following, self._followed_file = name, None
        if name is not None:
            self.schedule()

    # -- the tick --------------------------------------------------------------------------

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(PRESENCE_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._scheduled = False
        session = self.ws.session
        if session is None or session.client is None:
            return
        if self._cursor != self._published_cursor:
            self._published_cursor = self._cursor
            state = self._awareness(session.user, session.color, session.doc)
            if state != session.client.local_state:
                session.client.set_presence(state)
        peers = PeersParams(peers=self._peers())
        if peers != self._published_peers:
            self._published_peers = peers
            self.ws.notify(EditorNotification.PEERS, peers)
        self._follow()

    def _awareness(self, user: str, color: str, doc: Doc[Any]) -> dict[str, Any]:
        """This editor's awareness state, as Yjs clients expect it: the user, the file, and the
        cursor as relative positions (they stay put while teammates type)."""
        state: dict[str, Any] = {"user": {"name": user, "color": color}}
        if self._cursor is None:
            return state
        path, anchor, head = self._cursor
        text = schema.files(doc).get(path)
        buffer = next((b for b in self.ws.buffers.values() if b.path == path), None)
        if isinstance(text, Text) and buffer is not None and buffer.bridge is not None:
            bridge = buffer.bridge
            shared = bridge.shared_index
            state["file"] = path
            state["cursor"] = {
                "anchor": sticky_position(text, shared, bridge.to_shared(anchor)),
                "head": sticky_position(text, shared, bridge.to_shared(head)),
            }
        return state

    def _peers(self) -> list[Peer]:
        session = self.ws.session
        assert session is not None and session.client is not None
        by_path = {b.path: b for b in self.ws.buffers.values() if b.bridge is not None}
        resolver = _CursorResolver(session.doc, self.ws.encoding)
        peers = []
        for client_id, state in sorted(session.client.peers.items()):
            raw_user = state.get("user")
            user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
            path = room_path(state.get("file"))  # a teammate's claim: shown only if well-formed
            buffer = by_path.get(path or "")
            cursor = state.get("cursor")
            where: dict[str, Any] = {}  # absent, not null, when not in a shared buffer
            if buffer is not None and isinstance(cursor, dict):
                head, anchor = self._peer_cursor(client_id, buffer, cursor, resolver)
                if head is not None:
                    where = {
                        "position": head,
                        "selection": LspRange(start=anchor or head, end=head),
                    }
            peers.append(
                Peer(
                    client_id=client_id,
                    name=str(user.get("name", "")),
                    color=str(user.get("color", "")),
                    file=path,
                    uri=self.uri_of(path),
                    **where,
                )
            )
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

    def uri_of(self, path: object) -> str | None:
        """The local URI of ``path`` from a teammate's presence, or None unless it names a file
        of the room (a ``Text`` in ``files``) that this workspace shares: a room path in its
        plain form, inside the workspace root with symlinks resolved, not ignored. Everything
        an editor opens on a teammate's word (follow, the peers' ``uri``) comes from here."""
        ws = self.ws
        path = room_path(path)
        if path is None or ws.root is None or ws.rules is None or ws.session is None:
            return None
        if not isinstance(schema.files(ws.session.doc).get(path), Text):
            return None  # not (yet) in the room: asked again when the document changes
        key = (ws.root, path)
        if key not in self._uris:  # asked for every teammate at every presence tick
            shared = ws.rules.relative(ws.root / path) == path
            self._uris[key] = from_fs_path(str(ws.root / path)) if shared else None
        return self._uris[key]

    def _follow(self) -> None:
        """Show the editor the file the followed teammate is in, found by name: the hub
        publishes each state under its token's user, so the name cannot be borrowed."""
        session = self.ws.session
        if self.following is None or session is None or session.client is None:
            return
        for state in session.client.peers.values():
            user = state.get("user")
            if isinstance(user, dict) and user.get("name") == self.following:
                path = state.get("file")
                uri = self.uri_of(path)
                if uri is not None and path != self._followed_file:
                    self._followed_file = path
                    self.ws.spawn(
                        self.ws.window_show_document_async(
                            lsp.ShowDocumentParams(uri=uri, take_focus=True)
                        )
                    )
                return


class _CursorResolver:
    """Yjs relative positions to LSP positions in this editor's coordinates, for one presence
    tick: what every cursor needs (the document's state vector, a file's UTF-16 form) is
    worked out once, not per cursor."""

    def __init__(self, doc: Doc[Any], encoding: PositionEncoding) -> None:
        self.doc = doc
        self.encoding = encoding
        self._sticky = StickyResolver(doc)
        self._units: dict[str, Utf16Offsets] = {}

    def resolve(self, buffer: Buffer, relative: object) -> LspPosition | None:
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
        return LspPosition(line=pos.line, character=pos.character)
