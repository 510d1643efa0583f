"""A loopback TCP proxy that makes the network bad on purpose: latency with jitter, stalls,
dropped connections and refused connects, between real clients and a real hub.

Order within a connection is kept (TCP never reorders): each chunk is released at
``max(previous release, arrival + latency + jitter)``."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency_s: float = 0.0
    jitter_s: float = 0.0
    refuse: bool = False  # new connections are closed at once (the hub seems down)


@dataclass
class FaultyProxy:
    upstream_port: int
    faults: Faults = field(default_factory=Faults)
    port: int = 0
    seed: int = 0
    connections: int = 0  # accepted so far, reconnects included
    _server: asyncio.Server | None = None
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- the knobs -----------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding (bytes pile up, connections stay open) until ``resume``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop(self) -> None:
        """Reset every open connection, both sides."""
        for writer in list(self._writers):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()

    def heal(self) -> None:
        self.faults = Faults()
        self.resume()

    # -- the pipes -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self.faults.refuse:
                return
            self.connections += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            pipes = [
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ]
            try:
                # Either side ending ends both, like a real middlebox.
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the injected latency itself
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        last_due = 0.0
        try:
            while chunk := await reader.read(65536):
                if sender.done():
                    break
                delay = self.faults.latency_s + self._rng.uniform(0, self.faults.jitter_s)
                last_due = max(last_due, loop.time() + delay)
                queue.put_nowait((last_due, chunk))
            # EOF: let what is queued go out before this side ends.
            while not queue.empty() and not sender.done():
                await asyncio.sleep(0.01)
        except OSError:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
