"""The language server's stdio transport, read on the event loop.

pygls reads stdin in a worker thread, one executor round trip per header line and per body:
every message waits for that thread to get the GIL back from a busy event loop (up to the
interpreter's 5 ms switch interval) and costs a thread hand-off. Where stdin is a pipe or a
socket of its own (as every editor starts a language server) we read it with asyncio instead;
anywhere else (a terminal, a file) pygls's own transport does.

The loop is pygls's ``run_async`` with one addition: a protocol that has a ``take(body)`` method
sees each message's raw body first and may handle it itself (``True``), skipping pygls's
structuring of the JSON through cattrs (``huddle lsp`` reads ``didChange`` so: see
``HuddleProtocol.take``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.server import JsonRPCServer

log = logging.getLogger(__name__)


def serve(server: JsonRPCServer, stdin: BinaryIO | None = None) -> None:
    """Serve LSP on stdin/stdout until the client says exit or closes stdin."""
    stdin = stdin or sys.stdin.buffer
    if not _own_pipe(stdin.fileno(), sys.stdout.fileno()):
        server.start_io(stdin)
        return
    server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(_serve(server, stdin))
    except BrokenPipeError:
        log.error("the connection to the editor is lost; shutting down")
    except (KeyboardInterrupt, SystemExit):  # SystemExit: pygls's answer to ``exit``
        pass
    finally:
        server.shutdown()  # type: ignore[no-untyped-call]


def _own_pipe(stdin: int, stdout: int) -> bool:
    """Whether ``stdin`` is a pipe or socket that is not also ``stdout``: asyncio sets it
    non-blocking, which must not reach the file that the answers are written to."""
    try:
        mode, out = os.fstat(stdin), os.fstat(stdout)
    except OSError:
        return False
    if not (stat.S_ISFIFO(mode.st_mode) or stat.S_ISSOCK(mode.st_mode)):
        return False
    return (mode.st_dev, mode.st_ino) != (out.st_dev, out.st_ino)


async def _serve(server: JsonRPCServer, stdin: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream, loop=loop), stdin)
    assert server._stop_event is not None
    await _run(server, _Reader(stream))


_CONTENT_LENGTH = re.compile(rb"^Content-Length: (\d+)\r\n$")


async def _run(server: JsonRPCServer, reader: _Reader) -> None:
    """pygls's ``run_async`` (headers, then the body), with the protocol's ``take`` first."""
    stop_event = server._stop_event
    assert stop_event is not None
    protocol = server.protocol
    take: Callable[[bytes], bool] | None = getattr(protocol, "take", None)
    pygls_log = logging.getLogger("pygls.io_")
    content_length = 0
    while not stop_event.is_set():
        header = await reader.readline()
        if not header:
            break
        if not content_length and (match := _CONTENT_LENGTH.fullmatch(header)):
            content_length = int(match.group(1))
        if content_length and not header.strip():
            body = await reader.readexactly(content_length)
            if not body:
                break
            try:
                if take is None or not take(body):
                    message = json.loads(body, object_hook=protocol.structure_message)
                    protocol.handle_message(message)
            except Exception as exc:
                pygls_log.exception("Unable to handle message")
                server.report_server_error(exc, JsonRpcException)
            finally:
                content_length = 0


class _Reader:
    """pygls's reader interface on an asyncio stream: ``b""`` at the end of the input."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self) -> bytes:
        # Let what the last message started run first. pygls starts an async handler as a
        # task; a request's handler reads its position on the text as it is when it first
        # runs. With more messages already buffered, the stream would hand over the changes
        # sent right behind the request before it ran (a thread-read stdin yields here).
        await asyncio.sleep(0)
        try:
            return await self._stream.readline()
        except ValueError:  # a header line past the stream's limit: not LSP
            log.error("a header line of over 64 KiB from the editor: not LSP; stopping")
            return b""

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError:
            return b""
