"""A small HTTP/1.1 server on 127.0.0.1 that replays streams shaped like vLLM's and
llama.cpp's (as their docs show them) and observes what a client sends and when it hangs up.
It stands in for a GPU server the tests cannot have; the embedded model is the real one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def start(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        self.writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n".encode()
        )
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self.writer.drain()

    async def event(self, payload: dict[str, Any] | str, field_name: str = "data") -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        await self.send(f"{field_name}: {text}\n\n".encode())

    async def finish(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def respond(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
            + data
        )
        await self.writer.drain()

    async def wait_closed(self) -> None:
        """Returns when the client hangs up (EOF or reset)."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass


Handler = Callable[[Received, Conn], Awaitable[None]]


@dataclass
class FakeBackend:
    handler: Handler
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    hangups: asyncio.Queue[float] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(method, path, headers, body)
            self.requests.append(request)
            conn = Conn(reader, writer)
            try:
                await self.handler(request, conn)
                await conn.wait_closed()
            except ConnectionError:
                pass  # a write failed: the client hung up
            self.hangups.put_nowait(asyncio.get_running_loop().time())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def vllm_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        ],
        "usage": None,
    }


async def vllm_stream(req: Received, conn: Conn) -> None:
    await conn.start()
    for text in ("def", " f", "(x)"):
        await conn.event(vllm_chunk(text))
    await conn.event(vllm_chunk(":", finish="length"))
    usage = {"prompt_tokens": 5, "total_tokens": 9, "completion_tokens": 4}
    await conn.event(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": usage,
        }
    )
    await conn.event("[DONE]")
    await conn.finish()


async def llamacpp_stream(req: Received, conn: Conn) -> None:
    def chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            "created": 1,
            "model": "smollm2",
            "system_fingerprint": "b0-unknown",
            "object": "text_completion",
            "id": "chatcmpl-x",
            **extra,
        }

    await conn.start()
    await conn.event(chunk(""))  # llama.cpp: an empty first chunk
    await conn.event(chunk("hello"))
    await conn.event(chunk(" world"))
    usage = {
        "completion_tokens": 3,
        "prompt_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 1},
    }
    await conn.event(chunk("", "stop", usage=usage, timings={"predicted_n": 3}))
    await conn.event("[DONE]")
    await conn.finish()


class Endless:
    """A generation that never ends on its own; records when the client hangs up."""

    def __init__(self) -> None:
        self.closed_at: asyncio.Future[float] | None = None

    async def __call__(self, req: Received, conn: Conn) -> None:
        loop = asyncio.get_running_loop()
        self.closed_at = loop.create_future()
        await conn.start()
        await conn.event(vllm_chunk("slow"))
        await conn.wait_closed()
        self.closed_at.set_result(loop.time())


def streaming(*pieces: str, delay: float = 0.0) -> Handler:
    """A vLLM stream of ``pieces``, ``delay`` seconds apart."""

    async def handler(req: Received, conn: Conn) -> None:
        await conn.start()
        for piece in pieces:
            await conn.event(vllm_chunk(piece))
            if delay:
                await asyncio.sleep(delay)
        await conn.event(vllm_chunk("", finish="length"))
        await conn.event("[DONE]")
        await conn.finish()

    return handler
