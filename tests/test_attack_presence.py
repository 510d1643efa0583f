"""Attacks through presence (awareness), as they were found against a running hub (issue 12,
items 2, 3 and 10): a reader's state that kills stock Yjs clients, awareness memory without a
byte limit, a reader publishing a teammate's name, and `follow` opening files outside the
workspace. Each test attacks a real hub (and real Node clients or a real `huddle lsp`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from huddle.collab import wire
from huddle.collab.schema import files
from huddle.lsp.hub_client import HubClient
from huddle.server.config import Limits
from huddle.server.hub import Hub
from tests.support.hubs import local_hub
from tests.support.lsp_editor import Editor
from tests.support.peers import NodeClient, eventually, token

ROOM = "attack/presence"


def _url(hub: Hub, data_dir: Path, user: str, role: str = "read") -> str:
    return f"{hub.url}/{ROOM}?token={token(data_dir, ROOM, user, role)}"


def _frame(*states: bytes, first_id: int = 1000) -> bytes:
    """An awareness message carrying ``states`` (raw JSON, written as an attacker likes)."""
    body = wire.write_varuint(len(states))
    for n, raw in enumerate(states):
        body += wire.write_varuint(first_id + n) + b"\x01" + wire.write_varbytes(raw)
    return wire.encode(wire.AwarenessMessage(body))


async def _node_peers(node: NodeClient) -> list[dict[str, Any]]:
    return list((await node.request("peers"))["peers"])


async def _barrier(ws: ClientConnection) -> list[bytes]:
    """Send sync step 1 and read up to the hub's step 2: the hub handles one connection's
    messages in order, so everything sent before has been handled. Returns the frames read."""
    await ws.send(wire.encode(wire.SyncStep1(b"\x00")))
    frames = []
    while True:
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        frames.append(frame)
        if isinstance(wire.decode(frame), wire.SyncStep2):
            return frames


async def _settled(ws: ClientConnection, frame: bytes) -> tuple[int, str] | None:
    """Send ``frame``, then wait until the hub has handled it: the (code, reason) it closed
    the connection with, or None if it went on (answered the sync step 1 sent behind it)."""
    await ws.send(frame)
    try:
        await _barrier(ws)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    return None


# -- item 2: only standard JSON is relayed ---------------------------------------------------


async def test_a_readers_nan_state_never_reaches_stock_clients(hub: Hub, data_dir: Path) -> None:
    """Found: the hub relayed `{"v":NaN}` to every Node client (JSON.parse threw, both died)
    and replayed it to every joiner. Now the sender alone is closed (4400), with the reason."""
    async with (
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "bob")) as bob,
    ):
        await ann.wait_event("synced")
        await bob.wait_event("synced")
        await ann.request("awareness", state={"user": {"name": "ann"}, "n": 1})

        async def bob_sees_ann(n: int) -> bool:
            return any(p.get("n") == n for p in await _node_peers(bob))

        await eventually(lambda: bob_sees_ann(1), what="bob sees ann")
        async with connect(_url(hub, data_dir, "mallory")) as mallory:
            closed = await _settled(mallory, _frame(b'{"user":{"name":"x"},"v":NaN}'))
        # bob reads the hub's frames in order: once ann's newer state reached bob, anything
        # relayed before it has been read (and, before the fix, had killed bob).
        await ann.request("awareness", state={"user": {"name": "ann"}, "n": 2})
        await eventually(lambda: bob_sees_ann(2), what="bob sees ann's next state")
        assert closed == (4400, "malformed message: awareness state holds NaN, which is not JSON")
        async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "cat")) as cat:
            await cat.wait_event("synced")
            await ann.request("insert", file="a.txt", index=0, text="still here")

            async def everyone_has_it() -> bool:
                texts = [(await node.files()).get("a.txt") for node in (ann, bob, cat)]
                return texts == ["still here"] * 3

            await eventually(everyone_has_it, what="an edit reaches bob and the joiner")
            names = {p["user"]["name"] for p in await _node_peers(cat)}
            assert "ann" in names and names <= {"ann", "bob"}  # bob's {} shows once renewed
        for node in (ann, bob):
            assert node.proc.returncode is None
            assert not [e for e in node.events if e["event"] in ("close", "closed")]


async def test_non_standard_json_closes_the_sender_only(hub: Hub, data_dir: Path) -> None:
    """Found: a lone surrogate and very deep nesting gave close 1011 with a traceback (the
    surrogate state was kept: every joiner then failed too). Now: 4400 with a clear reason."""
    attacks = {
        b'{"user":{"name":"x"},"s":"\\ud800"}': "a string holds a lone surrogate",
        b'{"v":Infinity}': "holds Infinity",
        b'{"v":-Infinity}': "holds -Infinity",
        b'{"v":1e999}': "out of a double's range",
        b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}": "nested 10001 deep (limit 32)",
    }
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann:
        ann.set_presence({"user": {"name": "ann"}})
        await ann.flush()
        for raw, error in attacks.items():
            async with connect(_url(hub, data_dir, "mallory")) as mallory:
                closed = await _settled(mallory, _frame(raw))
            assert closed is not None and closed[0] == 4400, (raw[:40], closed)
            assert error in closed[1]
        # Nothing of it was kept: a joiner gets the room and ann's presence, nothing else.
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "joiner")) as joiner:
            await eventually(lambda: joiner.synced.is_set(), what="joiner synced")
            await eventually(lambda: len(joiner.peers) == 1, what="joiner sees ann")
            assert [s["user"]["name"] for s in joiner.peers.values()] == ["ann"]
        room = hub.room(ROOM)
        assert room is not None
        assert room.presence.size_bytes == len(room.presence.encode_all() or b"") - 1


async def test_an_echo_is_dropped_unread_and_a_changed_one_is_still_checked(
    hub: Hub, data_dir: Path
) -> None:
    """Stock y-websocket clients send back every awareness change they receive, and the hub
    skips an entry it holds byte for byte (client, clock, JSON) without parsing it. Only that:
    the same client and clock with other bytes is read strictly, NaN closes the sender."""
    async with (
        connect(_url(hub, data_dir, "ann")) as ann,
        connect(_url(hub, data_dir, "mallory")) as mallory,
    ):
        await _barrier(ann)
        await _barrier(mallory)
        await ann.send(_frame(b'{"n":1}'))
        while not isinstance(relayed := wire.decode(await mallory.recv()), wire.AwarenessMessage):
            pass
        (entry,) = wire.decode_awareness(relayed.payload)
        assert (entry.client_id, entry.clock, entry.state) == (
            1000,
            1,
            {"n": 1, "user": {"name": "ann"}},
        )
        room = hub.room(ROOM)
        assert room is not None
        before = room.presence.encode_all()
        assert await _settled(mallory, wire.encode(relayed)) is None  # the echo: nothing changes
        assert room.presence.encode_all() == before
        closed = await _settled(mallory, _frame(b'{"n":NaN}'))  # client 1000, clock 1 again
        assert closed == (4400, "malformed message: awareness state holds NaN, which is not JSON")
        assert room.presence.encode_all() == before


# -- item 3: awareness has byte limits ---------------------------------------------------------

STATE_BYTES, CONNECTION_BYTES, ROOM_BYTES = 4096, 16 * 1024, 40 * 1024


def _limited(data_dir: Path) -> Hub:
    limits = Limits(
        max_awareness_state_bytes=STATE_BYTES,
        max_awareness_connection_bytes=CONNECTION_BYTES,
        max_awareness_room_bytes=ROOM_BYTES,
    )
    return local_hub(data_dir, limits=limits)


def _padded(size: int) -> bytes:
    """A state whose JSON is ``size`` bytes."""
    head = b'{"user":{"name":"r"},"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


async def test_an_oversized_state_closes_its_connection(data_dir: Path) -> None:
    """Found: one reader kept 64 states of 7.9 MiB. A state past the limit is refused (4413)
    before it is parsed, and nothing of it is kept."""
    async with _limited(data_dir) as hub:
        async with connect(_url(hub, data_dir, "r")) as ws:
            closed = await _settled(ws, _frame(_padded(STATE_BYTES + 1)))
        assert closed == (4413, f"awareness state of {STATE_BYTES + 1} bytes (limit 4096)")
        room = hub.room(ROOM)  # the hub may still be closing it
        await eventually(lambda: room is None or room.presence.size_bytes == 0, what="freed")


async def test_one_connection_cannot_hold_more_than_its_share(data_dir: Path) -> None:
    """Many states each under the limit: the connection's total is refused (4413), and the
    states it held are gone with it."""
    async with _limited(data_dir) as hub:
        many = [_padded(3000)] * 6  # 18 KB on one connection, 16 KiB allowed
        async with connect(_url(hub, data_dir, "r")) as ws:
            closed = await _settled(ws, _frame(*many))
        assert closed is not None and closed[0] == 4413, closed
        assert closed[1].endswith(f"bytes on one connection (limit {CONNECTION_BYTES})"), closed
        room = hub.room(ROOM)  # the hub may still be closing it
        await eventually(lambda: room is None or room.presence.size_bytes == 0, what="freed")


async def test_the_rooms_presence_and_a_joiners_frame_stay_under_the_room_limit(
    data_dir: Path,
) -> None:
    """Found: two connections held +1.1 GiB and a joiner was sent one 1008 MiB frame. Readers
    each within their own share fill the room: what passes the room's limit is dropped, the
    connections stay, and a joiner's awareness frame is at most the room's limit (+ framing)."""
    async with _limited(data_dir) as hub:
        readers = [await connect(_url(hub, data_dir, f"r{n}")) for n in range(5)]
        try:
            for n, ws in enumerate(readers):  # 5 x 15 KB: more than the room's 40 KiB
                await ws.send(_frame(*[_padded(3000)] * 5, first_id=100 * (n + 1)))
                await _barrier(ws)
            for ws in readers:  # still connected: the sender may not be the cause
                await _barrier(ws)
            async with connect(_url(hub, data_dir, "joiner"), max_size=None) as joiner:
                frames = await _barrier(joiner)
            (frame,) = [f for f in frames if isinstance(wire.decode(f), wire.AwarenessMessage)]
            message = wire.decode(frame)
            assert isinstance(message, wire.AwarenessMessage)
            entries = wire.decode_awareness(message.payload)
            # 1 type byte, a varuint length and a varuint count around the accounted bytes
            assert len(frame) <= ROOM_BYTES + 1 + 3 + 2
            assert len(frame) > ROOM_BYTES - 3100  # filled, not emptied
            assert 5 * 2 < len(entries) < 5 * 5
            room = hub.room(ROOM)
            assert room is not None and room.presence.size_bytes <= ROOM_BYTES
        finally:
            for ws in readers:
                await ws.close()
        await eventually(lambda: room.presence.size_bytes == 0, what="every state left")


# -- item 10: names come from tokens; follow opens files of the workspace only ----------------


async def test_a_reader_cannot_publish_someone_elses_name(hub: Hub, data_dir: Path) -> None:
    """Found: a reader published {"user":{"name":"ann"}} and was taken for ann. The hub
    publishes every state under its token's user (other user fields, such as color, kept)."""
    async with (
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "watcher")) as node,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "py")) as py,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as ann,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "rita", role="read")) as rita,
    ):
        await node.wait_event("synced")
        await rita.wait_event("synced")
        ann.set_presence({"user": {"name": "ann", "color": "#ff0000"}, "tag": "ann"})
        await rita.request(
            "awareness", state={"user": {"name": "ann", "color": "#123456"}, "tag": "rita"}
        )
        raw = await connect(_url(hub, data_dir, "raw"))
        try:  # no "user" at all, and a "user" that is not an object
            await raw.send(_frame(b'{"tag":"raw-1"}', b'{"user":"ann","tag":"raw-2"}'))
            await _barrier(raw)
            expected = {
                "ann": {"name": "ann", "color": "#ff0000"},
                "rita": {"name": "rita", "color": "#123456"},
                "raw-1": {"name": "raw"},
                "raw-2": {"name": "raw"},
            }

            def users(states: list[dict[str, Any]]) -> dict[str, Any]:
                return {str(s["tag"]): s.get("user") for s in states if "tag" in s}

            async def node_sees_four() -> bool:
                return len(users(await _node_peers(node))) == 4

            await eventually(node_sees_four, what="the node client sees all four states")
            await eventually(lambda: len(users(list(py.peers.values()))) == 4, what="py: four")
            assert users(await _node_peers(node)) == expected
            assert users(list(py.peers.values())) == expected
        finally:
            await raw.close()


async def test_follow_opens_only_files_of_the_shared_workspace(
    hub: Hub, data_dir: Path, tmp_path: Path
) -> None:
    """Found: following a teammate whose presence said `../../../../root/.bashrc` made
    huddle lsp ask the editor to open that local file (showDocument, takeFocus). A teammate's
    path opens only if it is a file of the room, in plain form, inside the workspace root
    (symlinks resolved); a reader cannot pose as the teammate being followed; and a real
    follow still opens the right file."""
    root, outside = tmp_path / "ws", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("not shared\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "local.txt").write_text("on ann's disk, never in the room\n")
    tricks = [
        "../../../../root/.bashrc",
        "/etc/passwd",
        "a.py/../../../etc/passwd",
        "./a.py",
        "..\\..\\etc\\passwd",
        "C:/Windows/win.ini",
        "link/secret",  # in the room, and in the workspace only through a symlink out of it
        ".env",  # in the room, but never shared by this workspace
        "local.txt",  # in the workspace, not in the room
    ]
    async with (
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "mallory")) as mallory,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "eve", role="read")) as eve,
        Editor(root, init_options=_lsp_options(hub, data_dir, "ann", claims="ann2")) as ann,
    ):
        await eventually(lambda: mallory.synced.is_set(), what="mallory synced")
        for path in ["a.py", "b.py", *tricks[:-1]]:  # a plain Yjs client may add any key
            files(mallory.doc)[path] = Text(f"# {path}\n")
        await mallory.flush()
        room = hub.room(ROOM)
        await eventually(lambda: room is not None and len(files(room.doc)) == 10, what="files")
        await ann.wait_status("connected")
        # huddle lsp shows its user the name teammates see: the token's, not the one configured.
        assert ann.notifications["huddle/status"][-1].user == "ann"
        await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="huddle.follow", arguments=["mallory"])
        )

        def ann_sees(color: str) -> dict[str, Any] | None:
            notes = ann.notifications.get("huddle/peers", [])
            for peer in notes[-1].peers if notes else []:
                if peer.color == color:
                    return {"name": peer.name, "file": peer.file, "uri": peer.uri}
            return None

        # A reader claims mallory's name, in a file of the room: it stays eve, is not followed.
        eve.set_presence({"user": {"name": "mallory", "color": "#eeeeee"}, "file": "b.py"})
        await eventually(lambda: ann_sees("#eeeeee") is not None, what="ann sees eve")
        assert ann_sees("#eeeeee") == {"name": "eve", "file": "b.py", "uri": ann.uri("b.py")}
        uris = {}
        for n, path in enumerate(tricks):
            color = f"#0000{n:02x}"
            mallory.set_presence({"user": {"name": "mallory", "color": color}, "file": path})
            await eventually(lambda c=color: ann_sees(c) is not None, what=f"ann sees {path}")
            uris[path] = ann_sees(color)["uri"]  # type: ignore[index]
        mallory.set_presence({"user": {"name": "mallory", "color": "#00ff00"}, "file": "a.py"})
        a_py = ann.uri("a.py")
        await eventually(
            lambda: any(d.uri == a_py for d in ann.client.shown_documents), what="ann shown a.py"
        )
        # Shown in order: had any earlier path been opened, it would be listed before a.py.
        assert [(d.uri, d.take_focus) for d in ann.client.shown_documents] == [(a_py, True)]
        # Nor does the peers list offer the editor a link to any of them.
        assert uris == dict.fromkeys(tricks)


def _lsp_options(hub: Hub, data_dir: Path, user: str, claims: str) -> dict[str, str]:
    return {"hub": hub.url, "room": ROOM, "user": claims, "token": token(data_dir, ROOM, user)}
