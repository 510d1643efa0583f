"""One editor's connection to its room: a pycrdt replica kept in sync with the hub.

With no hub configured the session starts one in-process on loopback (solo mode): the same
hub code as ``huddle serve``, its store in the user's data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from pycrdt import Doc

from huddle.lsp.settings import LspSettings
from huddle.server.auth import Role
from huddle.server.client import HubClient, Status
from huddle.server.config import HubConfig, default_data_dir
from huddle.server.hub import Hub

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
        on_status: Callable[[Status, str], None] | None = None,
        on_peers: Callable[[dict[int, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.user = settings.user or "me"
        self.color = settings.color or color_for(self.user)
        self.room = settings.room or "workspace"
        self.doc: Doc[Any] = Doc()
        self.hub: Hub | None = None
        self.client: HubClient | None = None
        self._solo_data_dir = solo_data_dir or default_data_dir() / "solo"
        self._on_status = on_status
        self._on_peers = on_peers
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Session:
        await self._stack.__aenter__()
        try:
            if self.settings.solo:
                self.hub = await self._stack.enter_async_context(
                    Hub(HubConfig(port=0, data_dir=self._solo_data_dir))
                )
                url = self.hub.url
                token: str | None = self.hub.signer.issue(
                    self.room, self.user, Role.EDIT, timedelta(days=30)
                )
                log.info("solo mode: in-process hub at %s", url)
            else:
                assert self.settings.hub is not None
                url, token = self.settings.hub, self.settings.token
            self.client = await self._stack.enter_async_context(
                HubClient(
                    url,
                    self.room,
                    token,
                    self.doc,
                    on_status=self._on_status,
                    on_awareness=self._on_peers,
                )
            )
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
        await self._stack.__aexit__(exc_type, exc, tb)

    def describe(self) -> dict[str, Any]:
        """The payload of ``huddle/status`` and of the ``huddle.status`` command."""
        client = self.client
        state = "offline"
        if client is not None:
            state = {
                Status.CONNECTED: "connected",
                Status.RECONNECTING: "reconnecting",
                Status.CONNECTING: "reconnecting",
                Status.REJECTED: "rejected",
                Status.CLOSED: "offline",
            }[client.status]
            if state == "connected" and client.read_only:
                state = "read-only"
        peers = [] if client is None else [_name(s) for s in client.peers.values()]
        return {
            "state": state,
            "reason": client.status_reason if client else "",
            "room": self.room,
            "user": self.user,
            "color": self.color,
            "hub": self.hub.url if self.hub else self.settings.hub,
            "solo": self.settings.solo,
            "peers": sorted(p for p in peers if p),
        }


def _name(state: dict[str, Any]) -> str:
    user = state.get("user")
    return str(user.get("name", "")) if isinstance(user, dict) else ""
