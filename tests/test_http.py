"""/healthz, /metrics, and wss:// with --tls-cert/--tls-key."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from pycrdt import Text

from huddle.collab.schema import file_texts, files
from huddle.lsp.hub_client import HubClient
from huddle.server.config import HubConfig
from huddle.server.hub import Hub
from tests.support.peers import eventually, token

ROOM = "obs/room"


async def test_healthz_and_metrics(hub: Hub, data_dir: Path) -> None:
    base = hub.url.replace("ws://", "http://")
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{base}/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as client:
            await asyncio.wait_for(client.synced.wait(), 10)
            files(client.doc)["m.txt"] = Text("metrics")
            room = hub.room(ROOM)
            assert room is not None
            await eventually(lambda: file_texts(room.doc) == {"m.txt": "metrics"}, what="stored")
            metrics = (await http.get(f"{base}/metrics")).text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values["huddle_rooms"] == 1
    assert values["huddle_connections"] == 1
    assert values['huddle_messages_in_total{type="SyncUpdate"}'] >= 1
    assert values["huddle_updates_stored_total"] >= 1
    assert values["huddle_bytes_in_total"] > 0 and values["huddle_bytes_out_total"] > 0
    assert values["huddle_store_commit_seconds_count"] >= 1


async def test_probes_are_logged_at_debug_not_info(
    hub: Hub, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's /healthz every few seconds must not fill the hub's INFO log, nor must
    websockets' context-free "connection open/closed" (the hub logs joins and leaves itself);
    a request the hub refuses still shows at INFO."""
    base = hub.url.replace("ws://", "http://")

    def ws_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "huddle.ws"]

    with caplog.at_level(logging.DEBUG, logger="huddle.ws"):
        async with httpx.AsyncClient() as http:
            for _ in range(3):
                assert (await http.get(f"{base}/healthz")).status_code == 200
            # Not a WebSocket upgrade, nor a room's page (a room name starts with a letter or digit)
            refused = await http.get(f"{base}/-no-such-room")
            assert refused.status_code == 426
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "ann")) as client:
            await asyncio.wait_for(client.synced.wait(), 10)
        await eventually(
            lambda: sum(r.msg == "connection closed" for r in ws_records()) == 5,
            what="websockets to log the five connections closed",
        )
    answers = ("HTTP response sent", "connection rejected", "connection open", "connection closed")
    levels = {(r.msg, r.levelname) for r in ws_records() if r.msg.startswith(answers)}
    assert levels == {
        ("HTTP response sent (%d %s)", "DEBUG"),
        ("connection rejected (%d %s)", "INFO"),
        ("connection open", "DEBUG"),
        ("connection closed", "DEBUG"),
    }, levels
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="huddle.ws"):
        async with httpx.AsyncClient() as http:
            await http.get(f"{base}/healthz")
    assert not ws_records(), caplog.records


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_wss(data_dir: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = HubConfig(port=0, data_dir=data_dir, tls_cert=cert, tls_key=key)
    async with Hub(config) as hub:
        assert hub.url.startswith("wss://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with HubClient(hub.url, ROOM, token(data_dir, ROOM, "tls"), ssl_context=trust) as a:
            await asyncio.wait_for(a.synced.wait(), 10)
            files(a.doc)["secure.txt"] = Text("over TLS")
            room = hub.room(ROOM)
            assert room is not None
            await eventually(lambda: file_texts(room.doc) == {"secure.txt": "over TLS"}, what="tls")
