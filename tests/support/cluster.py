"""A hub cluster for the tests: real ``huddle serve --store postgresql://...`` subprocesses.

async with HubCluster(pg_url, tmp_path, nodes=3) as cluster:
    token = cluster.token("room", "ann")
    async with NodeClient(cluster.nodes[0].url, "room", token) as ann: ...
    await cluster.nodes[1].kill()   # SIGKILL, mid-session
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from pycrdt import Doc

from huddle.collab.schema import file_texts
from huddle.server.auth import Role, TokenSigner
from huddle.server.postgres import PostgresDatabase
from tests.support.peers import HubProcess


def cluster_signer(url: str) -> TokenSigner:
    db = PostgresDatabase(url)
    try:
        return TokenSigner(db.signing_key())
    finally:
        db.close()


def stored_texts(url: str, room: str) -> dict[str, str]:
    """The room's files as the database holds them (snapshot and log), read afresh."""
    db = PostgresDatabase(url)
    try:
        record = db.load_room(room, create=False)
    finally:
        db.close()
    doc: Doc[Any] = Doc()
    if record is not None:
        for update in ([record.snapshot] if record.snapshot else []) + record.log:
            doc.apply_update(update)
    return file_texts(doc)


class HubCluster:
    """``nodes`` hub processes on one PostgreSQL database, each with its own data directory."""

    def __init__(
        self, url: str, root: Path, nodes: int = 3, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.nodes = [
            HubProcess(root / f"node{i}", None, "--store", url, *extra, env=env)
            for i in range(nodes)
        ]
        self._signer: TokenSigner | None = None

    def token(self, room: str, user: str, role: str = "edit", ttl: float = 3600) -> str:
        if self._signer is None:
            self._signer = cluster_signer(self.url)
        return self._signer.issue(room, user, Role(role), timedelta(seconds=ttl))

    def logs(self) -> str:
        return "\n".join(f"--- node {i} ---\n{n.log()}" for i, n in enumerate(self.nodes))

    async def __aenter__(self) -> HubCluster:
        for node in self.nodes:
            await node.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.returncode is None:
                await node.kill(signal.SIGTERM)
