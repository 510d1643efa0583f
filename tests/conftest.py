from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from huddle.llm import BackendConfig, LlmConfig, LlmTimeouts
from huddle.server.config import Limits
from huddle.server.hub import Hub
from tests.support.hubs import local_hub
from tests.support.postgres import PostgresServer
from tests.support.replay import FakeBackend, streaming

AI_MODEL = "Qwen/Qwen2.5-Coder-1.5B"  # what the fake backend claims to serve
_pg_databases = itertools.count(1)  # database names unique within the session's server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def hub(data_dir: Path, limits: Limits) -> AsyncIterator[Hub]:
    async with local_hub(data_dir, limits=limits) as running:
        yield running


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend(streaming("x = 1")) as fake:
        yield fake


@pytest.fixture
async def ai_hub(data_dir: Path, backend: FakeBackend) -> AsyncIterator[Hub]:
    llm = LlmConfig(
        backends=[BackendConfig(url=backend.url, model=AI_MODEL)],
        timeouts=LlmTimeouts(connect_s=1, first_token_s=5, between_chunks_s=5),
    )
    async with local_hub(data_dir, llm=llm) as running:
        yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (fails naming scripts/postgres.sh when absent)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database per test, named after it (for reading the server's log)."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return postgres.new_database(f"{slug}_{next(_pg_databases)}")
