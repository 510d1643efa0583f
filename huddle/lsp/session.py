"""One editor's connection to its room: a pycrdt replica kept in sync with the hub.

With no hub configured the session starts one in-process on loopback (solo mode): the same
hub code as ``huddle serve``, its store in the user's data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from pycrdt import Doc

from huddle.lsp.hub_client import HubClient, Status, claimed
from huddle.lsp.settings import LspSettings
from huddle.protocol import ConnectionState, EditorStatus
from huddle.server.solo import HubRunning, solo_base, solo_hub, solo_token

log = logging.getLogger("huddle.lsp.session")

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def color_for(user: str) -> str:
    return PALETTE[hashlib.sha256(user.encode()).digest()[0] % len(PALETTE)]


class Session:
    def __init__(
        self,
        settings: LspSettings,
        *,
        solo_data_dir: Path | None = None,
        workspace: Path | None = None,
        on_status: Callable[[Status, str], None] | None = None,
        on_peers: Callable[[dict[int, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.settings = settings
        # The hub publishes presence under the token's user, whatever name a client claims:
        # show the user the name teammates see (and follow) them by.
        self.user = claimed(settings.token, "sub") or settings.user or "me"
        self.color = settings.color or color_for(self.user)
        self.room = settings.room or "workspace"
        self.doc: Doc[Any] = Doc()
        self.runs_hub = False  # solo mode: this process runs the workspace's hub
        self.client: HubClient | None = None
        self._solo_data_dir = solo_dir(solo_data_dir or solo_base(), workspace)
        self._on_status = on_status
        self._on_peers = on_peers
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Session:
        try:
            token: str | None
            urls: tuple[str, ...]
            if self.settings.solo:
                # Hubs started here (now or on taking over) close after the client.
                hubs = await self._stack.enter_async_context(contextlib.AsyncExitStack())
                urls = (await self._solo_hub(hubs),)
                token = solo_token(self._solo_data_dir, self.room, self.user)
            else:
                urls, token = self.settings.hubs, self.settings.token
            self.client = await self._stack.enter_async_context(
                HubClient(
                    urls,
                    self.room,
                    token,
                    self.doc,
                    on_status=self._on_status,
                    on_awareness=self._on_peers,
                )
            )
            if self.settings.solo:
                stand_in = asyncio.create_task(self._stand_in(hubs), name="solo stand-in")
                self._stack.push_async_callback(_cancelled, stand_in)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _solo_hub(self, hubs: contextlib.AsyncExitStack, lost: str | None = None) -> str:
        """Start the workspace's solo hub, or find the one another editor of this workspace
        runs (one store, one writer); its address either way. ``lost``: the address that just
        went away, whose holder is still closing (it keeps the lock until its store is shut)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SOLO_OWNER_WAIT_S
        while True:
            try:
                url = await hubs.enter_async_context(solo_hub(self._solo_data_dir))
            except HubRunning as busy:
                live = busy.pid is not None and _alive(busy.pid)
                if busy.url is not None and live and busy.url != lost:
                    log.info("solo mode: joining this workspace's hub at %s", busy.url)
                    return busy.url
                if loop.time() > deadline:
                    if busy.url is not None:  # still there: a blip, not a departure
                        return busy.url
                    raise
                # The holder has the lock but has not published its address yet (or just died
                # and the kernel is releasing the lock): a bounded poll of a file, no event.
                await asyncio.sleep(0.05)
                continue
            self.runs_hub = True
            log.info("solo mode: in-process hub at %s", url)
            return url

    async def _stand_in(self, hubs: contextlib.AsyncExitStack) -> None:
        """When the editor whose ``huddle lsp`` runs the workspace's solo hub closes, another
        takes over: it starts the hub on the same store (or finds who did) and reconnects."""
        client = self.client
        assert client is not None
        while True:
            await client.wait_status(Status.RECONNECTING)
            if self.runs_hub:  # our own hub cannot go away under us
                await client.wait_status(Status.CONNECTED, Status.CLOSED, Status.REJECTED)
                continue
            client.use(await self._solo_hub(hubs, lost=client.hub_url))
            await client.wait_status(Status.CONNECTED, Status.CLOSED, Status.REJECTED)

    @property
    def hub_url(self) -> str | None:
        """The hub address connected to (or being tried: one of a cluster's)."""
        return None if self.client is None else self.client.hub_url

    def describe(self, **extra: Any) -> EditorStatus:
        """The payload of ``huddle/status`` and of the ``huddle.status`` command; ``extra``:
        what the server adds (repairs, shared files)."""
        client = self.client
        state: ConnectionState = "offline"
        if client is not None:
            state = _STATES[client.status]
            if state == "connected" and client.read_only:
                state = "read-only"
        peers = [] if client is None else [_name(s) for s in client.peers.values()]
        return EditorStatus(
            state=state,
            reason=client.status_reason if client else "",
            room=self.room,
            user=self.user,
            color=self.color,
            hub=self.hub_url,
            solo=self.settings.solo,
            peers=sorted(p for p in peers if p),
            **extra,
        )


_STATES: dict[Status, ConnectionState] = {
    Status.CONNECTED: "connected",
    Status.RECONNECTING: "reconnecting",
    Status.CONNECTING: "reconnecting",
    Status.REJECTED: "rejected",
    Status.CLOSED: "offline",
}

SOLO_OWNER_WAIT_S = 10.0


def solo_dir(base: Path, workspace: Path | None) -> Path:
    """One solo store per workspace folder: two projects both called ``app`` never share a
    room, and editors of one folder share one hub."""
    if workspace is None:
        return base
    path = str(workspace.resolve())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", workspace.name)[:40] or "workspace"
    return base / f"{slug}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _name(state: dict[str, Any]) -> str:
    user = state.get("user")
    return str(user.get("name", "")) if isinstance(user, dict) else ""
