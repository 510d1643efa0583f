"""`huddle lsp` given several hub addresses (a cluster's nodes): it connects to a live one, and
when its node dies it moves to another, taking along what was typed meanwhile, once.

Two separate hubs stand in for a cluster's nodes: they share a signing key (a cluster shares
its key material) but not their rooms, so a test puts the teammate on the node the editor
moves to and checks that the editor's whole text arrives there exactly once."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.errors import SettingsError
from huddle.lsp.hub_client import HubClient, Status
from huddle.lsp.settings import resolve
from huddle.protocol import (
    CompleteParams,
    CompleteResult,
    CreateFileParams,
    CreateFileResult,
    HubMethod,
    RpcError,
)
from huddle.server.auth import KEY_FILE
from huddle.server.hub import Hub
from tests.emacs.daemon import Emacs, elisp
from tests.nvim_plugin.editor import ROOT
from tests.nvim_plugin.editor import Editor as NvimEditor
from tests.support.lsp_editor import Editor
from tests.support.peers import HubProcess, NodeClient, eventually, free_port, token
from tests.support.replay import Endless, FakeBackend, streaming

ROOM = "team/failover"
FILE = "main.py"


# -- the setting ---------------------------------------------------------------------------


def test_hub_setting_is_one_address_or_a_list(tmp_path: Path) -> None:
    one = resolve({"hub": "ws://a:1"}, tmp_path, {})
    assert (one.hub, one.hubs) == ("ws://a:1", ("ws://a:1",))  # one string: as it always was
    several = resolve({"hub": ["ws://a:1", " wss://b:2 "]}, tmp_path, {})
    assert several.hubs == ("ws://a:1", "wss://b:2") and not several.solo
    env = {"HUDDLE_HUB_URL": "ws://a:1, ws://b:2,"}
    assert resolve(None, tmp_path, env).hubs == ("ws://a:1", "ws://b:2")
    assert resolve(None, tmp_path, {"HUDDLE_HUB_URL": "ws://a:1"}).hub == "ws://a:1"
    (tmp_path / "huddle.toml").write_text('[huddle]\nhub = ["ws://t:1", "ws://t:2"]\n')
    assert resolve(None, tmp_path, {}).hubs == ("ws://t:1", "ws://t:2")
    # First match wins for the setting as a whole: a list is never merged with another source.
    assert resolve({"hub": "ws://i:1"}, tmp_path, env).hubs == ("ws://i:1",)
    assert resolve(None, tmp_path, env).hubs == ("ws://a:1", "ws://b:2")
    assert resolve(None, None, {}).hubs == ()


@pytest.mark.parametrize(
    ("hub", "why"),
    [
        (["ws://a:1", "http://b:2"], "'http://b:2' is not one ws://"),
        ("ws://a:1,ws://b:2", "several: a list"),  # commas are for the environment only
        ([], "empty list"),
        ([1], "hub"),
    ],
)
def test_a_malformed_hub_list_names_the_field(tmp_path: Path, hub: object, why: str) -> None:
    with pytest.raises(SettingsError, match=f"hub.*{why}"):
        resolve({"hub": hub}, tmp_path, {})


# -- the language server against real hubs -------------------------------------------------


def cluster_dirs(tmp_path: Path, count: int) -> list[Path]:
    """Data directories of hubs that accept the same tokens: one signing key, copied."""
    dirs = [tmp_path / f"node{i}" for i in range(count)]
    token(dirs[0], ROOM, "ann")  # creates the key
    for other in dirs[1:]:
        other.mkdir(parents=True)
        shutil.copy2(dirs[0] / KEY_FILE, other / KEY_FILE)
    return dirs


def options(hubs: list[str], data_dir: Path) -> dict[str, Any]:
    return {"hub": hubs, "room": ROOM, "user": "ann", "token": token(data_dir, ROOM, "ann")}


def status_hub(editor: Editor) -> str | None:
    notes = editor.notifications.get("huddle/status", [])
    return notes[-1].hub if notes else None


async def ann_text_at(peer: NodeClient, text: str) -> bool:
    return (await peer.files()).get(FILE) == text


@asynccontextmanager
async def workspace(tmp_path: Path, hubs: list[str], data_dir: Path) -> AsyncIterator[Editor]:
    root = tmp_path / "ws"
    root.mkdir()
    async with Editor(root, init_options=options(hubs, data_dir)) as editor:
        yield editor


async def test_lsp_skips_a_dead_address(tmp_path: Path) -> None:
    [data] = cluster_dirs(tmp_path, 1)
    dead = f"ws://127.0.0.1:{free_port()}"  # nobody listens there
    async with (
        HubProcess(data) as live,
        workspace(tmp_path, [dead, live.url], data) as ann,
        NodeClient(live.url, ROOM, token(data, ROOM, "bob")) as bob,
    ):
        await ann.wait_status("connected")
        assert status_hub(ann) == live.url, "the status names the node it is connected to"
        ann.open(FILE, "print('hi')\n")
        await eventually(
            lambda: ann_text_at(bob, "print('hi')\n"), what="the live node has ann's file"
        )


@pytest.mark.timeout(120)
async def test_killed_node_editor_moves_on_and_typing_arrives_once(tmp_path: Path) -> None:
    """Both nodes live; node A is SIGKILLed while the editor types: the editor reconnects to
    B, and everything it typed, before, during and after the move, is there exactly once."""
    a_dir, b_dir = cluster_dirs(tmp_path, 2)
    async with (
        HubProcess(a_dir) as a,
        HubProcess(b_dir) as b,
        workspace(tmp_path, [a.url, b.url], a_dir) as ann,
        NodeClient(b.url, ROOM, token(b_dir, ROOM, "bob")) as bob,
    ):
        await ann.wait_status("connected")
        assert status_hub(ann) == a.url
        ann.open(FILE, "start\n")
        typed: list[str] = []

        async def type_tokens(count: int) -> None:
            for _ in range(count):
                word = f"<k{len(typed)}>"
                typed.append(word)
                ann.type(FILE, len(ann.text(FILE)), word)
                await asyncio.sleep(0.01)  # a typist's pace, not a wait for anything

        await type_tokens(20)
        killing = asyncio.create_task(a.kill())
        await type_tokens(20)  # while A dies and the editor moves
        await killing
        await type_tokens(20)
        await ann.wait_status("connected")
        await eventually(lambda: status_hub(ann) == b.url, what="the status names node B")
        await ann.flush()
        expected = "start\n" + "".join(typed)
        assert ann.text(FILE) == expected
        await eventually(lambda: ann_text_at(bob, expected), timeout=30, what="B has it all")
        text = (await bob.files())[FILE]
        assert all(text.count(word) == 1 for word in typed), text


@pytest.mark.timeout(120)
async def test_typing_while_every_node_is_down_reaches_the_next_live_one(tmp_path: Path) -> None:
    """A dies while B is not up yet: the editor is offline for sure while it types. Once B
    starts, the editor finds it and B gets the editor's whole text, once."""
    a_dir, b_dir = cluster_dirs(tmp_path, 2)
    b_port = free_port()
    b_url = f"ws://127.0.0.1:{b_port}"
    async with HubProcess(a_dir) as a, workspace(tmp_path, [a.url, b_url], a_dir) as ann:
        await ann.wait_status("connected")
        ann.open(FILE, "online\n")
        await ann.flush()
        await a.kill()
        await ann.wait_status("reconnecting")
        ann.type(FILE, len(ann.text(FILE)), "typed offline\n")
        await ann.flush()
        async with (
            HubProcess(b_dir, b_port) as b,
            NodeClient(b.url, ROOM, token(b_dir, ROOM, "bob")) as bob,
        ):
            await ann.wait_status("connected")
            assert status_hub(ann) == b.url
            expected = "online\ntyped offline\n"
            await eventually(lambda: ann_text_at(bob, expected), timeout=30, what="B has it all")
            assert ann.text(FILE) == expected


# -- the hub client: backoff per round, and requests in flight ------------------------------


async def test_a_dead_address_costs_no_backoff_wait(tmp_path: Path) -> None:
    """A wait follows a whole round of failed addresses, never one dead node while the next
    is live: with a backoff of at least 15 s, connecting after a dead address takes none."""
    [data] = cluster_dirs(tmp_path, 1)
    dead = f"ws://127.0.0.1:{free_port()}"
    async with (
        HubProcess(data) as live,
        HubClient(
            [dead, live.url], ROOM, token(data, ROOM, "ann"), min_backoff=30, max_backoff=60
        ) as client,
    ):
        await asyncio.wait_for(client.wait_status(Status.CONNECTED), 10)
        assert client.hub_url == live.url


@pytest.mark.timeout(120)
async def test_a_request_in_flight_fails_when_its_node_dies(tmp_path: Path) -> None:
    """A completion asked of node A, which dies mid-generation, ends in an error (not a hang);
    the client moves to B, and the next completion is answered there."""
    a_dir, b_dir = cluster_dirs(tmp_path, 2)
    endless = Endless()
    async with FakeBackend(endless) as slow, FakeBackend(streaming("x = 1")) as fast:
        llm = ["--llm-model", "m", "--llm-url"]
        async with (
            HubProcess(a_dir, None, *llm, slow.url) as a,
            HubProcess(b_dir, None, *llm, fast.url) as b,
            HubClient([a.url, b.url], ROOM, token(a_dir, ROOM, "ann")) as client,
        ):
            await asyncio.wait_for(client.synced.wait(), 15)
            assert client.hub_url == a.url
            with client.doc.transaction():
                files(client.doc)[FILE] = Text("x = \n")
            await client.flush()
            params = CompleteParams(path=FILE, cursor=None, offset=4)
            asked: asyncio.Task[CompleteResult] | None = None

            def in_flight() -> bool:
                nonlocal asked
                if asked is None or asked.done():  # A may not have applied the file yet
                    if asked is not None:
                        failure = asked.exception()
                        assert isinstance(failure, RpcError) and failure.code == "not_found"
                    asked = asyncio.create_task(
                        client.call(HubMethod.COMPLETE, params, CompleteResult)
                    )
                return slow.requests != []

            await eventually(in_flight, what="A asks its model")
            assert asked is not None
            await a.kill()
            with pytest.raises(RpcError) as failed:
                await asyncio.wait_for(asked, 10)
            assert failed.value.code == "disconnected"
            await asyncio.wait_for(client.wait_status(Status.CONNECTED), 15)
            assert client.hub_url == b.url

            async def answered() -> bool:
                try:
                    result = await client.call(HubMethod.COMPLETE, params, CompleteResult)
                except RpcError as exc:  # B may not have applied the resync yet
                    assert exc.code == "not_found", exc
                    return False
                return result.text == "x = 1"

            await eventually(answered, what="B answers the next completion")


@pytest.mark.timeout(120)
async def test_a_retry_loop_waits_for_the_next_node_rather_than_spinning(tmp_path: Path) -> None:
    """The editor binds a file by retrying ``create_file`` once synced again. A request that
    finds the connection closed before the client's own loop has seen it (A dies while the
    request waits to be written: A stopped reading) must not leave ``synced`` set: the retry
    would spin without ever yielding, and the language server would hang for good."""
    a_dir, b_dir = cluster_dirs(tmp_path, 2)
    async with (
        HubProcess(a_dir) as a,
        HubProcess(b_dir) as b,
        HubClient([a.url, b.url], ROOM, token(a_dir, ROOM, "ann")) as client,
    ):
        await asyncio.wait_for(client.synced.wait(), 15)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # A stops reading: what is sent piles up
        filler = "x" * (7 * 1024 * 1024)  # 8 of these: more than loopback buffers hold
        piled = [
            asyncio.create_task(client.request("create_file", {"path": f"{i}", "content": filler}))
            for i in range(8)
        ]
        attempts = 0

        async def bind(path: str) -> CreateFileResult:
            nonlocal attempts
            while True:  # as huddle lsp binds a buffer (server.py, _bind)
                await client.synced.wait()
                attempts += 1
                if attempts > 50:
                    raise AssertionError("retried without ever waiting: a loop that spins")
                try:
                    return await client.call(
                        HubMethod.CREATE_FILE,
                        CreateFileParams(path=path, content="b"),
                        CreateFileResult,
                    )
                except RpcError as exc:
                    if exc.code not in ("offline", "disconnected"):
                        raise

        binding = asyncio.create_task(bind(FILE))
        await eventually(lambda: attempts == 1, what="the request queued behind the pile")
        await a.kill()
        for task in piled:
            with pytest.raises(RpcError):
                await asyncio.wait_for(task, 15)
        await asyncio.wait_for(binding, 30)
        assert client.hub_url == b.url
        assert attempts == 2, "one try on A, one on B"


# -- the editor plugins pass the list through ------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("version", ["0.10", "0.12"])
async def test_neovim_plugin_passes_a_hub_list_through(
    hub: Hub, data_dir: Path, tmp_path: Path, version: str
) -> None:
    if not (ROOT / ".cache" / "neovim" / version / "nvim").exists():
        pytest.fail(f"Neovim {version} is not installed: run scripts/neovim.sh install")
    editor = NvimEditor("amy", version, tmp_path)
    validate = "return require('huddle.config').validate({ hub = ... })"
    try:
        await editor.start()
        assert not await editor.lua(validate, ["ws://a:1", "ws://b:2"])  # no problems
        [why] = await editor.lua(validate, ["ws://a:1", "http://b:2"])
        assert why.startswith("`hub` must be a ws:// or wss:// URL, or a list of them"), why
        dead = f"ws://127.0.0.1:{free_port()}"
        await editor.setup(
            hub=[dead, hub.url],
            room=ROOM,
            token=token(data_dir, ROOM, "amy"),
            user="amy",
            cmd=editor.lsp_cmd(),
        )
        editor.write(FILE, "print('amy')\n")
        await editor.nvim.command(f"edit {FILE}")
        await editor.wait_connected(ROOM)
        connected_to = "for _, s in pairs(require('huddle.session').status) do return s.hub end"
        assert await editor.lua(connected_to) == hub.url

        def in_room() -> bool:
            room = hub.room(ROOM)
            return room is not None and file_texts(room.doc).get(FILE) == "print('amy')\n"

        await editor.wait("amy's file on the live hub", in_room)
    finally:
        await editor.stop()


@pytest.mark.timeout(90)
async def test_emacs_passes_a_hub_list_through(hub: Hub, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    dead = f"ws://127.0.0.1:{free_port()}"
    settings = {
        "huddle-hub": [dead, hub.url],
        "huddle-room": ROOM,
        "huddle-user": "eve",
        "huddle-token": token(data_dir, ROOM, "eve"),
    }
    path = root / FILE
    path.write_text("print('eve')\n")
    async with Emacs(tmp_path / "emacs", settings=settings) as emacs:
        answer = await emacs.json(f"(huddle-test-open {elisp(str(path))})", timeout=30)
        assert answer["managed"] is True, "eglot did not start huddle lsp for the buffer"

        def in_room() -> bool:
            room = hub.room(ROOM)
            return room is not None and file_texts(room.doc).get(FILE) == "print('eve')\n"

        await eventually(in_room, what="eve's file on the live hub")
        status = (
            f"(with-current-buffer (get-file-buffer {elisp(str(path))})"
            " (json-encode (huddle--status (eglot-current-server))))"
        )

        async def names_the_live_hub() -> bool:
            return bool((await emacs.json(status)).get("hub") == hub.url)

        await eventually(names_the_live_hub, what="huddle/status names the live hub")


async def test_flush_waits_for_a_write_under_way_and_ends_when_its_hub_dies(
    tmp_path: Path,
) -> None:
    """``HubClient.flush`` (the editor's shutdown, the clients' barrier) returned as soon as the
    outbox was empty, though the update taken from it was still being written (a large file to
    a slow hub); and had it waited for that write, a hub that died under it would have held it
    for good. A stopped hub cannot read a 60 MB file: the write stays under way until the hub is
    killed, and then the flush ends."""
    data = tmp_path / "hub"
    async with HubProcess(data) as hub, HubClient(hub.url, ROOM, token(data, ROOM, "ann")) as ann:
        await asyncio.wait_for(ann.synced.wait(), 20)
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGSTOP)
        try:
            files(ann.doc)["big.txt"] = Text("x" * 60_000_000)
            flushing = asyncio.create_task(ann.flush())
            await eventually(lambda: not ann._outbox, what="the write under way")
            for _ in range(3):
                await asyncio.sleep(0)  # a turn for the flush task (a yield, not a wait for time)
            assert not flushing.done(), "flush returned while the file was still being written"
        finally:
            await hub.kill(signal.SIGKILL)  # a stopped hub takes no SIGTERM: never leave it so
        await asyncio.wait_for(flushing, 20)  # a bound: it ends when the connection does
        assert ann.status is not Status.CONNECTED
