"""A hub cluster on a real PostgreSQL: three real `huddle serve` nodes, stock Yjs clients.

Every test types unique tokens and checks that each appears exactly once in every client and in
the database: nothing any peer saw is lost, nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.errors import CloseCode
from huddle.server.store import Database
from tests.support.cluster import HubCluster, stored_texts
from tests.support.haproxy import HAProxy
from tests.support.peers import HubProcess, NodeClient, close_of, eventually, token
from tests.support.postgres import PostgresServer
from tests.support.replay import FakeBackend

ROOM = "team/cluster"
FILE = "notes.md"
TOKEN = re.compile(r"<[a-z0-9]+-\d+>")


@asynccontextmanager
async def clients(
    cluster: HubCluster, urls: Sequence[str], room: str = ROOM
) -> AsyncIterator[list[NodeClient]]:
    """One stock y-websocket client per url, synced, with ``FILE`` created once by the first."""
    async with AsyncExitStack() as stack:
        peers = [
            await stack.enter_async_context(NodeClient(url, room, cluster.token(room, f"u{i}")))
            for i, url in enumerate(urls)
        ]
        for peer in peers:
            await peer.wait_event("synced")
        await peers[0].request("append", file=FILE, text="")  # one creator: no map conflict

        async def everyone_has_the_file() -> bool:
            return all([FILE in await peer.files() for peer in peers])

        await eventually(everyone_has_the_file, what="the file on every node")
        yield peers


async def type_tokens(peer: NodeClient, name: str, count: int, *, start: int = 0) -> list[str]:
    typed = []
    for k in range(start, start + count):
        token = f"<{name}-{k}>"
        await peer.request("append", file=FILE, text=token)
        typed.append(token)
    return typed


async def converged(peers: Sequence[NodeClient], typed: Sequence[str], url: str) -> str:
    """Wait until every peer holds every typed token; then check each is there exactly once,
    everywhere, the database included. Returns the text."""

    async def all_there() -> bool:
        texts = [(await peer.files()).get(FILE, "") for peer in peers]
        return len(set(texts)) == 1 and all(t in texts[0] for t in typed)

    await eventually(all_there, timeout=30, what="every token on every peer")
    text = (await peers[0].files())[FILE]
    found = TOKEN.findall(text)
    assert sorted(found) == sorted(typed), "a token is lost or duplicated"
    assert "".join(found) == text
    assert stored_texts(url, ROOM) == {FILE: text}
    return text


async def test_editors_on_three_nodes_converge(pg_url: str, tmp_path: Path) -> None:
    async with HubCluster(pg_url, tmp_path, 3) as cluster:
        urls = [node.url for node in cluster.nodes] * 2
        async with clients(cluster, urls) as peers:
            typed = await asyncio.gather(
                *(type_tokens(peer, f"p{i}", 25) for i, peer in enumerate(peers))
            )
            await converged(peers, [t for mine in typed for t in mine], pg_url)
        async with httpx.AsyncClient() as http:
            for node in cluster.nodes:
                base = node.url.replace("ws://", "http://")
                assert (await http.get(f"{base}/healthz")).text == "ok\n"
                metrics = (await http.get(f"{base}/metrics")).text
                lag = re.search(r"^huddle_cross_node_lag_seconds_count (\S+)$", metrics, re.M)
                assert lag is not None and float(lag[1]) > 0  # it applied others' updates


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_node_killed_mid_typing_loses_nothing(
    pg_url: str, tmp_path: Path, seed: int
) -> None:
    """Clients reach the nodes through HAProxy; one node gets SIGKILL at a random moment while
    everyone types. Its clients reconnect to a live node and merge what they typed meanwhile."""
    rng = random.Random(seed)
    async with HubCluster(pg_url, tmp_path, 3) as cluster:
        backends = [("127.0.0.1", node.port) for node in cluster.nodes]
        with HAProxy(backends) as proxy:
            async with clients(cluster, [proxy.url] * 6) as peers:
                # Any node with clients (the balancer spreads them, not always on all three).
                serving = [n for n in cluster.nodes if " joined " in n.log()]
                victim = serving[rng.randrange(len(serving))]
                typists = [
                    asyncio.create_task(type_tokens(peer, f"k{i}", 40))
                    for i, peer in enumerate(peers)
                ]
                await asyncio.sleep(rng.uniform(0.05, 0.6))  # a random moment, by design
                await victim.kill()
                typed = [t for mine in await asyncio.gather(*typists) for t in mine]
                try:
                    await converged(peers, typed, pg_url)
                except AssertionError:
                    print(cluster.logs())
                    raise
                closes = [e for peer in peers for e in peer.events if e["event"] == "close"]
                assert closes, "nobody was on the killed node: the test proved nothing"


async def test_postgres_restart_keeps_connections_and_loses_nothing(tmp_path: Path) -> None:
    """While PostgreSQL restarts, nodes relay nothing (nothing is committed) but keep their
    connections; afterwards the updates typed meanwhile are committed and relayed."""
    with PostgresServer() as pg:
        url = pg.new_database("restart")
        async with (
            HubCluster(url, tmp_path, 2) as cluster,
            clients(cluster, [n.url for n in cluster.nodes] * 2) as peers,
        ):
            typed = await type_tokens(peers[0], "before", 3)
            pg.stop()
            async with httpx.AsyncClient() as http:  # a load balancer sends no one there now
                health = await http.get(
                    cluster.nodes[0].url.replace("ws://", "http://") + "/healthz"
                )
                assert health.status_code == 503, health.text
            during = await asyncio.gather(
                *(type_tokens(peer, f"d{i}", 5) for i, peer in enumerate(peers))
            )
            pg.start()
            typed += [t for mine in during for t in mine]
            typed += await type_tokens(peers[1], "after", 3)
            try:
                await converged(peers, typed, url)
            except AssertionError:
                print(cluster.logs())
                raise
            assert not [e for p in peers for e in p.events if e["event"] == "close"]
            assert "unreachable" in cluster.logs()  # the outage was seen, not slipped past


async def test_a_doorbell_missed_while_reconnecting_is_caught_up(
    pg_url: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Node 1 loses its listening connection and cannot reconnect while node 0 commits; once it
    is back, it reads the room's log from where it was."""
    async with (
        HubCluster(pg_url, tmp_path, 2) as cluster,
        clients(cluster, [n.url for n in cluster.nodes]) as (ann, bob),
    ):
        database = pg_url.rsplit("/", 1)[1]
        with (
            psycopg.connect(postgres.url, autocommit=True) as admin,
            psycopg.connect(pg_url, autocommit=True) as probe,  # opened while it still can
        ):
            admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            try:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name LIKE %s",
                    (database, "huddle-%-listen"),
                ).fetchall()
                assert len(killed) == 2
                typed = await type_tokens(ann, "missed", 5)

                def committed() -> bool:
                    rows = probe.execute("SELECT data FROM updates").fetchall()
                    stored = b"".join(bytes(r[0]) for r in rows).decode("latin-1")
                    return all(t in stored for t in typed)  # tokens are ASCII

                await eventually(committed, what="node 0's commits")
                assert typed[0] not in (await bob.files())[FILE]
            finally:
                admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        await converged([ann, bob], typed, pg_url)


async def test_presence_crosses_nodes_and_a_dead_nodes_cursors_go(
    pg_url: str, tmp_path: Path
) -> None:
    async with HubCluster(pg_url, tmp_path, 3) as cluster:
        urls = [node.url for node in cluster.nodes]
        async with clients(cluster, urls) as (ann, bob, cy):
            await ann.request("cursor", file=FILE, index=0, user={"name": "forged"})

            async def names(peer: NodeClient) -> set[str]:
                states = (await peer.request("peers"))["peers"]
                return {s["user"]["name"] for s in states if s and "user" in s}

            async def cy_sees_ann() -> bool:
                return "u0" in await names(cy)  # the token's name, never the claimed one

            await eventually(cy_sees_ann, what="ann's cursor on another node")
            await cluster.nodes[0].kill()

            async def ann_gone() -> bool:
                return "u0" not in await names(cy) and "u0" not in await names(bob)

            await eventually(ann_gone, timeout=10, what="a dead node's cursors gone")


async def test_every_node_enforces_tokens_and_read_only(pg_url: str, tmp_path: Path) -> None:
    async with HubCluster(pg_url, tmp_path, 3) as cluster:
        editor_url = cluster.nodes[0].url
        async with HubClient(editor_url, ROOM, cluster.token(ROOM, "ed")) as editor:
            await asyncio.wait_for(editor.synced.wait(), 10)
            files(editor.doc)[FILE] = Text("shared")
            for i, node in enumerate(cluster.nodes):
                reader_token = cluster.token(ROOM, f"ro{i}", role="read")
                async with HubClient(node.url, ROOM, reader_token) as reader:
                    await eventually(lambda r=reader: file_texts(r.doc) == {FILE: "shared"})
                    text = files(reader.doc)[FILE]
                    assert isinstance(text, Text)
                    text.insert(0, "READER WAS HERE ")
                    await eventually(lambda r=reader: r.read_only, what="read-only notice")
                other_room = cluster.token("team/other", "ed")
                code, _ = await close_of(f"{node.url}/{ROOM}?token={other_room}")
                assert code == CloseCode.FORBIDDEN  # a token names its room, on every node
                code, _ = await close_of(f"{node.url}/{ROOM}?token=forged")
                assert code == CloseCode.UNAUTHORIZED
            text = files(editor.doc)[FILE]
            assert isinstance(text, Text)
            text.insert(len(text), " and more")
            await eventually(lambda: stored_texts(pg_url, ROOM) == {FILE: "shared and more"})
        assert file_texts(editor.doc) == {FILE: "shared and more"}
    with psycopg.connect(pg_url) as db:  # nothing refused left a row anywhere
        assert db.execute("SELECT name FROM rooms").fetchall() == [(ROOM,)]
        users = db.execute('SELECT DISTINCT "user" FROM updates').fetchall()
        assert users == [("ed",)]


async def test_two_nodes_creating_one_file_at_once_create_it_once(
    pg_url: str, tmp_path: Path
) -> None:
    """The hub is where "create this file unless it exists" is decided without races; in a
    cluster two nodes decide it under one advisory lock, after reading what the other did."""
    async with HubCluster(pg_url, tmp_path, 2) as cluster:
        a_url, b_url = (node.url for node in cluster.nodes)
        async with (
            HubClient(a_url, ROOM, cluster.token(ROOM, "ann")) as ann,
            HubClient(b_url, ROOM, cluster.token(ROOM, "bob")) as bob,
        ):
            for client in (ann, bob):
                await asyncio.wait_for(client.synced.wait(), 10)
            for round_ in range(5):
                path = f"new{round_}.py"
                results = await asyncio.gather(
                    ann.request("create_file", {"path": path, "content": "by ann"}),
                    bob.request("create_file", {"path": path, "content": "by bob"}),
                )
                created = [r["created"] for r in results]
                assert sorted(created) == [False, True], created
                winner = "by ann" if created[0] else "by bob"
                await eventually(lambda p=path, w=winner: file_texts(bob.doc).get(p) == w)
                await eventually(lambda p=path, w=winner: file_texts(ann.doc).get(p) == w)
                assert stored_texts(pg_url, ROOM)[path] == winner


async def test_ai_slots_hold_across_nodes_and_die_with_their_node(pg_url: str) -> None:
    """The AI gateway's fair-share limits are advisory locks: a slot one node holds is not
    free on another, and a node's death frees its slots at once."""
    from huddle.server.cluster import ClusterLocks, lock_key

    node_a, node_b = ClusterLocks(pg_url, "a"), ClusterLocks(pg_url, "b")
    try:
        async with node_a.slot(7, "completion", "ann", total=2, per_user=1):
            # ann's one slot is taken on node a: not free on node b, nor again on node a ...
            for node in (node_a, node_b):
                assert not await node.try_lock(7, lock_key("completion/ann/0"))
            # ... but bob can run, which takes the room's second and last slot.
            async with node_b.slot(7, "completion", "bob", total=2, per_user=1):
                for node in (node_a, node_b):
                    for i in range(2):
                        assert not await node.try_lock(7, lock_key(f"completion/room/{i}"))
            await node_a.aclose()  # node a dies holding ann's slots
            waiting = asyncio.create_task(
                _enter(node_b.slot(7, "completion", "ann", total=2, per_user=1))
            )
            await asyncio.wait_for(waiting, 10)
    finally:
        await node_a.aclose()
        await node_b.aclose()


async def _enter(slot: AbstractAsyncContextManager[None]) -> None:
    async with slot:
        pass


async def test_a_rooms_move_from_sqlite_into_the_cluster_with_its_tokens(
    pg_url: str, tmp_path: Path
) -> None:
    """`huddle copy-rooms --with-key`: the room (journal and all) and the hub's signing key go
    into PostgreSQL, so the join links already given work on every node; `huddle rooms` and
    `huddle invite` work against the cluster's URL."""
    data_dir = tmp_path / "single"
    old_token = token(data_dir, ROOM, "ann")
    async with HubProcess(data_dir) as single, NodeClient(single.url, ROOM, old_token) as ann:
        await ann.wait_event("synced")
        await ann.request("append", file=FILE, text="typed on one machine")
        await eventually(lambda: _stored_journal(data_dir) > 0, what="the commit")
    copied = _huddle("copy-rooms", "--data-dir", str(data_dir), "--store", pg_url, "--with-key")
    assert f"{ROOM}: copied" in copied
    assert "already has" in _huddle(
        "copy-rooms", "--data-dir", str(data_dir), "--store", pg_url, check=False
    )
    assert ROOM in _huddle("rooms", "--store", pg_url)
    async with HubCluster(pg_url, tmp_path, 2) as cluster:
        invite = _huddle(
            "invite", ROOM, "--user", "bob", "--store", pg_url, "--url", cluster.nodes[1].url
        )
        new_token = re.search(r"token: (\S+)", invite)
        assert new_token is not None
        async with (
            NodeClient(cluster.nodes[0].url, ROOM, old_token) as ann,
            NodeClient(cluster.nodes[1].url, ROOM, new_token[1]) as bob,
        ):
            for peer in (ann, bob):
                await peer.wait_event("synced")
                assert (await peer.files()) == {FILE: "typed on one machine"}
    assert stored_texts(pg_url, ROOM) == {FILE: "typed on one machine"}


def _stored_journal(data_dir: Path) -> int:
    db = Database.in_dir(data_dir)
    try:
        return len(db.journal(ROOM))
    finally:
        db.close()


def _huddle(*args: str, check: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "huddle.cli", *args], capture_output=True, text=True, timeout=60
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_a_catch_up_on_one_node_reads_what_was_typed_on_another(
    pg_url: str, tmp_path: Path, backend: FakeBackend
) -> None:
    """Summaries read the shared journal: a session summary asked on node 1 covers ann's edits
    made on node 0, with her name, as the model's prompt shows."""
    model = ("--llm-url", backend.url, "--llm-model", "m")
    async with HubCluster(pg_url, tmp_path, 2, *model) as cluster:
        since = time.time()
        async with (
            HubClient(cluster.nodes[0].url, ROOM, cluster.token(ROOM, "ann")) as ann,
            HubClient(cluster.nodes[1].url, ROOM, cluster.token(ROOM, "bob")) as bob,
        ):
            await asyncio.wait_for(ann.synced.wait(), 10)
            files(ann.doc)["pricing.py"] = Text("def total(price, count):\n")
            await eventually(lambda: "pricing.py" in file_texts(bob.doc), what="ann's file")
            result = await bob.request(
                "summarize", {"kind": "session", "since": since, "until": time.time() + 1}
            )
        assert [f["path"] for f in result["files"]] == ["pricing.py"]
        assert result["files"][0]["authors"] == ["ann"]
        prompt = backend.requests[-1].json()["prompt"]
        assert "def total(price, count)" in prompt and "ann" in prompt


async def test_a_long_database_outage_closes_writers_with_4504_and_they_come_back(
    tmp_path: Path,
) -> None:
    """Past ``outage_seconds`` a node stops holding its writers' updates: it closes them with
    4504 (transient: y-websocket reconnects with backoff), relaying nothing uncommitted; once
    PostgreSQL is back they reconnect and what they typed lands, once."""
    with PostgresServer() as pg:
        url = pg.new_database("outage")
        outage = {"HUDDLE_HUB__STORE__OUTAGE_SECONDS": "1"}
        async with (
            HubCluster(url, tmp_path, 2, env=outage) as cluster,
            clients(cluster, [n.url for n in cluster.nodes]) as (ann, bob),
        ):
            typed = await type_tokens(ann, "before", 2)
            await converged([ann, bob], typed, url)
            pg.stop()
            typed += await type_tokens(ann, "during", 3)
            closed = await ann.wait_event("close", timeout=30)
            assert closed["code"] == CloseCode.STORE_UNAVAILABLE
            seen_by_bob = (await bob.files())[FILE]
            assert not any(t in seen_by_bob for t in typed[2:])  # nothing uncommitted relayed
            pg.start()
            typed += await type_tokens(bob, "after", 2)
            await converged([ann, bob], typed, url)
