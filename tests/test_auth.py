"""Nobody joins without a valid token; read-only means read-only; tokens never reach logs."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import jwt
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect

from huddle.collab import wire
from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient, Status
from huddle.protocol import RpcError, room_url
from huddle.server.auth import KEY_FILE
from huddle.server.hub import Hub
from huddle.server.store import Database
from tests.support.peers import HubProcess, NodeClient, close_of, eventually, token

ROOM = "acme/app"


def _forged(data_dir: Path) -> str:
    good = token(data_dir, ROOM, "mallory")
    claims = jwt.decode(good, options={"verify_signature": False})
    return jwt.encode(claims, b"not the hub's key, but long enough", algorithm="HS256")


def _update(content: str) -> bytes:
    doc = Doc()
    files(doc)["evil.txt"] = Text(content)
    return doc.get_update()


@pytest.mark.parametrize(
    ("make_token", "code", "reason"),
    [
        (lambda d: None, 4401, "missing token"),
        (lambda d: "not-a-jwt", 4401, "token is malformed"),
        (_forged, 4401, "token signature is invalid"),
        (lambda d: token(d, ROOM, "old", ttl=-10), 4401, "token expired"),
        (lambda d: token(d, "acme/other", "eve"), 4403, "token is for another room"),
    ],
    ids=["missing", "malformed", "bad-signature", "expired", "wrong-room"],
)
async def test_bad_tokens_are_refused_and_nothing_applied(
    hub: Hub, data_dir: Path, make_token: object, code: int, reason: str
) -> None:
    tok = make_token(data_dir)  # type: ignore[operator]
    url = f"{hub.url}/{ROOM}" + (f"?token={tok}" if tok else "")
    # The client speaks first, as a y-websocket client does; none of it may be applied.
    assert await close_of(url, wire.encode(wire.SyncUpdate(_update("owned")))) == (code, reason)
    assert hub.room(ROOM) is None or file_texts(hub.room(ROOM).doc) == {}  # type: ignore[union-attr]
    journal = await hub.store.call(lambda db: db.journal(ROOM))
    assert journal == []


async def test_node_client_is_told_why_and_stops_retrying(hub: Hub, data_dir: Path) -> None:
    async with NodeClient(hub.url, ROOM, token(data_dir, ROOM, "late", ttl=-1)) as node:
        closed = await node.wait_event("closed")
    assert (closed["code"], closed["reason"]) == (4401, "token expired")


async def test_python_client_reports_rejection(hub: Hub, data_dir: Path) -> None:
    async with HubClient(hub.url, ROOM, "garbage") as client:
        assert await asyncio.wait_for(client.wait_status(Status.REJECTED), 10) is Status.REJECTED
        assert client.status_reason == "token is malformed"


async def test_read_only_client_receives_but_cannot_write(hub: Hub, data_dir: Path) -> None:
    async with (
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ed")) as editor,
        NodeClient(hub.url, ROOM, token(data_dir, ROOM, "ro-node", role="read")) as reader,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ro-py", role="read")) as py_reader,
    ):
        await reader.wait_event("synced")
        await asyncio.wait_for(py_reader.synced.wait(), 10)
        files(editor.doc)["a.txt"] = Text("shared")
        await eventually(lambda: file_texts(py_reader.doc) == {"a.txt": "shared"}, what="reader")

        # Both read-only clients try to write; the hub drops it and tells the Python one why.
        await reader.request("insert", file="a.txt", index=0, text="NODE WAS HERE ")
        await reader.request("insert", file="b.txt", index=0, text="new file")
        ro_text = files(py_reader.doc)["a.txt"]
        assert isinstance(ro_text, Text)
        ro_text.insert(0, "PY WAS HERE ")
        await eventually(lambda: py_reader.read_only, what="read-only notice")

        # The editor keeps writing and the readers keep receiving.
        text = files(editor.doc)["a.txt"]
        assert isinstance(text, Text)
        text.insert(len(text), " and more")

        async def reader_caught_up() -> bool:
            return "and more" in (await reader.files()).get("a.txt", "")

        await eventually(reader_caught_up, what="read-only node receives later edits")
        room = hub.room(ROOM)
        assert room is not None
        await eventually(lambda: "and more" in file_texts(room.doc)["a.txt"], what="hub copy")
        assert file_texts(room.doc) == {"a.txt": "shared and more"}
        assert file_texts(editor.doc) == {"a.txt": "shared and more"}
        assert hub.metrics.dropped_updates._value.get() >= 3
        journal = await hub.store.call(lambda db: db.journal(ROOM))
        assert {entry.user for entry in journal} == {"ed"}


async def test_a_readers_sync_reply_on_reconnect_is_not_taken_for_a_write(
    hub: Hub, data_dir: Path
) -> None:
    """A Yjs diff always carries the sender's whole delete set: a reader answering the hub's
    sync step 1 after a reconnect sends a non-empty update that changes nothing. The hub must
    not count it as a dropped write nor tell the reader it is read-only; a real write still is
    dropped and noticed."""
    reader_doc: Doc = Doc()
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ed")) as editor:
        await asyncio.wait_for(editor.synced.wait(), 10)
        files(editor.doc)["a.txt"] = Text("hello brave new world")
        text = files(editor.doc)["a.txt"]
        assert isinstance(text, Text)
        del text[6:12]  # deletions: the delete set every diff will carry
        room = hub.room(ROOM)
        assert room is not None
        await eventually(
            lambda: file_texts(room.doc) == {"a.txt": "hello new world"}, what="the hub has it"
        )
        url = room_url(hub.url, ROOM, token(data_dir, ROOM, "ro", role="read"))
        for _ in range(2):  # join, then reconnect with everything already here
            async with connect(url) as ws:
                step1 = wire.decode(await _recv(ws))
                assert isinstance(step1, wire.SyncStep1)
                reply = reader_doc.get_update(step1.state_vector)
                dropped = hub.metrics.dropped_updates._value.get()
                await ws.send(wire.encode(wire.SyncStep2(reply)))
                # The hub handles a connection's messages in order: whatever it sent for the
                # sync reply comes before its answer to this.
                await ws.send(wire.encode(wire.SyncStep1(reader_doc.get_state())))
                seen: list[wire.Message] = []
                while not isinstance(message := wire.decode(await _recv(ws)), wire.SyncStep2):
                    seen.append(message)
                reader_doc.apply_update(message.update)
                assert not any(isinstance(m, wire.AuthDenied) for m in seen), seen
                assert hub.metrics.dropped_updates._value.get() == dropped
        assert reply != wire.EMPTY_UPDATE  # the reconnect's reply did carry the delete set
        assert file_texts(reader_doc) == {"a.txt": "hello new world"}

        # A real write from the reader: dropped, and the reader is told once.
        async with connect(url) as ws:
            assert isinstance(wire.decode(await _recv(ws)), wire.SyncStep1)
            ro_text = files(reader_doc)["a.txt"]
            assert isinstance(ro_text, Text)
            before = reader_doc.get_state()
            ro_text.insert(0, "RO WAS HERE ")
            await ws.send(wire.encode(wire.SyncUpdate(reader_doc.get_update(before))))
            while not isinstance(message := wire.decode(await _recv(ws)), wire.AuthDenied):
                pass
            assert "read-only" in message.reason
            assert hub.metrics.dropped_updates._value.get() == dropped + 1
        assert file_texts(editor.doc) == {"a.txt": "hello new world"}


async def _recv(ws: ClientConnection) -> bytes:
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, bytes)
    return frame


async def test_signing_key_is_private(hub: Hub, data_dir: Path) -> None:
    mode = stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode)
    assert mode == 0o600


async def test_tokens_never_reach_the_logs(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    good = token(data_dir, ROOM, "ann")
    expired = token(data_dir, ROOM, "ann", ttl=-5)
    async with HubProcess(data_dir, None, "--log-level", "debug", "--log-format", "json") as proc:
        async with HubClient(proc.url, ROOM, good) as client:
            await asyncio.wait_for(client.synced.wait(), 10)
            files(client.doc)["x"] = Text("y")
            await client.flush()
        async with HubClient(proc.url, ROOM, expired) as client:
            await asyncio.wait_for(client.wait_status(Status.REJECTED), 10)
        async with connect(
            f"{proc.url}/{ROOM}", additional_headers={"Authorization": f"Bearer {good}"}
        ) as ws:
            await ws.recv()
    log = proc.log()
    assert "joined acme/app" in log and "token expired" in log  # the log did record the events
    for secret in (good, expired, good.split(".")[2], expired.split(".")[2]):
        assert secret not in log
    assert Database.in_dir(data_dir).journal(ROOM)[0].user == "ann"


async def test_editors_can_invite_and_readers_cannot(hub: Hub, data_dir: Path) -> None:
    async with (
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ed")) as editor,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ro", role="read")) as reader,
    ):
        await asyncio.wait_for(editor.synced.wait(), 10)
        await asyncio.wait_for(reader.synced.wait(), 10)
        invite = await editor.request(
            "invite", {"role": "read", "user": "guest", "ttl_seconds": 60}
        )
        assert invite["url"].startswith(f"{hub.url}/{ROOM}?token=")
        grant = hub.signer.verify(invite["token"], ROOM)
        # The guest's name is qualified by the minter's: the invite names who let them in.
        assert (grant.user, grant.role.value, grant.invited_by) == ("ed/guest", "read", "ed")
        with pytest.raises(RpcError) as denied:
            await reader.request("invite", {"role": "edit"})
        assert denied.value.code == "forbidden"
        with pytest.raises(RpcError) as unknown:
            await editor.request("no-such-method")
        assert unknown.value.code == "unknown_method"
        # The invited guest can really join, read-only.
        async with HubClient(hub.url, ROOM, invite["token"]) as guest:
            await asyncio.wait_for(guest.synced.wait(), 10)
            assert guest.status is Status.CONNECTED
