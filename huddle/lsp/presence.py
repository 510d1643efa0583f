"""Who is where: the user's cursor published to the room (Yjs awareness), teammates' cursors sent
to the editor in its own coordinates (``huddle/peers``), and following a teammate.

Cursor and peer updates are coalesced into one tick every ``PRESENCE_INTERVAL``: 20 teammates
move their cursors 40 times a second. A tick redoes only what changed since the last one, per
teammate: a cursor is parsed when it moves, its offset read again when its text changed, its
position worked out again when the editor's text changed, its ``Peer`` built again when any of
those (or its name, file, URI) came out different; a teammate in a file this editor has not open
costs dict lookups. What a tick reads from the room (each path's ``Text``, so each URI) is kept
until the room's ``files`` map itself changes. ``huddle/peers`` is sent when a peer changed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Doc, Map, MapEvent, StickyIndex, Subscription, Text
from pygls.uris import from_fs_path

from huddle.collab import schema
from huddle.collab.errors import CollabError
from huddle.collab.positions import Position
from huddle.collab.sticky import StickyResolver, Utf16Offsets, sticky_position
from huddle.lsp.documents import Buffer
from huddle.lsp.room_paths import room_path
from huddle.lsp.workspace import Workspace
from huddle.protocol import EditorNotification, LspPosition, LspRange, Peer, PeersParams

log = logging.getLogger("huddle.lsp")

PRESENCE_INTERVAL = 0.05  # coalesce cursor and peer updates (seconds)
MAX_CACHED_PATHS = 1024  # paths teammates named, looked up in the room (then forgotten at once)


class Presence:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.following: str | None = None
        self._followed_file: str | None = None
        self._scheduled = False
        self._cursor: tuple[str, int, int] | None = None  # (path, anchor, head) in code points
        self._published_cursor: tuple[str, int, int] | None = ("", -1, -1)  # nothing yet
        self._published_peers: PeersParams | None = None
        self._published_list: list[Peer] | None = None  # what ``_published_peers`` holds
        self._peer_views: dict[int, _PeerView] = {}  # by client id
        self._room: _RoomView | None = None
        self._uris: dict[tuple[Path, str], str | None] = {}
        # Per open file: its shadow's revision and the UTF-16 offsets of that shadow.
        self._units: dict[str, tuple[int, Utf16Offsets]] = {}

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
        room = self._room_view(session.doc)
        room.tick()
        if self._cursor != self._published_cursor:
            self._published_cursor = self._cursor
            state = self._awareness(session.user, session.color, room)
            if state != session.client.local_state:
                session.client.set_presence(state)
        peers = self._peers(session.client.peers, room)
        if peers != self._published_list:  # the same Peer objects when nothing changed
            self._published_list = peers
            params = PeersParams(peers=peers)
            if params != self._published_peers:
                self._published_peers = params
                self.ws.notify(EditorNotification.PEERS, params)
        self._follow()

    def _room_view(self, doc: Doc[Any]) -> _RoomView:
        room = self._room
        if room is None or room.doc is not doc:  # a new session: nothing known carries over
            if room is not None:
                room.close()
            room = self._room = _RoomView(doc)
            self._peer_views.clear()
            self._units.clear()
        return room

    def _awareness(self, user: str, color: str, room: _RoomView) -> dict[str, Any]:
        """This editor's awareness state, as Yjs clients expect it: the user, the file, and the
        cursor as relative positions (they stay put while teammates type)."""
        state: dict[str, Any] = {"user": {"name": user, "color": color}}
        if self._cursor is None:
            return state
        path, anchor, head = self._cursor
        text = room.text(path)
        buffer = next((b for b in self.ws.buffers.values() if b.path == path), None)
        if text is not None and buffer is not None and buffer.bridge is not None:
            bridge = buffer.bridge
            shared = bridge.shared_index
            state["file"] = path
            state["cursor"] = {
                "anchor": sticky_position(text, shared, bridge.to_shared(anchor)),
                "head": sticky_position(text, shared, bridge.to_shared(head)),
            }
        return state

    def _peers(self, states: dict[int, dict[str, Any]], room: _RoomView) -> list[Peer]:
        """Every teammate as a ``Peer``, by client id; the one of the last tick for each whose
        state, cursor position and URI came out the same."""
        by_path = {b.path: b for b in self.ws.buffers.values() if b.bridge is not None}
        views = self._peer_views
        peers = []
        for client_id in sorted(states):
            state = states[client_id]
            view = views.get(client_id)
            if view is None or view.state is not state:
                view = views[client_id] = _PeerView.of(client_id, state, view)
            path = view.path
            buffer = by_path.get(path) if path is not None else None
            head = anchor = None
            if buffer is not None and view.cursor is not None:
                head, anchor = self._resolve(view, buffer, room)
            uri = self._uri(path, room) if path is not None else None
            peer = view.peer
            if peer is None or view.shown != (uri, head, anchor):
                view.shown = (uri, head, anchor)
                view.peer = peer = _peer(view, uri, head, anchor)
            peers.append(peer)
        if len(views) > len(states):
            for gone in views.keys() - states.keys():
                del views[gone]
        if len(self._units) > len(by_path):
            for closed in self._units.keys() - by_path.keys():
                del self._units[closed]
        return peers

    def _resolve(self, view: _PeerView, buffer: Buffer, room: _RoomView) -> _Pair:
        """A teammate's head and anchor as (line, character) in this editor's coordinates.
        The offsets are read again only when the shared text changed (or the room's files),
        the positions only when those offsets or the editor's text changed."""
        assert buffer.bridge is not None and view.cursor is not None
        text = room.text(buffer.path)
        if text is None:
            return None, None
        shared_key = (room.epoch, buffer.bridge.shared_index.revision, room.state())
        if not view.parsed:
            cursor = view.cursor
            head, anchor = cursor.get("head"), cursor.get("anchor")
            parse = room.sticky.parse
            view.head_sticky = parse(text, head)
            view.anchor_sticky = view.head_sticky if anchor == head else parse(text, anchor)
            # A position that did not parse is tried again at each tick while it may name an
            # item on its way; one that is not even a dict never will.
            view.parsed = all(
                sticky is not None or not isinstance(relative, dict)
                for sticky, relative in ((view.head_sticky, head), (view.anchor_sticky, anchor))
            )
            view.shared_key = None
        if view.shared_key != shared_key:
            view.shared_key = shared_key
            index = room.sticky.index
            head_units = None if view.head_sticky is None else index(view.head_sticky)
            if view.anchor_sticky is view.head_sticky:
                view.units = (head_units, head_units)
            else:
                anchor_sticky = view.anchor_sticky
                view.units = (head_units, None if anchor_sticky is None else index(anchor_sticky))
        shadow = buffer.bridge.shadow_index
        editor_key = (view.units, shadow.revision, self.ws.encoding)
        if view.editor_key != editor_key:
            view.editor_key = editor_key
            head_units, anchor_units = view.units
            head_at = self._position(buffer, head_units)
            same = anchor_units == head_units
            view.positions = (head_at, head_at if same else self._position(buffer, anchor_units))
        return view.positions

    def _position(self, buffer: Buffer, units: int | None) -> tuple[int, int] | None:
        """UTF-16 units of the shared text -> (line, character) of the editor's text."""
        if units is None:
            return None
        assert buffer.bridge is not None
        shadow = buffer.bridge.shadow_index
        cached = self._units.get(buffer.path)
        if cached is None or cached[0] != shadow.revision:
            cached = self._units[buffer.path] = (shadow.revision, Utf16Offsets(shadow))
        try:
            pos = shadow.position_at(cached[1].offset_of(units), self.ws.encoding)
        except CollabError:
            return None
        return pos.line, pos.character

    def uri_of(self, path: object) -> str | None:
        """The local URI of ``path`` from a teammate's presence, or None unless it names a file
        of the room (a ``Text`` in ``files``) that this workspace shares: a room path in its
        plain form, inside the workspace root with symlinks resolved, not ignored. Everything
        an editor opens on a teammate's word (follow, the peers' ``uri``) comes from here."""
        path = room_path(path)
        session = self.ws.session
        if path is None or session is None:
            return None
        return self._uri(path, self._room_view(session.doc))

    def _uri(self, path: str, room: _RoomView) -> str | None:
        """:meth:`uri_of` for a path ``room_path`` accepted."""
        ws = self.ws
        if ws.root is None or ws.rules is None:
            return None
        if room.text(path) is None:
            return None  # not (yet) in the room: asked again when the room's files change
        key = (ws.root, path)
        uri = self._uris.get(key, _UNKNOWN)
        if uri is _UNKNOWN:  # asked for every teammate at every presence tick
            shared = ws.rules.relative(ws.root / path) == path
            uri = self._uris[key] = from_fs_path(str(ws.root / path)) if shared else None
        return uri if isinstance(uri, str) else None

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


_UNKNOWN = object()
# A teammate's head and anchor as (line, character) in the editor's coordinates (None: not
# in the text).
_Pair = tuple[tuple[int, int] | None, tuple[int, int] | None]


def _peer(view: _PeerView, uri: str | None, head: Any, anchor: Any) -> Peer:
    where: dict[str, Any] = {}  # absent, not null, when not in a shared buffer
    if head is not None:
        position = LspPosition(line=head[0], character=head[1])
        start = (
            position
            if anchor is None or anchor == head
            else LspPosition(line=anchor[0], character=anchor[1])
        )
        where = {"position": position, "selection": LspRange(start=start, end=position)}
    return Peer(
        client_id=view.client_id,
        name=view.name,
        color=view.color,
        file=view.path,
        uri=uri,
        **where,
    )


@dataclass(slots=True, eq=False)
class _PeerView:
    """One teammate as the last ticks saw them: what their awareness state says, and each step
    from their cursor to the ``Peer`` sent, with the inputs it was worked out from."""

    client_id: int
    state: dict[str, Any]  # the awareness state these fields come from (a new dict per update)
    name: str
    color: str
    path: str | None  # their file, if well-formed (a teammate's claim)
    cursor: dict[str, Any] | None
    parsed: bool = False  # the cursor's positions parsed (or never will be)
    head_sticky: StickyIndex | None = None  # None: not a position, or not yet
    anchor_sticky: StickyIndex | None = None
    # What ``units`` were read at: (files epoch, shared text revision, state vector). Visible
    # changes to the text move a position; the state vector is there for the rest (an item
    # that arrived, a position pycrdt places by more than the text it claims).
    shared_key: tuple[int, int, bytes] | None = None
    units: tuple[int | None, int | None] = (None, None)  # UTF-16 offsets in the shared text
    editor_key: tuple[Any, ...] | None = None  # (units, editor text revision, encoding)
    positions: _Pair = (None, None)
    shown: tuple[Any, ...] | None = None  # (uri, head, anchor) of ``peer``
    peer: Peer | None = None

    @classmethod
    def of(cls, client_id: int, state: dict[str, Any], last: _PeerView | None) -> _PeerView:
        """The view of a new state; what was parsed from the last one is kept when the cursor
        is the same (awareness is sent again every few seconds unchanged)."""
        raw_user = state.get("user")
        user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
        cursor = state.get("cursor")
        view = cls(
            client_id=client_id,
            state=state,
            name=str(user.get("name", "")),
            color=str(user.get("color", "")),
            path=room_path(state.get("file")),
            cursor=cursor if isinstance(cursor, dict) else None,
        )
        if last is not None and last.path == view.path and last.cursor == view.cursor:
            view.parsed, view.head_sticky = last.parsed, last.head_sticky
            view.anchor_sticky = last.anchor_sticky
            view.shared_key, view.units = last.shared_key, last.units
            view.editor_key, view.positions = last.editor_key, last.positions
        if last is not None and (view.name, view.color, view.path) == (
            last.name,
            last.color,
            last.path,
        ):
            view.shown, view.peer = last.shown, last.peer
        return view


class _RoomView:
    """What presence reads from one room document, kept between ticks: the ``Text`` at each
    path (read from ``files`` again only after the map itself changed, which its observer
    tells; edits inside a text do not), and a long-lived resolver of teammates' positions."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.doc = doc
        self.files: Map[Text] = schema.files(doc)
        self.sticky = StickyResolver(doc)
        self.epoch = 0  # counts the changes of ``files``
        self._texts: dict[str, Text | None] = {}
        self._state: bytes | None = None
        self._subscription: Subscription | None = self.files.observe(self._files_changed)

    def _files_changed(self, event: MapEvent) -> None:
        self._texts.clear()
        self.epoch += 1

    def tick(self) -> None:
        self._state = None

    def state(self) -> bytes:
        """The document's state vector, read once per tick."""
        if self._state is None:
            self._state = self.doc.get_state()
        return self._state

    def text(self, path: str) -> Text | None:
        """The ``Text`` at ``path`` in the room, or None (absent, or not text)."""
        texts = self._texts
        text = texts.get(path, _UNKNOWN)
        if text is _UNKNOWN:
            if len(texts) >= MAX_CACHED_PATHS:
                texts.clear()
            value = self.files.get(path)
            text = texts[path] = value if isinstance(value, Text) else None
        return text if isinstance(text, Text) else None

    def close(self) -> None:
        if self._subscription is not None:
            self.files.unobserve(self._subscription)
            self._subscription = None
