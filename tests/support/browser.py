"""Pages of the hub's browser client in Debian's chromium (tests/web/driver.mjs, playwright-core
from tests/workbench), driven over JSON lines like the Node Yjs clients."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from huddle.server.web import STATIC
from tests.support.peers import NODE_LINE_LIMIT, ROOT, eventually

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


class Browser:
    """One headless chromium; ``open`` makes a page (its own context) under a name."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def __aenter__(self) -> Browser:
        lacking = missing()
        assert not lacking, "the browser tests need: " + "; ".join(lacking)
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            str(CHROMIUM),
            str(PLAYWRIGHT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=NODE_LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            msg = json.loads(raw)
            self._replies.pop(msg["id"]).set_result(msg)
        for future in self._replies.values():  # the driver died: fail what waits, loudly
            future.set_exception(AssertionError("the browser driver exited"))

    async def request(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        self.proc.stdin.write(json.dumps({"id": msg_id, "op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(future, timeout)
        if not reply["ok"]:
            raise AssertionError(f"browser {op} failed: {reply['error']}")
        return reply

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
