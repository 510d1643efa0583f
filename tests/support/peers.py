"""Real peers for tests: the hub in-process or as a subprocess, and stock Node Yjs clients."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from huddle.server.auth import Role, TokenSigner

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "tests" / "node" / "yclient.mjs"
NODE_LINE_LIMIT = 64 * 1024 * 1024  # a reply holds whole files: far past asyncio's 64 KiB


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 15.0,
    what: str = "condition",
) -> None:
    """Re-check ``check`` until it holds; fail after ``timeout`` seconds (a bound, not a guess)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def close_of(url: str, *frames: bytes | str, **kw: Any) -> tuple[int, str]:
    """Connect, send ``frames``, and return the (code, reason) the hub closed with."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ws = await connect(url, **kw)
    try:
        for frame in frames:
            await ws.send(frame)
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the hub closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
    finally:
        await ws.close()


def token(data_dir: Path, room: str, user: str, role: str = "edit", ttl: float = 3600) -> str:
    return TokenSigner.for_data_dir(data_dir).issue(room, user, Role(role), timedelta(seconds=ttl))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HubProcess:
    """``huddle serve`` as a real subprocess, so a test can SIGKILL it."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env or {}
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"ws://127.0.0.1:{self.port}"
        self.stderr_path = data_dir / f"hub-{self.port}.log"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "huddle.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "HUDDLE_HUB__LLM__PRELOAD": "false",  # the model starts at the first request
                **self.env,
            },
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if b"huddle hub on" not in line:
            raise RuntimeError(f"hub did not start: {line!r}\n{self.log()}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await self.proc.wait()
        self._stderr.close()
        return code

    async def __aenter__(self) -> HubProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            await self.kill(signal.SIGTERM)


class NodeProcess:
    """A Node script driven over JSON lines: each request carries an ``id`` that its reply
    repeats; any other line is an event. The base of the Node Yjs clients and the browser
    drivers."""

    _ids = itertools.count(1)
    what = "the node process"  # for messages
    reply_timeout = 15.0

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._event_added = asyncio.Event()
        self._failed: Exception | None = None

    async def spawn(self, script: Path, *args: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=NODE_LINE_LIMIT,
        )
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._event_added.set()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for raw in self.proc.stdout:
                msg = json.loads(raw)
                if "id" in msg:
                    self._replies.pop(msg["id"]).set_result(msg)
                else:
                    self.on_event(msg)
        except Exception as exc:  # a reply that cannot be read fails every request, loudly
            self._failed = exc
            for future in self._replies.values():
                future.set_exception(exc)
            raise
        self._failed = AssertionError(f"{self.what} exited")
        for future in self._replies.values():  # it died: fail what waits, loudly
            future.set_exception(self._failed)

    async def request(self, op: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self._failed is not None:
            raise AssertionError(f"{self.what} cannot answer: {self._failed!r}")
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        self.proc.stdin.write(json.dumps({"id": msg_id, "op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(future, self.reply_timeout if timeout is None else timeout)
        if not reply["ok"]:
            raise AssertionError(f"{self.what}: {op} failed: {reply['error']}")
        return reply


class NodeClient(NodeProcess):
    """A stock ``yjs`` + ``y-websocket`` client in its own Node process (tests/node/yclient.mjs)."""

    what = "the node client"

    def __init__(self, url: str, room: str, token: str | None) -> None:
        super().__init__()
        self.args = [url, room] + ([token] if token else [])

    async def __aenter__(self) -> NodeClient:
        await self.spawn(NODE_CLIENT, *self.args)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_event(self, name: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                        return event
                self._event_added.clear()
                await self._event_added.wait()

        return await asyncio.wait_for(found(), timeout)

    async def files(self) -> dict[str, str]:
        return dict((await self.request("get"))["files"])
