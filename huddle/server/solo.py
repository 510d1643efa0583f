"""The one entry ``huddle lsp`` uses into the hub: solo mode, where the editor's language server
runs the workspace's hub in its own process. Everything else in ``lsp/`` talks to a hub over the
wire (``huddle.protocol``), as it would to one on another machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from huddle.server.auth import Role, TokenSigner
from huddle.server.config import HubConfig, default_data_dir
from huddle.server.datadir import DataDirBusy
from huddle.server.hub import Hub

SOLO_TOKEN_TTL = timedelta(days=30)


class HubRunning(Exception):
    """Another process runs the hub on this data directory; ``url`` and ``pid`` say which
    (None until it has published them)."""

    def __init__(self, url: str | None, pid: int | None) -> None:
        super().__init__(f"a hub already runs on this data directory ({url or 'starting'})")
        self.url = url
        self.pid = pid


def solo_base() -> Path:
    """Where solo stores live unless a setting says otherwise."""
    return default_data_dir() / "solo"


@asynccontextmanager
async def solo_hub(data_dir: Path) -> AsyncIterator[str]:
    """Run a hub on 127.0.0.1 (any free port) over ``data_dir``; yields its address. Raises
    ``HubRunning`` when another process holds the store (one store, one writer)."""
    async with AsyncExitStack() as stack:
        try:
            hub = await stack.enter_async_context(Hub(HubConfig(port=0, data_dir=data_dir)))
        except DataDirBusy as busy:
            owner = busy.owner
            raise HubRunning(owner.url if owner else None, owner.pid if owner else None) from None
        yield hub.url


def solo_token(data_dir: Path, room: str, user: str) -> str:
    """An editor's token for the solo hub on ``data_dir``, signed with that hub's key."""
    return TokenSigner.for_data_dir(data_dir).issue(room, user, Role.EDIT, SOLO_TOKEN_TTL)
