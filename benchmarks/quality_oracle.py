"""The over-generating oracle of the quality benchmark: a loopback OpenAI-compatible server
that knows every task's answer and does not know where to stop.

``POST /v1/completions`` (streamed, server-sent events shaped like vLLM's) reads the FIM
prompt the hub sends (``<|fim_prefix|>...<|fim_suffix|>...<|fim_middle|>``: the hub is told
the oracle takes Qwen2.5-Coder's template), finds the task whose prefix ends with the prompt's
prefix (less the spaces a prompt may leave out for the model to write, which the oracle then
writes first) and whose suffix starts with the prompt's suffix, and streams that task's
canonical middle, then the rest of the file (the suffix), then more (the task's test code, as
a model that goes on writing would), a few characters per chunk, up to the request's
``max_tokens`` chunks. What the hub then shows is only as right as its stopping and trimming:
the oracle measures them alone.

Nothing tells the oracle which task is asked but the prompt text: no side channel into Huddle.
:func:`planned` is the very stream, so the naive rules can be applied to it offline.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from huddle.llm.fim import QWEN_CODER

MODEL = "huddle-oracle"
TEMPLATE = QWEN_CODER
_KEY_CHARS = 48
_MAX_BODY = 4 * 1024 * 1024
# A word, a run of spaces (indentation is one token in code tokenizers), a line break, a run
# of punctuation; a word keeps the one space in front of it, as BPE tokenizers do.
_PIECE = re.compile(r" ?[A-Za-z_0-9]+| +|\n|[^A-Za-z_0-9\s]+|\s")


@dataclass(frozen=True, slots=True)
class OracleTask:
    """What the oracle needs of a task: the file around the hole, the answer, the rest."""

    task_id: str
    prefix: str
    suffix: str
    middle: str
    more: str


def chunks(task: OracleTask, lead: str = "") -> list[str]:
    """The whole stream the oracle has for ``task``: middle, suffix, more, cut into pieces of a
    few characters the way a code tokenizer would, long words split at seeded random points.
    ``lead``: the end of the task's prefix that the prompt left out, written first."""
    rng = random.Random(task.task_id)
    pieces: list[str] = []
    for match in _PIECE.finditer(lead + task.middle + task.suffix + task.more):
        piece = match.group()
        while len(piece) > 6:
            cut = rng.randint(2, 6)
            pieces.append(piece[:cut])
            piece = piece[cut:]
        pieces.append(piece)
    return pieces


def planned(task: OracleTask, max_tokens: int) -> str:
    """The text the oracle streams for ``task`` when allowed ``max_tokens`` chunks."""
    return "".join(chunks(task)[:max_tokens])


class UnknownTask(LookupError):
    """The prompt matches no task, or several with different answers."""


class TaskIndex:
    def __init__(self, tasks: Iterable[OracleTask]) -> None:
        self._by_tail: dict[str, list[OracleTask]] = {}
        self._all: list[OracleTask] = []
        for task in tasks:
            self._all.append(task)
            self._by_tail.setdefault(_key(task.prefix), []).append(task)

    def find(self, prefix: str, suffix: str) -> tuple[OracleTask, str]:
        """The task whose text around the hole the hub's (possibly budget-cut) prompt holds,
        and the spaces at the end of its prefix that the prompt left out for the model."""
        stripped = prefix.rstrip(" ")
        candidates: Sequence[OracleTask] = (
            self._by_tail.get(_key(prefix), []) if len(stripped) >= _KEY_CHARS else []
        )
        found = _matching(candidates, prefix, suffix)
        if not found:  # a prefix shorter than the key, or cut differently: look at them all
            found = _matching(self._all, prefix, suffix)
        # Uncut text names its task alone (an empty suffix starts every other suffix).
        whole = [(t, lead) for t, lead in found if t.prefix == prefix + lead and t.suffix == suffix]
        found = whole or found
        middles = {t.middle for t, _ in found}
        if len(middles) != 1:
            raise UnknownTask(f"{len(found)} tasks match ({len(middles)} different answers)")
        return found[0]


def _key(prefix: str) -> str:
    return prefix.rstrip(" ")[-_KEY_CHARS:]


def _matching(
    tasks: Iterable[OracleTask], prefix: str, suffix: str
) -> list[tuple[OracleTask, str]]:
    found = []
    for task in tasks:
        lead = _left_out(task.prefix, prefix)
        if lead is not None and task.suffix.startswith(suffix):
            found.append((task, lead))
    return found


def _left_out(whole: str, prefix: str) -> str | None:
    """The spaces at the end of ``whole`` after ``prefix``, where ``prefix`` is the end of
    ``whole`` less some trailing spaces (a prompt ending one space short); else None."""
    kept = whole
    while not kept.endswith(prefix):
        if not kept.endswith(" "):
            return None
        kept = kept[:-1]
    return whole[len(kept) :]


def parse_fim(prompt: str) -> tuple[str, str]:
    """(prefix, suffix) of a prompt in the oracle's template (repo-level layout or not)."""
    start = prompt.rfind("<|fim_prefix|>")
    hole = prompt.find("<|fim_suffix|>", start)
    end = prompt.find("<|fim_middle|>", hole)
    if start < 0 or hole < 0 or end < 0:
        raise UnknownTask("not a fill-in-the-middle prompt in the Qwen2.5-Coder template")
    return prompt[start + len("<|fim_prefix|>") : hole], prompt[hole + len("<|fim_suffix|>") : end]


class Oracle:
    """``async with Oracle(tasks) as oracle:`` serves on ``oracle.url`` (127.0.0.1, a free
    port); ``served`` counts the completions it streamed, ``unknown`` the prompts it could not
    place."""

    def __init__(self, tasks: Iterable[OracleTask]) -> None:
        self.index = TaskIndex(tasks)
        self.url = ""
        self.served = 0
        self.unknown = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._tasks.add(me)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client hung up
        finally:
            self._tasks.discard(me)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to be closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
        }
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            await _respond(writer, 413, {"error": {"message": "body too large"}})
            return False
        body = await reader.readexactly(length)
        if method == "GET" and path.rstrip("/") == "/v1/models":
            await _respond(writer, 200, {"object": "list", "data": [{"id": MODEL}]})
            return True
        if method != "POST" or path.rstrip("/") != "/v1/completions":
            await _respond(writer, 404, {"error": {"message": f"no {method} {path}"}})
            return True
        request = json.loads(body)
        try:
            task, lead = self.index.find(*parse_fim(str(request["prompt"])))
        except UnknownTask as exc:
            self.unknown += 1
            await _respond(writer, 400, {"error": {"message": f"oracle: {exc}"}})
            return True
        await self._stream(writer, chunks(task, lead), int(request.get("max_tokens", 16)))
        return False

    async def _stream(self, writer: asyncio.StreamWriter, pieces: list[str], limit: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        sent = pieces[:limit]
        self.served += 1
        for number, piece in enumerate(sent, start=1):
            finish = None
            if number == len(sent):
                finish = "length" if len(pieces) > limit else "stop"
            await _event(writer, _chunk(piece, finish))
        usage = {"prompt_tokens": 0, "completion_tokens": len(sent), "total_tokens": len(sent)}
        await _event(writer, {**_chunk("", None), "choices": [], "usage": usage})
        await _event(writer, "[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _chunk(text: str, finish: str | None) -> dict[str, Any]:
    return {
        "id": "cmpl-oracle",
        "object": "text_completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


async def _event(writer: asyncio.StreamWriter, payload: dict[str, Any] | str) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    data = f"data: {text}\n\n".encode()
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _respond(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
