"""Fault injection under load: the hub SIGKILLed and restarted mid-soak, a bad network between
the peers and the hub, the model backend dying mid-stream. Every replica converges once the
fault heals, with nothing lost and nothing doubled, and nobody restarts anything by hand."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from huddle.collab.schema import file_texts
from huddle.lsp.hub_client import HubClient
from tests.support.lsp_editor import Editor
from tests.support.peers import HubProcess, eventually, free_port, token
from tests.support.proxy import Faults, FaultyProxy
from tests.support.replay import Conn, FakeBackend, Received, streaming, vllm_chunk
from tests.support.soak import FAILED_COMPLETION, Soak, SoakConfig

# What a completion may answer while the hub or the network is down: a clear error.
CLEAN_FAILURES = ("Huddle AI:", "the cursor does not resolve")


def assert_failed_cleanly(soak: Soak) -> None:
    totals = soak.totals()["completions"]
    assert totals["hung"] == 0, totals
    for user in soak.lsp_users:
        for failure in user.stats.failed:
            assert any(clean in failure for clean in CLEAN_FAILURES), failure


async def assert_reconnected(soak: Soak, times: int) -> None:
    """Each peer reconnected by itself: editors report connected, Node clients connected again
    at least ``times`` times after their first connection."""
    for user in soak.lsp_users:
        await user.editor.wait_status("connected", timeout=30)
    for client in [u.client for u in soak.node_users] + [soak.observer]:
        connected = [e for e in client.events if e == {"event": "status", "status": "connected"}]
        assert len(connected) >= 1 + times, client.events[-5:]


@pytest.mark.timeout(240)
async def test_hub_sigkilled_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = SoakConfig(users=5, files=2, seconds=24, edits_per_s=3, seed=2)
    rng = random.Random(7)
    kills = 3
    async with Soak(tmp_path, config, compact_every=40) as soak:  # kills land near snapshots
        await soak.join()

        async def killer(deadline: float) -> None:
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(1, 5))  # a random moment mid-typing
                await soak.kill_hub()  # asserts the store holds what a peer saw
                await asyncio.sleep(rng.uniform(0.2, 1.5))  # everyone types offline meanwhile
                await soak.restart_hub()

        await soak.run(config.seconds, during=killer)
        assert soak.hub_restarts == kills
        final = await soak.settle(timeout=60)  # equal everywhere; typed minus deleted, once
        await assert_reconnected(soak, kills)
        assert await soak.repairs() == {u.name: 0 for u in soak.lsp_users}
        assert_failed_cleanly(soak)
        await soak.check_store(final)
    assert soak.bad_log_lines(allow=(FAILED_COMPLETION,)) == {}


@pytest.mark.timeout(240)
async def test_latency_stalls_and_dropped_connections_converge_once_healed(
    tmp_path: Path,
) -> None:
    config = SoakConfig(users=5, files=2, seconds=20, edits_per_s=3, seed=3)
    async with Soak(tmp_path, config) as soak, FaultyProxy(soak.port, seed=3) as proxy:
        await soak.join(proxy.url)  # every peer but the auditor goes through the proxy
        joined = proxy.connections

        async def weather(deadline: float) -> None:
            proxy.faults = Faults(latency_s=0.05, jitter_s=0.15)
            await asyncio.sleep(4)  # each fault lasts a while: pacing, not waiting
            proxy.stall()
            await asyncio.sleep(2.5)
            proxy.resume()
            await asyncio.sleep(2)
            proxy.drop()  # every connection reset at once
            await asyncio.sleep(3)
            proxy.faults = Faults(latency_s=0.2, jitter_s=0.3, refuse=True)
            proxy.drop()  # and nobody can reconnect for a while
            await asyncio.sleep(2.5)
            proxy.faults = Faults(latency_s=0.02, jitter_s=0.3)  # jitter, reconnects allowed
            await asyncio.sleep(3)
            proxy.stall()
            proxy.drop()
            await asyncio.sleep(1.5)
            proxy.heal()

        await soak.run(config.seconds, during=weather)
        proxy.heal()
        await soak.settle(timeout=60)
        await assert_reconnected(soak, 2)
        assert proxy.connections >= joined + 2 * (len(soak.users()) + 1)
        assert await soak.repairs() == {u.name: 0 for u in soak.lsp_users}
        assert_failed_cleanly(soak)
    assert soak.bad_log_lines(allow=(FAILED_COMPLETION,)) == {}


@pytest.mark.timeout(120)
async def test_backend_dying_mid_stream_fails_cleanly_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    mid_stream = asyncio.Event()

    async def dies_mid_stream(req: Received, conn: Conn) -> None:
        await conn.start()
        await conn.event(vllm_chunk("half"))
        mid_stream.set()
        await asyncio.Event().wait()  # until the backend dies under it

    backend = await FakeBackend(dies_mid_stream).__aenter__()
    try:
        await _backend_outage(tmp_path, backend, mid_stream)
    finally:
        await backend.__aexit__(None, None, None)  # again if the test killed it: harmless


async def _backend_outage(tmp_path: Path, backend: FakeBackend, mid_stream: asyncio.Event) -> None:
    room = "faults/backend"
    data_dir = tmp_path / "hub"
    port = backend.port
    args = ["--log-level", "warning", "--llm-url", backend.url, "--llm-model", "m"]
    async with HubProcess(data_dir, free_port(), *args) as hub:
        options = {
            "hub": hub.url,
            "room": room,
            "user": "ann",
            "token": token(data_dir, room, "ann"),
        }
        (tmp_path / "ws").mkdir()
        async with (
            Editor(tmp_path / "ws", init_options=options) as ann,
            HubClient(hub.url, room, token(data_dir, room, "eve", "read")) as eve,
        ):
            await ann.wait_status("connected")
            ann.open("m.py", "total = \n")
            await eventually(lambda: "m.py" in file_texts(eve.doc), what="m.py shared")
            loop = asyncio.get_running_loop()

            # Dies mid-stream: the request in flight fails with a clear error, at once.
            asked = ann.ask_inline("m.py", 8)
            await asyncio.wait_for(mid_stream.wait(), 15)
            await backend.__aexit__(None, None, None)
            died = loop.time()
            with pytest.raises(Exception, match="Huddle AI") as failed:
                await asyncio.wait_for(asked, 10)
            assert loop.time() - died < 5, "no hang when the stream breaks"
            print("mid-stream:", failed.value)

            # While it is down: each completion fails fast and says why; editing goes on.
            for _ in range(2):
                started = loop.time()
                with pytest.raises(Exception, match="Huddle AI: no LLM backend") as failed:
                    await asyncio.wait_for(ann.inline("m.py", 8), 10)
                assert loop.time() - started < 5
                print("while down:", failed.value)
            ann.type("m.py", 8, "price")
            await eventually(
                lambda: file_texts(eve.doc)["m.py"] == "total = price\n", what="editing goes on"
            )

            # Back on the same address: the very next completion works, nothing restarted.
            async with FakeBackend(streaming(" * count"), port=port) as again:
                assert await asyncio.wait_for(ann.inline("m.py", 13), 15) == " * count"
                assert len(again.requests) == 1

            await eventually(lambda: "marked down" in hub.log(), what="the hub logs the outage")
    assert "Traceback" not in hub.log() and " ERROR " not in hub.log(), hub.log()
