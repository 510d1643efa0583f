from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from huddle.server.config import HubConfig, Limits
from huddle.server.hub import Hub


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def hub(data_dir: Path, limits: Limits) -> AsyncIterator[Hub]:
    async with Hub(HubConfig(port=0, data_dir=data_dir, limits=limits)) as running:
        yield running
