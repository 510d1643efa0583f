"""A minimal asyncio msgpack-RPC client for Neovim (`nvim --embed`, or `--listen` over a Unix
socket): enough of msgpack to call the API and read its answers, so the plugin tests drive a
real Neovim without a third-party client library."""

from __future__ import annotations

import asyncio
import itertools
import struct
from dataclasses import dataclass
from typing import Any


class NvimError(Exception):
    """An API call that Neovim answered with an error."""


@dataclass(frozen=True)
class Ext:
    """A msgpack extension value: Neovim sends buffers (0), windows (1) and tabpages (2)."""

    code: int
    handle: int


def pack(obj: Any) -> bytes:
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, Ext):
        return pack(obj.handle)  # the API takes a handle where it takes a buffer or window
    if isinstance(obj, int):
        if 0 <= obj < 0x80:
            return bytes([obj])
        if -32 <= obj < 0:
            return struct.pack(">b", obj)
        if 0 <= obj < 2**32:
            return b"\xce" + struct.pack(">I", obj)
        if 0 <= obj < 2**64:
            return b"\xcf" + struct.pack(">Q", obj)
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        data = obj.encode()
        if len(data) < 32:
            return bytes([0xA0 | len(data)]) + data
        return b"\xdb" + struct.pack(">I", len(data)) + data
    if isinstance(obj, bytes):
        return b"\xc6" + struct.pack(">I", len(obj)) + obj
    if isinstance(obj, list | tuple):
        head = bytes([0x90 | len(obj)]) if len(obj) < 16 else b"\xdd" + struct.pack(">I", len(obj))
        return head + b"".join(pack(item) for item in obj)
    if isinstance(obj, dict):
        head = bytes([0x80 | len(obj)]) if len(obj) < 16 else b"\xdf" + struct.pack(">I", len(obj))
        return head + b"".join(pack(k) + pack(v) for k, v in obj.items())
    raise TypeError(f"cannot send {type(obj).__name__} to Neovim")


class Unpacker:
    """Decodes msgpack values one at a time from a stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def _read(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def _uint(self, n: int) -> int:
        return int.from_bytes(await self._read(n), "big")

    async def _items(self, n: int) -> list[Any]:
        return [await self.unpack() for _ in range(n)]

    async def _map(self, n: int) -> dict[Any, Any]:
        result = {}
        for _ in range(n):
            key = await self.unpack()
            result[key] = await self.unpack()
        return result

    async def _ext(self, n: int) -> Ext:
        code = struct.unpack(">b", await self._read(1))[0]
        data = await self._read(n)
        inner = Unpacker(_bytes_reader(data))
        return Ext(code, await inner.unpack())

    async def unpack(self) -> Any:
        b = (await self._read(1))[0]
        if b < 0x80:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return await self._map(b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return await self._items(b & 0x0F)
        if 0xA0 <= b <= 0xBF:
            return (await self._read(b & 0x1F)).decode(errors="surrogateescape")
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xD9: 1, 0xDA: 2, 0xDB: 4}
        if b in sized:
            return (await self._read(await self._uint(sized[b]))).decode(errors="surrogateescape")
        binary = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        if b in binary:
            return await self._read(await self._uint(binary[b]))
        if b in (0xCC, 0xCD, 0xCE, 0xCF):
            return await self._uint(1 << (b - 0xCC))
        signed = {0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if b in signed:
            fmt = signed[b]
            return struct.unpack(fmt, await self._read(struct.calcsize(fmt)))[0]
        if b == 0xCA:
            return struct.unpack(">f", await self._read(4))[0]
        if b == 0xCB:
            return struct.unpack(">d", await self._read(8))[0]
        if b in (0xDC, 0xDD):
            return await self._items(await self._uint(2 if b == 0xDC else 4))
        if b in (0xDE, 0xDF):
            return await self._map(await self._uint(2 if b == 0xDE else 4))
        fixext = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
        if b in fixext:
            return await self._ext(fixext[b])
        if b in (0xC7, 0xC8, 0xC9):
            return await self._ext(await self._uint(1 << (b - 0xC7)))
        raise ValueError(f"unknown msgpack type byte 0x{b:02x}")


def _bytes_reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class Nvim:
    """Requests to one Neovim; its notifications are kept in ``notifications``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | Any) -> None:
        self._unpacker = Unpacker(reader)
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.notifications: list[tuple[str, list[Any]]] = []
        self._task = asyncio.ensure_future(self._receive())

    async def _receive(self) -> None:
        try:
            while True:
                message = await self._unpacker.unpack()
                kind = message[0]
                if kind == 1:
                    _, msgid, error, result = message
                    future = self._waiting.pop(msgid, None)
                    if future is not None and not future.done():
                        if error is not None:
                            future.set_exception(NvimError(_error_text(error)))
                        else:
                            future.set_result(result)
                elif kind == 2:
                    self.notifications.append((message[1], message[2]))
                elif kind == 0:  # Neovim asks us something: we serve nothing
                    self._write([1, message[1], "no such method", None])
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(NvimError(f"Neovim went away: {exc}"))
            self._waiting.clear()

    def _write(self, message: list[Any]) -> None:
        self._writer.write(pack(message))

    async def request(self, method: str, *args: Any, timeout: float = 20.0) -> Any:
        msgid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[msgid] = future
        self._write([0, msgid, method, list(args)])
        await self._writer.drain()
        return await asyncio.wait_for(future, timeout)

    async def lua(self, code: str, *args: Any) -> Any:
        """Runs a Lua chunk (its arguments are ``...``) and returns what it returns."""
        return await self.request("nvim_exec_lua", code, list(args))

    async def command(self, command: str) -> None:
        await self.request("nvim_command", command)

    async def input(self, keys: str) -> None:
        """Types ``keys`` (with <Esc>-style notation) as the user would."""
        await self.request("nvim_input", keys)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._writer.close()


def _error_text(error: Any) -> str:
    if isinstance(error, list) and len(error) == 2:
        return str(error[1])
    return str(error)
