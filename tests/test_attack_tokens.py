"""Attacks on tokens against a real hub (issue 12, items 7, 8, 9 and 13): invites that would
escalate, tokens that outlive their expiry or their key, names that forge log lines, room paths
that read as a host."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from huddle.collab import wire
from huddle.collab.schema import files
from huddle.lsp.hub_client import HubClient
from huddle.protocol import RpcError, room_url
from huddle.server.auth import KEY_FILE
from huddle.server.hub import Hub
from tests.support.peers import close_of, eventually, token

ROOM = "acme/app"
DAY = 86400.0


async def _closed(ws: ClientConnection, within: float = 20.0) -> tuple[int, str]:
    """Read until the hub closes the connection; its close code and reason."""
    try:
        async with asyncio.timeout(within):  # a bound on a wait for an event, not a guess
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the hub closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason


async def _huddle(*args: str) -> tuple[int, str, str]:
    """The real command line, in a subprocess (the hub keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "huddle.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _update(doc: Doc[Any], path: str, content: str) -> bytes:
    before = doc.get_state()
    files(doc)[path] = Text(content)
    return doc.get_update(before)


async def _invite(client: HubClient, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await client.request("invite", params)
    return result


# -- item 7: invites may not escalate ------------------------------------------------------


async def test_an_invite_cannot_take_another_members_name(hub: Hub, data_dir: Path) -> None:
    """eve (an editor) invites "ann": the guest's edits are journalled under eve's invite,
    never under ann's name, and eve cannot spell a chain of invites that is not hers."""
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "eve")) as eve:
        await asyncio.wait_for(eve.synced.wait(), 10)
        invite = await _invite(eve, user="ann", role="edit", ttl_seconds=600)
        assert (invite["user"], invite["invited_by"]) == ("eve/ann", "eve")
        grant = hub.signer.verify(invite["token"], ROOM)
        assert (grant.user, grant.invited_by) == ("eve/ann", "eve")
        for forged in ("ann/x", "/ann", "eve/ann"):
            with pytest.raises(RpcError) as refused:
                await _invite(eve, user=forged)
            assert refused.value.code == "invalid_params"
        async with HubClient(hub.url, ROOM, invite["token"]) as guest:
            await asyncio.wait_for(guest.synced.wait(), 10)
            files(guest.doc)["guest.txt"] = Text("written by the guest")

            async def journalled() -> bool:
                return len(await hub.store.call(lambda db: db.journal(ROOM))) > 0

            await eventually(journalled, what="the guest's edit in the journal")
    journal = await hub.store.call(lambda db: db.journal(ROOM))
    assert {entry.user for entry in journal} == {"eve/ann"}


async def test_an_invite_cannot_outlive_or_outrank_its_minter(hub: Hub, data_dir: Path) -> None:
    minter = token(data_dir, ROOM, "ed", ttl=120)
    minter_expiry = hub.signer.verify(minter, ROOM).expires_at
    async with (
        HubClient(hub.url, ROOM, minter) as editor,
        HubClient(hub.url, ROOM, token(data_dir, ROOM, "ro", role="read", ttl=DAY)) as reader,
    ):
        await asyncio.wait_for(editor.synced.wait(), 10)
        await asyncio.wait_for(reader.synced.wait(), 10)
        invite = await _invite(editor, role="edit", ttl_seconds=30 * DAY)
        grant = hub.signer.verify(invite["token"], ROOM)
        assert grant.expires_at <= minter_expiry
        assert datetime.fromisoformat(invite["expires_at"]) == grant.expires_at
        # A token of the guest's own can invite again, still no further than the first minter.
        async with HubClient(hub.url, ROOM, invite["token"]) as guest:
            await asyncio.wait_for(guest.synced.wait(), 10)
            second = hub.signer.verify(
                (await _invite(guest, user="x", ttl_seconds=30 * DAY))["token"], ROOM
            )
            assert (second.user, second.invited_by) == ("ed/guest/x", "ed/guest")
            assert second.expires_at <= minter_expiry
        for role in ("edit", "read"):
            with pytest.raises(RpcError) as refused:
                await _invite(reader, role=role)
            assert refused.value.code == "forbidden"
        with pytest.raises(RpcError) as bad_role:
            await _invite(editor, role="admin")
        assert bad_role.value.code == "invalid_params"


@pytest.mark.parametrize(
    "ttl",
    ["inf", "Infinity", "nan", 1e300, 30 * DAY + 1, 0, -5, "soon"],
    ids=["inf", "Infinity", "nan", "1e300", "past-cap", "zero", "negative", "text"],
)
async def test_an_absurd_ttl_is_invalid_params_not_an_internal_error(
    hub: Hub, data_dir: Path, ttl: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ed")) as editor:
        await asyncio.wait_for(editor.synced.wait(), 10)
        with pytest.raises(RpcError) as refused:
            await _invite(editor, ttl_seconds=ttl)
        assert refused.value.code == "invalid_params", refused.value.message
        assert "ttl_seconds" in refused.value.message
        # The connection is still fine.
        assert (await _invite(editor, ttl_seconds=60))["role"] == "edit"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_connection_is_closed_when_its_token_expires(hub: Hub, data_dir: Path) -> None:
    """An editor whose token runs out mid-session keeps sending edits and asks for invites:
    the hub closes it (4401) at expiry, and nothing it sent after expiry is stored."""
    short = token(data_dir, ROOM, "brief", ttl=3)  # ``exp`` is whole seconds: 2 to 3 s left
    expires = hub.signer.verify(short, ROOM).expires_at.timestamp()
    doc: Doc[Any] = Doc()
    async with (
        connect(room_url(hub.url, ROOM, short)) as ws,
        connect(room_url(hub.url, ROOM, short)) as idle,  # sends nothing at all
    ):
        for joined in (ws, idle):
            assert isinstance(wire.decode(await joined.recv()), wire.SyncStep1)  # type: ignore[arg-type]

        async def keep_editing() -> None:
            for n in itertools.count():
                await ws.send(wire.encode(wire.SyncUpdate(_update(doc, f"f{n}.txt", "x"))))
                await ws.send(
                    wire.encode(
                        wire.HuddleMessage(
                            b'{"kind":"request","id":%d,"method":"invite","params":{}}' % n
                        )
                    )
                )
                await asyncio.sleep(0.05)  # pacing the sender, below the rate limit

        sender = asyncio.create_task(keep_editing())
        try:
            closes = await asyncio.gather(_closed(ws), _closed(idle))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    assert list(closes) == [(4401, "token expired")] * 2
    assert time.time() >= expires
    journal = await hub.store.call(lambda db: db.journal(ROOM))
    assert journal, "the editor did edit while its token was valid"
    # Stamped when stored, a moment after the check at arrival: a bound for a loaded machine.
    assert max(entry.ts for entry in journal) <= expires + 1.0
    # The same token is refused from now on.
    assert await close_of(room_url(hub.url, ROOM, short)) == (4401, "token expired")


# -- item 8: revocation is real --------------------------------------------------------


async def test_keys_rotate_revokes_live_connections_and_old_tokens(
    hub: Hub, data_dir: Path
) -> None:
    old = token(data_dir, ROOM, "ann", ttl=DAY)
    async with connect(room_url(hub.url, ROOM, old)) as ws:
        assert isinstance(wire.decode(await ws.recv()), wire.SyncStep1)  # type: ignore[arg-type]
        code, out, err = await _huddle("keys", "rotate", "--data-dir", str(data_dir))
        assert code == 0, err
        assert "revoked" in out
        assert await _closed(ws) == (4401, "token revoked")
    assert await close_of(room_url(hub.url, ROOM, old)) == (4401, "token signature is invalid")
    fresh = token(data_dir, ROOM, "ann", ttl=DAY)  # signed with the new key
    async with HubClient(hub.url, ROOM, fresh) as client:
        await asyncio.wait_for(client.synced.wait(), 10)


async def test_deleting_the_key_revokes_as_the_readme_says(hub: Hub, data_dir: Path) -> None:
    old = token(data_dir, ROOM, "ann", ttl=DAY)
    async with connect(room_url(hub.url, ROOM, old)) as ws:
        assert isinstance(wire.decode(await ws.recv()), wire.SyncStep1)  # type: ignore[arg-type]
        (data_dir / KEY_FILE).unlink()
        assert await _closed(ws) == (4401, "token revoked")
    assert await close_of(room_url(hub.url, ROOM, old)) == (4401, "token signature is invalid")
    assert (data_dir / KEY_FILE).stat().st_size >= 32  # a new key, made by the running hub


# -- item 9: names cannot forge log lines ----------------------------------------------


FORGED_LINE = "ann\n2025-01-01 00:00:00 INFO huddle.hub: 'root'@127.0.0.1 joined acme/app as edit"


@pytest.mark.parametrize(
    "name",
    [FORGED_LINE, "ann\r", "a\x1b[2Jb", "ann\u202egpj.exe", "zero\u200bwidth", "tab\tbed"],
    ids=["newline", "cr", "escape", "bidi-override", "zero-width", "tab"],
)
async def test_names_with_control_characters_are_refused_at_minting(
    hub: Hub, data_dir: Path, name: str
) -> None:
    async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ed")) as editor:
        await asyncio.wait_for(editor.synced.wait(), 10)
        with pytest.raises(RpcError) as refused:
            await _invite(editor, user=name)
        assert refused.value.code == "invalid_params"
    code, _, err = await _huddle("invite", ROOM, "--user", name, "--data-dir", str(data_dir))
    assert code == 2
    assert "invalid user name" in err


async def test_a_token_holding_a_forged_name_is_refused_and_nothing_logs_a_line_break(
    hub: Hub, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A token signed with the hub's own key (as a hub before this check could have issued)
    whose name carries a line break: refused at verification, and no log line is forged."""
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "huddle", "room": ROOM, "sub": FORGED_LINE, "role": "edit"}
    claims |= {"iat": now, "exp": now + 600}
    key = (data_dir / KEY_FILE).read_bytes()
    forged = jwt.encode(claims, key, algorithm="HS256")
    doc: Doc[Any] = Doc()
    frame = wire.encode(wire.SyncUpdate(_update(doc, "x.txt", "x")))
    assert await close_of(room_url(hub.url, ROOM, forged), frame) == (
        4401,
        "token claims are malformed",
    )
    assert await hub.store.call(lambda db: db.journal(ROOM)) == []
    for record in caplog.records:
        assert "\n" not in record.getMessage(), record.getMessage()


# -- item 13: room paths ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["//evil.example/webapp", "/%2Fevil.example/webapp", "///webapp"])
async def test_a_path_that_reads_as_a_host_is_refused(hub: Hub, data_dir: Path, path: str) -> None:
    tok = token(data_dir, "webapp", "ann")
    assert (await close_of(f"{hub.url}{path}?token={tok}"))[0] == 4400
    assert hub.room("webapp") is None
    # The plain path still joins.
    async with HubClient(hub.url, "webapp", tok) as client:
        await asyncio.wait_for(client.synced.wait(), 10)
