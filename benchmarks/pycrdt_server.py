"""pycrdt-websocket as a benchmark peer: ``python -m benchmarks.pycrdt_server --port N``.

Its ``WebsocketServer`` (one ``YRoom`` per URL path, documents in memory, no store) behind the
``websockets`` server the hub uses too, bound to 127.0.0.1. Prints ``running at HOST:PORT``
once it listens, the line the fan-out driver waits for; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Channel:
    """A ``websockets`` connection as the channel pycrdt-websocket serves (its room: the path)."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        request = connection.request
        self._path = request.path.split("?", 1)[0] if request is not None else "/"

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self._connection.send(message)

    async def recv(self) -> bytes:
        message = await self._connection.recv()
        return message if isinstance(message, bytes) else message.encode()


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with WebsocketServer() as rooms:

        async def handler(connection: ServerConnection) -> None:
            channel: Any = Channel(connection)  # structurally a pycrdt Channel
            await rooms.serve(channel)

        async with serve(handler, host, port, max_size=None) as server:
            bound = next(iter(server.sockets)).getsockname()
            print(f"running at {bound[0]}:{bound[1]}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pycrdt_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
