"""Pages of the hub's browser client in Debian's chromium (tests/web/driver.mjs, playwright-core
from tests/workbench), driven over JSON lines like the Node Yjs clients."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from huddle.server.web import STATIC
from tests.support.peers import ROOT, NodeProcess, eventually

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = ROOT / "tests" / "workbench" / "node_modules" / "playwright-core"
DRIVER = ROOT / "tests" / "web" / "driver.mjs"


def missing() -> list[str]:
    """What a browser test needs and this machine lacks (the test fails naming it)."""
    lacking = []
    if not CHROMIUM.exists():
        lacking.append(f"{CHROMIUM} (Debian's chromium: ./dev setup)")
    if not (PLAYWRIGHT / "index.mjs").exists():
        lacking.append(f"{PLAYWRIGHT} (npm ci in tests/workbench: ./dev setup)")
    if not (STATIC / "manifest.json").exists():
        lacking.append(f"{STATIC}/manifest.json (the web client's bundle: ./dev setup)")
    return lacking


class Browser(NodeProcess):
    """One headless chromium; ``open`` makes a page (its own context) under a name."""

    what = "the browser driver"
    reply_timeout = 30.0

    async def __aenter__(self) -> Browser:
        lacking = missing()
        assert not lacking, "the browser tests need: " + "; ".join(lacking)
        await self.spawn(DRIVER, str(CHROMIUM), str(PLAYWRIGHT))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def open(self, page: str, url: str, **viewport: int) -> dict[str, Any]:
        """A page (its own context) at ``url``; ``width`` and ``height``: its viewport."""
        return await self.request("open", page=page, url=url, **viewport)

    async def state(self, page: str) -> dict[str, Any]:
        return await self.request("state", page=page)

    async def wait(self, page: str, what: str, check: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Until ``check(state)`` holds for what the page shows; that state."""
        seen: dict[str, Any] = {}

        async def holds() -> bool:
            nonlocal seen
            seen = await self.state(page)
            return bool(check(seen))

        try:
            await eventually(holds, timeout=timeout, what=what)
        except AssertionError as exc:
            shown = {k: v for k, v in seen.items() if k != "requests"}
            raise AssertionError(f"{exc}; the page shows {shown}") from None
        return seen
