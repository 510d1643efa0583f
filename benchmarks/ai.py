"""AI gateway: what the hub's gateway adds in latency, how fast a cancel reaches the model,
and how much of a team's prompts vLLM's prefix cache can serve. Three sections, one run.

1. *Time to first token.* The same completion asked three ways, interleaved in one run against
   the same backend: *direct* (a streamed ``POST /v1/completions`` straight to the backend,
   with the very request body the gateway builds: ``LlmGateway.build_prompt`` and
   ``LlmGateway.request`` with the hub's config, room and cache salt), *hub* (a ``complete``
   request over a hub connection, ``HubClient``) and *LSP* (``textDocument/inlineCompletion``
   from a pytest-lsp client through a ``huddle lsp`` subprocess to the hub). Time to first
   token is from sending the request until the first non-empty text reaches the client: the
   first ``huddle/inlineCompletionPartial`` (LSP), ``complete/partial`` (hub), or the first chunk
   that makes the gateway's ``Shaper`` show something (direct). Before every trial the typed
   line is replaced through the LSP (and the bench waits until the hub has it), each trial with
   its own line (a fixed-width number, digits reversed so it differs from the previous trial's
   at the same token): every request finds the backend's prompt cache in the same state
   whichever path sends it. The order of the paths rotates through all six permutations.
   Backends: the embedded model (llama.cpp via xllamacpp serving SmolLM2-135M on the CPU,
   started by the bench exactly as the hub starts it and handed to the hub as its backend, so
   the direct client can reach it too) and a replay server that answers at once
   (``tests.support.replay.FakeBackend``), which leaves only the gateway's own cost.
2. *Cancellation.* A request streams from a replay backend that never finishes; once its first
   partial reached the client, the client cancels (``$/cancelRequest`` to ``huddle lsp``, or
   cancelling the ``HubClient`` request) and the latency runs until the backend sees the HTTP
   connection closed. The LSP path includes ``REUSE_GRACE_S``, the deliberate wait that lets a
   next keystroke adopt the stream.
3. *Prefix reuse.* A deterministic three-teammate session on a generated multi-file Python
   project: each teammate types into their own file in bursts and asks for a completion every
   few keystrokes. Every prompt is built as the hub builds it (context files: the room's other
   files by recency, ``LlmGateway.build_prompt``, Qwen2.5-Coder's repo-level FIM template and
   the default budget), tokenized by a real tokenizer (the embedded model's, llama.cpp's
   ``/tokenize``), and run through vLLM's automatic prefix caching rule: 16-token blocks, each
   block's hash chained on the previous one and on the room's cache salt, only full blocks,
   never the whole prompt (the last token is always computed), an unbounded cache. Compared
   with a naive layout: the same prompt text with the cursor's file first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Assoc, Doc, StickyIndex, Text

from benchmarks import Benchmark, BenchmarkError, Settings
from benchmarks.common import Check, ms, positive_int, target_fields, targets_lines, write_results
from benchmarks.fanout import background_busy_percent, process_cpu_seconds
from benchmarks.keystroke import environment, running_hub, wait_for
from huddle.collab import schema
from huddle.llm import (
    BackendClient,
    BackendConfig,
    CodeContext,
    EmbeddedConfig,
    EmbeddedEngine,
    LlmConfig,
    LlmGateway,
    SharedContext,
)
from huddle.llm.shaping import Shaper
from huddle.lsp.hub_client import HubClient
from huddle.protocol import HubMethod, HubNotification
from huddle.server.auth import TokenSigner

ROOM = "bench/ai"
FILE = "src/pricing.py"
REPLAY_MODEL = "Qwen/Qwen2.5-Coder-1.5B"  # what the replay backend claims: Qwen's FIM template
PATHS = ("direct", "hub", "lsp")
PATH_LABELS = {
    "direct": "direct to the backend",
    "hub": "hub (`complete` over a hub connection)",
    "lsp": "LSP (`huddle lsp` -> hub)",
}
ORDERS = tuple(itertools.permutations(PATHS))
PARTIAL = "huddle/inlineCompletionPartial"
HUB_PARTIAL = HubNotification.COMPLETE_PARTIAL
CACHE_SALT_PURPOSE = "llm-cache-salt"  # what the hub derives its cache-salt secret with
ADDED_P50_TARGET_MS = 5.0
CANCEL_P99_TARGET_MS = 50.0
REUSE_TARGET = 0.80
BLOCK = 16  # vLLM's default KV block size, in tokens


@dataclass(frozen=True, slots=True)
class AiOptions:
    trials: int = 40  # measured trials per path and backend
    warmup: int = 2  # rounds of all three paths before measuring
    cancels: int = 40  # per cancel path
    max_tokens: int = 4  # generated per completion (the hub's max_tokens): only the first counts
    files: int = 8
    prompts_per_user: int = 35
    sessions: int = 5  # prefix reuse: rooms, each its own project, teammates' files and cache
    seed: int = 7


FULL = AiOptions()
QUICK = AiOptions(trials=8, warmup=1, cancels=8, prompts_per_user=12, sessions=2)


# -- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank on the sorted values (as the other benchmarks): with 40 values, p99 is
    the largest."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def summary(values_ms: Sequence[float]) -> dict[str, float | None]:
    return {
        "n": len(values_ms),
        "p50": percentile(values_ms, 0.50),
        "p95": percentile(values_ms, 0.95),
        "p99": percentile(values_ms, 0.99),
        "max": max(values_ms) if values_ms else None,
        "mean": statistics.fmean(values_ms) if values_ms else None,
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# -- 1 and 2: the rig (hub, huddle lsp, hub client, direct client) -------------------------

HEAD = '''"""Prices of a shop's orders: discounts, taxes and rounding."""

from __future__ import annotations

import dataclasses
import decimal
import logging

log = logging.getLogger(__name__)

TAX_RATES = {"de": 0.19, "fr": 0.2, "nl": 0.21, "it": 0.22}


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: decimal.Decimal


@dataclasses.dataclass(frozen=True)
class Order:
    country: str
    lines: list[Line]
    coupon: str | None = None


def subtotal(order: Order) -> decimal.Decimal:
    """The order's value before discounts and taxes."""
    total = decimal.Decimal(0)
    for line in order.lines:
        total += line.unit_price * line.quantity
    return total


def discount(order: Order, value: decimal.Decimal) -> decimal.Decimal:
    """Coupons take 10 % off; orders above 200 another 5 %."""
    rate = decimal.Decimal("0.10") if order.coupon else decimal.Decimal(0)
    if value > 200:
        rate += decimal.Decimal("0.05")
    return (value * rate).quantize(decimal.Decimal("0.01"))


def total_price(order: Order) -> decimal.Decimal:
    value = subtotal(order)
'''
TAIL = """    log.debug("order total %s", value)
    return value


def describe(order: Order) -> str:
    return f"{len(order.lines)} lines to {order.country}"
"""


def typed_line(k: int) -> str:
    """The line being typed in trial ``k``, cursor at its end: code before the cursor (a
    one-line completion). The number's digits are reversed, so trial k's line differs from
    trial k-1's from the same character on: the same uncached tail in every trial."""
    return f"    value_{f'{k:04d}'[::-1]} = value - discount("


@dataclass(frozen=True, slots=True)
class Sample:
    path: str
    ttft_ms: float
    total_ms: float
    first_text: str
    partial: bool  # False: no partial came, the answer itself was the first text
    prompt_tokens: int | None = None
    body_matches: bool | None = None  # replay: the gateway sent exactly the direct body


class Hold:
    """A replay handler: streams one chunk, then holds the stream open until the client hangs
    up; records (perf_counter) when the connection closed."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def __call__(self, request: Any, conn: Any) -> None:
        from tests.support.replay import vllm_chunk

        await conn.start()
        await conn.event(vllm_chunk("slow"))
        await conn.wait_closed()
        self.closed.set_result(time.perf_counter())


def _editor_class() -> type[Any]:
    # Imported here so that ``python -m benchmarks`` loads without the test dependencies.
    from tests.support.lsp_editor import Editor

    class TimedEditor(Editor):
        """``Editor`` that timestamps the first ``huddle/inlineCompletionPartial`` it reads
        after ``first_partial`` is set."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.first_partial: asyncio.Future[tuple[float, str]] | None = None
            super().__init__(*args, **kwargs)

        def _recorder(self, method: str) -> Any:
            record = super()._recorder(method)
            if method != PARTIAL:
                return record

            def timed(params: Any) -> None:  # no server parameter: pygls passes params only
                at = time.perf_counter()
                waiting = self.first_partial
                if waiting is not None and not waiting.done():
                    waiting.set_result((at, str(params.text)))
                record(self.client, params)

            return timed

    return TimedEditor


def _sticky(doc: Doc[Any], path: str, offset: int) -> dict[str, Any]:
    text = schema.files(doc)[path]
    assert isinstance(text, Text)
    assoc = Assoc.AFTER if offset < len(text) else Assoc.BEFORE
    return dict(StickyIndex.new(text, offset, assoc).to_json())


@dataclass
class Rig:
    """One hub (``huddle serve``) with one backend, an editor on ``huddle lsp``, a hub client
    in the same room and a direct client to the backend; one file shared in the room."""

    name: str
    hub_url: str
    hub_pid: int
    editor: Any
    observer: HubClient
    direct_client: BackendClient
    builder: LlmGateway
    backend: BackendConfig
    config: LlmConfig
    recorded: Callable[[], dict[str, Any] | None]  # the last request the backend got, if known
    k: int = 0
    line: str = ""

    @property
    def text(self) -> str:
        return HEAD + self.line + "\n" + TAIL

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system, all threads) of the hub and of ``huddle lsp``."""
        return {
            "hub": process_cpu_seconds(self.hub_pid),
            "lsp": process_cpu_seconds(int(self.editor.client._server.pid)),
        }

    @property
    def offset(self) -> int:
        return len(HEAD) + len(self.line)

    async def next_line(self) -> None:
        """Replace the typed line through the LSP; wait until the hub has it."""
        self.k += 1
        old, self.line = self.line, typed_line(self.k)
        self.editor.replace(FILE, len(HEAD), len(HEAD) + len(old), self.line)
        expected = self.text

        def arrived() -> bool:
            return schema.file_texts(self.observer.doc).get(FILE) == expected

        await wait_for(arrived, what="the typed line to reach the hub", timeout=30, poll=0.002)

    def request_body(self) -> dict[str, Any]:
        """The request the gateway builds for the current text (one file in the room)."""
        text, offset = self.text, self.offset
        context = CodeContext(
            path=FILE, prefix=text[:offset], suffix=text[offset:], files=[], repo_name=ROOM
        )
        prompt = self.builder.build_prompt(self.backend, context)
        request = self.builder.request(
            ROOM,
            self.backend,
            prompt.text,
            purpose="completion",
            max_tokens=self.config.max_tokens,
            stop=prompt.stop,
        )
        return request.body()

    def _shaper(self) -> Shaper:
        text, offset = self.text, self.offset
        line_start = text.rfind("\n", 0, offset) + 1
        return Shaper(
            "auto",
            text[line_start:offset],
            text[offset:],
            max_lines=self.config.max_completion_lines,
        )

    async def measure(self, path: str) -> Sample:
        if path == "direct":
            return await self._direct()
        if path == "hub":
            return await self._hub()
        return await self._lsp()

    async def _direct(self) -> Sample:
        from huddle.llm import CompletionRequest

        body = self.request_body()  # built before the clock starts (the gateway's is timed)
        request = CompletionRequest.model_validate(body)
        shaper = self._shaper()
        first: float | None = None
        first_text = ""
        started = time.perf_counter()
        async with self.direct_client.stream(request) as stream:
            async for chunk in stream:
                done = shaper.feed(chunk.text)
                if first is None and shaper.visible:
                    first, first_text = time.perf_counter(), shaper.visible
                if done:
                    break
            usage = stream.usage
        ended = time.perf_counter()
        return Sample(
            "direct",
            1000 * ((first or ended) - started),
            1000 * (ended - started),
            first_text,
            first is not None,
            usage.prompt_tokens if usage else None,
        )

    async def _hub(self) -> Sample:
        loop = asyncio.get_running_loop()
        doc = self.observer.doc
        params = {
            "path": FILE,
            "cursor": _sticky(doc, FILE, self.offset),
            "state": base64.b64encode(doc.get_state()).decode(),
        }
        first: asyncio.Future[tuple[float, str]] = loop.create_future()

        def on_note(method: str, payload: dict[str, Any]) -> None:
            if method == HUB_PARTIAL and not first.done():
                first.set_result((time.perf_counter(), str(payload.get("text"))))

        started = time.perf_counter()
        result = await self.observer.request(HubMethod.COMPLETE, params, on_note)
        ended = time.perf_counter()
        at, text = first.result() if first.done() else (ended, str(result.get("text")))
        return Sample(
            "hub",
            1000 * (at - started),
            1000 * (ended - started),
            text,
            first.done(),
            result.get("prompt_tokens"),
            self._check_body(),
        )

    def _inline_params(self) -> Any:
        from lsprotocol import types as lsp

        return lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
            ),
            text_document=lsp.TextDocumentIdentifier(uri=self.editor.uri(FILE)),
            position=self.editor.position(FILE, self.offset),
        )

    def _send_inline(self, params: Any, msg_id: str) -> Awaitable[Any]:
        """pytest-lsp's ``send_request_async``: a coroutine that writes the request as soon as
        it runs, then waits for the answer."""
        from lsprotocol import types as lsp

        sent: Awaitable[Any] = self.editor.client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )
        return sent

    async def _lsp(self) -> Sample:
        from lsprotocol import types as lsp

        params = self._inline_params()
        first: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.editor.first_partial = first
        started = time.perf_counter()
        result = await self._send_inline(params, f"ttft-{self.k}")
        ended = time.perf_counter()
        self.editor.first_partial = None
        answer = ""
        if result is not None:
            items = result.items if isinstance(result, lsp.InlineCompletionList) else result
            answer = str(items[0].insert_text) if items else ""
        at, text = first.result() if first.done() else (ended, answer)
        return Sample(
            "lsp",
            1000 * (at - started),
            1000 * (ended - started),
            text,
            first.done(),
            None,
            self._check_body(),
        )

    def _check_body(self) -> bool | None:
        seen = self.recorded()
        return None if seen is None else seen == self.request_body()

    # -- cancellation (replay backend only) ----------------------------------------------

    async def cancel_trial(self, path: str, fake: Any) -> dict[str, float]:
        """Ask, wait for the first partial, cancel; the time until the backend saw the
        connection closed (and, LSP, until the editor had its answer)."""
        loop = asyncio.get_running_loop()
        hold = Hold()
        fake.handler = hold
        first: asyncio.Future[tuple[float, str]] = loop.create_future()
        if path == "lsp":
            msg_id = f"cancel-{self.k}"
            self.editor.first_partial = first
            answer = asyncio.ensure_future(self._send_inline(self._inline_params(), msg_id))
            await asyncio.wait_for(first, 10)
            cancelled = time.perf_counter()
            self.editor.cancel(msg_id)
        else:
            doc = self.observer.doc
            params = {
                "path": FILE,
                "cursor": _sticky(doc, FILE, self.offset),
                "state": base64.b64encode(doc.get_state()).decode(),
            }

            def on_note(method: str, payload: dict[str, Any]) -> None:
                if method == HUB_PARTIAL and not first.done():
                    first.set_result((time.perf_counter(), str(payload.get("text"))))

            answer = asyncio.ensure_future(
                self.observer.request(HubMethod.COMPLETE, params, on_note)
            )
            await asyncio.wait_for(first, 10)
            cancelled = time.perf_counter()
            answer.cancel()
        closed = await asyncio.wait_for(hold.closed, 10)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(answer, 10)
        answered = time.perf_counter()
        self.editor.first_partial = None
        return {
            "upstream_closed_ms": 1000 * (closed - cancelled),
            "answered_ms": 1000 * (answered - cancelled),
        }


def _hub_env(config: LlmConfig) -> dict[str, str]:
    llm = config.model_dump(mode="json")
    for dumped, backend in zip(llm["backends"], config.backends, strict=True):
        dumped["api_key"] = backend.api_key.get_secret_value() if backend.api_key else None
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HUDDLE_LOG_LEVEL": "warning",
        "HUDDLE_HUB__LLM": json.dumps(llm),
    }


async def hub_metrics(hub_url: str) -> dict[str, float]:
    """The hub's own first-token histogram (sum and count): from a request reaching the
    hub's model run to the first text from the backend."""
    url = hub_url.replace("ws://", "http://", 1) + "/metrics"
    async with httpx.AsyncClient(trust_env=False) as http:
        body = (await http.get(url, timeout=10)).text
    values: dict[str, float] = {}
    for line in body.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"huddle_ai_first_token_seconds_{key} "):
                values[key] = float(line.split()[-1])
    return values


@contextlib.asynccontextmanager
async def running_rig(
    name: str, config: LlmConfig, workdir: Path, recorded: Callable[[], dict[str, Any] | None]
) -> AsyncIterator[Rig]:
    from tests.support.peers import token

    data_dir = workdir / f"hub-{name}"
    async with running_hub(data_dir, _hub_env(config), ()) as (url, hub):
        secret = TokenSigner.for_data_dir(data_dir).derive(CACHE_SALT_PURPOSE)
        root = workdir / f"ws-{name}"
        (root / "src").mkdir(parents=True)
        options = {"hub": url, "room": ROOM, "user": "ann", "token": token(data_dir, ROOM, "ann")}
        editor_class = _editor_class()
        observer = HubClient(url, ROOM, token(data_dir, ROOM, "hubbench"))
        async with (
            editor_class(root, init_options=options, env={"HUDDLE_LOG_LEVEL": "warning"}) as ed,
            observer,
            BackendClient(config.backends[0], config) as direct,
        ):
            await asyncio.wait_for(observer.synced.wait(), 30)
            rig = Rig(
                name,
                url,
                hub.pid,
                ed,
                observer,
                direct,
                LlmGateway(config, secret),
                config.backends[0],
                config,
                recorded,
            )
            ed.open(FILE, rig.text)
            await wait_for(
                lambda: schema.file_texts(observer.doc).get(FILE) == rig.text,
                what=f"{FILE} to be shared ({name})",
                timeout=60,
                poll=0.02,
            )
            yield rig


@dataclass
class TtftResult:
    backend: str
    model: str
    template: str
    samples: dict[str, list[float]]
    totals: dict[str, list[float]]
    paired_added_ms: dict[str, list[float]]
    stats: dict[str, dict[str, float | None]]
    added_p50_ms: dict[str, float | None]
    paired_median_added_ms: dict[str, float | None]
    hub_first_token_mean_ms: float | None
    cpu_ms_per_request: dict[str, dict[str, float]]
    first_texts: dict[str, list[str]]
    first_text_per_trial: dict[str, list[str]]
    without_partial: dict[str, int]
    prompt_tokens: dict[str, list[int]]
    bodies_matched: int | None
    bodies_checked: int | None
    background_busy_percent: float


async def ttft(rig: Rig, options: AiOptions, log: Callable[[str], None]) -> TtftResult:
    background = await asyncio.to_thread(background_busy_percent)
    samples: dict[str, list[Sample]] = {p: [] for p in PATHS}
    cpu = {p: {"hub": 0.0, "lsp": 0.0} for p in PATHS}
    paired: dict[str, list[float]] = {"hub": [], "lsp": []}
    metrics_before: dict[str, float] = {}
    for round_ in range(options.warmup + options.trials):
        if round_ == options.warmup:
            metrics_before = await hub_metrics(rig.hub_url)
        got: dict[str, Sample] = {}
        for path in ORDERS[round_ % len(ORDERS)]:
            await rig.next_line()
            before = rig.cpu()
            got[path] = await rig.measure(path)
            after = rig.cpu()
            if round_ >= options.warmup:
                for proc, seconds in after.items():
                    cpu[path][proc] += seconds - before[proc]
        if round_ >= options.warmup:
            for path, sample in got.items():
                samples[path].append(sample)
            for path in paired:
                paired[path].append(got[path].ttft_ms - got["direct"].ttft_ms)
        if round_ == options.warmup - 1 or (round_ + 1) % 10 == 0:
            log(
                f"[ai] {rig.name}: round {round_ + 1}/{options.warmup + options.trials}: "
                + ", ".join(f"{p} {ms(s.ttft_ms)} ms" for p, s in got.items())
            )
    metrics_after = await hub_metrics(rig.hub_url)
    count = metrics_after.get("count", 0) - metrics_before.get("count", 0)
    hub_mean = (
        1000 * (metrics_after.get("sum", 0) - metrics_before.get("sum", 0)) / count
        if count > 0
        else None
    )
    ttfts = {p: [s.ttft_ms for s in v] for p, v in samples.items()}
    stats = {p: summary(v) for p, v in ttfts.items()}
    checked = [s.body_matches for p in ("hub", "lsp") for s in samples[p]]
    known = [c for c in checked if c is not None]
    return TtftResult(
        backend=rig.name,
        model=rig.backend.model,
        template=rig.builder.template(rig.backend).name,
        samples={p: [round(v, 3) for v in vs] for p, vs in ttfts.items()},
        totals={p: [round(s.total_ms, 3) for s in v] for p, v in samples.items()},
        paired_added_ms={p: [round(v, 3) for v in vs] for p, vs in paired.items()},
        stats=stats,
        added_p50_ms={p: _minus(stats[p]["p50"], stats["direct"]["p50"]) for p in paired},
        paired_median_added_ms={p: statistics.median(v) if v else None for p, v in paired.items()},
        hub_first_token_mean_ms=hub_mean,
        cpu_ms_per_request={
            p: {proc: round(1000 * v / max(1, options.trials), 2) for proc, v in c.items()}
            for p, c in cpu.items()
        },
        first_texts={p: sorted({s.first_text for s in v}) for p, v in samples.items()},
        first_text_per_trial={p: [s.first_text for s in v] for p, v in samples.items()},
        without_partial={p: sum(not s.partial for s in v) for p, v in samples.items()},
        prompt_tokens={
            p: sorted({s.prompt_tokens for s in v if s.prompt_tokens is not None})
            for p, v in samples.items()
        },
        bodies_matched=sum(known) if known else None,
        bodies_checked=len(known) if known else None,
        background_busy_percent=background,
    )


@dataclass
class CancelResult:
    stats: dict[str, dict[str, float | None]]
    answered: dict[str, dict[str, float | None]]
    samples: dict[str, list[float]]
    grace_ms: float


async def cancellation(
    rig: Rig, fake: Any, options: AiOptions, log: Callable[[str], None]
) -> CancelResult:
    from huddle.lsp.completion import REUSE_GRACE_S

    closed: dict[str, list[float]] = {"lsp": [], "hub": []}
    answered: dict[str, list[float]] = {"lsp": [], "hub": []}
    warmup = 2
    for i in range(warmup + options.cancels):
        for path in ("lsp", "hub") if i % 2 == 0 else ("hub", "lsp"):
            await rig.next_line()
            got = await rig.cancel_trial(path, fake)
            if i >= warmup:
                closed[path].append(got["upstream_closed_ms"])
                answered[path].append(got["answered_ms"])
    log(
        "[ai] cancel: "
        + ", ".join(f"{p} p50 {ms(percentile(v, 0.5))} ms" for p, v in closed.items())
    )
    return CancelResult(
        stats={p: summary(v) for p, v in closed.items()},
        answered={p: summary(v) for p, v in answered.items()},
        samples={p: [round(x, 3) for x in v] for p, v in closed.items()},
        grace_ms=1000 * REUSE_GRACE_S,
    )


# -- 3: prefix reuse on a team's session --------------------------------------------------

PROJECT = (
    "shop/__init__.py",
    "shop/api.py",
    "shop/billing.py",
    "shop/catalog.py",
    "shop/models.py",
    "shop/storage.py",
    "shop/utils.py",
    "tests/test_billing.py",
    "tests/test_catalog.py",
    "shop/cli.py",
)
USERS = ("ann", "bob", "cy")
NOUNS = (
    "order",
    "invoice",
    "customer",
    "product",
    "payment",
    "discount",
    "cart",
    "shipment",
    "refund",
    "coupon",
    "account",
    "review",
)
VERBS = ("load", "save", "find", "update", "delete", "build", "parse", "check", "apply", "merge")
ATTRS = ("id", "name", "total", "status", "created_at", "owner", "price", "quantity", "currency")
STATEMENTS = (
    "{x} = {noun}.{attr}",
    "{x} = {verb}_{noun}({noun}, {y})",
    "if {x} is None:\n    return {y}",
    "for item in {noun}.items:\n    {x} += item.{attr}",
    'log.debug("{verb} %s", {noun}.{attr})',
    "{x} = round({x} * {num}, 2)",
    "{noun}.{attr} = {x}",
    'if not {noun}.{attr}:\n    raise ValueError("{noun} without {attr}")',
    "{y} = [{noun}.{attr} for {noun} in {noun}s if {noun}.{attr2}]",
)


def _statement(rng: random.Random, one_line: bool = False) -> list[str]:
    pool = [s for s in STATEMENTS if "\n" not in s] if one_line else list(STATEMENTS)
    noun = rng.choice(NOUNS)
    attr, attr2 = rng.sample(ATTRS, 2)
    text = rng.choice(pool).format(
        x=rng.choice(("value", "result", "amount", "count", "current")),
        y=rng.choice(("limit", "default", "options", "matches")),
        noun=noun,
        attr=attr,
        attr2=attr2,
        verb=rng.choice(VERBS),
        num=rng.choice(("1.19", "0.9", "100", "3")),
    )
    return text.split("\n")


def _module(rng: random.Random, path: str, lines: int) -> str:
    name = path.rsplit("/", 1)[-1].removesuffix(".py")
    out = [
        f'"""The shop\'s {name.strip("_").replace("_", " ")}."""',
        "",
        "from __future__ import annotations",
        "",
        "import dataclasses",
        "import logging",
        "",
        "log = logging.getLogger(__name__)",
        "",
    ]
    while len(out) < lines:
        noun = rng.choice(NOUNS)
        if rng.random() < 0.25:
            out += ["", "@dataclasses.dataclass", f"class {noun.title()}Record:"]
            out += [f"    {a}: str = ''" for a in rng.sample(ATTRS, rng.randint(2, 5))]
            continue
        verb, arg = rng.choice(VERBS), rng.choice(("limit", "default", "options"))
        out += ["", "", f"def {verb}_{noun}({noun}, {arg}=None):"]
        out.append(f'    """{verb.title()} the {noun}."""')
        for _ in range(rng.randint(2, 6)):
            out += ["    " + line for line in _statement(rng)]
        out.append(f"    return {noun}")
    return "\n".join(out[:lines]).rstrip() + "\n"


def project(rng: random.Random, count: int) -> dict[str, str]:
    return {p: _module(rng, p, rng.randint(40, 150)) for p in sorted(PROJECT[:count])}


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    user: str
    path: str
    offset: int
    text: str = ""  # inserted; empty: ask for a completion at ``offset``


def user_session(
    rng: random.Random, user: str, path: str, source: str, prompts: int
) -> list[Event]:
    """One teammate: bursts of typing new lines into function bodies of their own file, a
    completion asked every 3-6 keystrokes (and always at the end of a burst)."""
    events: list[Event] = []
    text = source
    now = rng.uniform(0.0, 2.0)
    asked = 0
    while asked < prompts:
        lines = text.split("\n")
        bodies = [i for i, line in enumerate(lines) if line.startswith("    ") and line.strip()]
        at = rng.choice(bodies)
        offset = sum(len(line) + 1 for line in lines[: at + 1]) - 1  # the end of that line
        indent = " " * (len(lines[at]) - len(lines[at].lstrip()))
        typed = "".join("\n" + indent + line for line in _statement(rng, one_line=True))
        if rng.random() < 0.5:
            typed += "".join("\n" + indent + line for line in _statement(rng, one_line=True))
        every = rng.randint(3, 6)
        for n, char in enumerate(typed, 1):
            now += rng.uniform(0.06, 0.22)
            events.append(Event(now, user, path, offset, char))
            text = text[:offset] + char + text[offset:]
            offset += 1
            if n % every == 0 or n == len(typed):
                events.append(Event(now + 0.001, user, path, offset))
                asked += 1
                if asked == prompts:
                    break
        now += rng.uniform(2.0, 6.0)
    return events


@dataclass(frozen=True, slots=True)
class TeamPrompt:
    user: str
    path: str
    gateway: str
    naive: str


def team_prompts(
    files: dict[str, str], events: list[Event], builder: LlmGateway, backend: BackendConfig
) -> list[TeamPrompt]:
    """Replay the merged session over the room's files and build every prompt as the hub
    does (its ``_context``: the other files by recency, then ``build_prompt``)."""
    state = dict(files)
    edited = {p: 0.0 for p in sorted(files)}  # the project was shared at the session's start
    shared = SharedContext(builder.config.context_refresh_s, builder.config.max_context_files)
    out: list[TeamPrompt] = []
    for event in events:
        if event.text:
            body = state[event.path]
            state[event.path] = body[: event.offset] + event.text + body[event.offset :]
            edited[event.path] = event.time
            continue

        def recent() -> list[tuple[str, str]]:
            return [(p, state[p]) for p in sorted(edited, key=lambda p: edited[p], reverse=True)]

        content = state[event.path]
        context = CodeContext(
            path=event.path,
            prefix=content[: event.offset],
            suffix=content[event.offset :],
            files=shared.files(event.time, event.path, recent),
            repo_name=ROOM,
        )
        prompt = builder.build_prompt(backend, context).text
        out.append(TeamPrompt(event.user, event.path, prompt, naive_layout(prompt)))
    return out


FILE_SEP = "<|file_sep|>"
FIM_MIDDLE = "<|fim_middle|>"


def naive_layout(prompt: str) -> str:
    """The same prompt with the cursor's file first: the repository line, the current file
    (prefix, cursor, suffix), then the other files in the same order, then the point where
    the model writes. Same content and budget as the gateway's: only the order differs."""
    head, *entries = prompt.split(FILE_SEP)
    if len(entries) < 2:
        return prompt  # no other files: nothing to reorder
    *others, current = entries
    if not current.endswith(FIM_MIDDLE):
        raise BenchmarkError("the gateway's prompt does not end with the FIM middle token")
    body = current.removesuffix(FIM_MIDDLE)
    if not body.endswith("\n"):
        body += "\n"
    return head + FILE_SEP + body + "".join(FILE_SEP + e for e in others) + FIM_MIDDLE


def block_hashes(tokens: Sequence[int], salt: str) -> list[bytes]:
    """vLLM's chained block hashes: each full block hashed with its parent's hash; the cache
    salt is mixed into the first block."""
    parent = hashlib.sha256(salt.encode()).digest()
    hashes = []
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        block = array("I", tokens[start : start + BLOCK]).tobytes()
        parent = hashlib.sha256(parent + block).digest()
        hashes.append(parent)
    return hashes


@dataclass
class CacheTally:
    tokens: int = 0
    hits: int = 0
    blocks: set[bytes] = field(default_factory=set)

    def add(self, tokens: Sequence[int], salt: str) -> int:
        """Serve one prompt; returns its cached tokens. At most ``len - 1`` tokens are served
        from the cache (vLLM always computes the last one), so a prompt that is all full
        blocks and all cached still computes its last block."""
        hashes = block_hashes(tokens, salt)
        usable = (len(tokens) - 1) // BLOCK
        hit = 0
        for digest in hashes[:usable]:
            if digest not in self.blocks:
                break
            hit += 1
        self.blocks.update(hashes)
        self.tokens += len(tokens)
        self.hits += hit * BLOCK
        return hit * BLOCK

    @property
    def rate(self) -> float:
        return self.hits / self.tokens if self.tokens else 0.0


LAYOUTS = ("gateway", "naive")


@dataclass
class SessionResult:
    seed: int
    files: dict[str, int]  # path -> lines
    assignment: dict[str, str]  # user -> file
    prompts: int
    prompts_per_user: dict[str, int]
    keystrokes: int
    session_s: float
    layouts: dict[str, dict[str, Any]]


@dataclass
class ReuseResult:
    tokenizer: str
    template: str
    budget_tokens: int
    sessions: list[SessionResult]
    pooled: dict[str, dict[str, Any]]  # layout -> totals over the sessions


async def one_session(
    tokenizer: BackendClient,
    seed: int,
    options: AiOptions,
    builder: LlmGateway,
    backend: BackendConfig,
    log: Callable[[str], None],
) -> SessionResult:
    """One room: a project, three teammates, their prompts through a cache of the room's."""
    rng = random.Random(seed)
    files = project(rng, options.files)
    assignment = dict(zip(USERS, rng.sample(sorted(files), len(USERS)), strict=True))
    events = sorted(
        itertools.chain.from_iterable(
            user_session(rng, u, p, files[p], options.prompts_per_user)
            for u, p in assignment.items()
        ),
        key=lambda e: (e.time, e.user),
    )
    prompts = team_prompts(files, events, builder, backend)
    room_salt = builder.cache_salt(ROOM)
    layouts: dict[str, dict[str, Any]] = {}
    for layout in LAYOUTS:
        team, solo = CacheTally(), CacheTally()
        per_user: dict[str, CacheTally] = {u: CacheTally() for u in USERS}
        lengths = []
        for prompt in prompts:
            text = prompt.gateway if layout == "gateway" else prompt.naive
            tokens = await tokenizer.tokenize(text)
            lengths.append(len(tokens))
            hit = team.add(tokens, room_salt)
            per_user[prompt.user].tokens += len(tokens)
            per_user[prompt.user].hits += hit
            solo.add(tokens, f"{room_salt}/{prompt.user}")  # each teammate a salt of their own
        layouts[layout] = {
            "prompt_tokens": team.tokens,
            "cached_tokens": team.hits,
            "hit_rate": round(team.rate, 4),
            "hit_rate_per_user": {u: round(t.rate, 4) for u, t in per_user.items()},
            "cached_tokens_own_cache": solo.hits,
            "hit_rate_own_cache": round(solo.rate, 4),
            "distinct_blocks": len(team.blocks),
            "mean_prompt_tokens": round(statistics.fmean(lengths), 1),
            "max_prompt_tokens": max(lengths),
        }
    log(
        f"[ai] prefix reuse, seed {seed}: {len(prompts)} prompts; cached: "
        + ", ".join(f"{k} {100 * v['hit_rate']:.1f} %" for k, v in layouts.items())
    )
    return SessionResult(
        seed=seed,
        files={p: t.count("\n") for p, t in files.items()},
        assignment=assignment,
        prompts=len(prompts),
        prompts_per_user={u: sum(p.user == u for p in prompts) for u in USERS},
        keystrokes=sum(1 for e in events if e.text),
        session_s=round(max(e.time for e in events), 1),
        layouts=layouts,
    )


async def prefix_reuse(
    tokenizer: BackendClient, tokenizer_name: str, options: AiOptions, log: Callable[[str], None]
) -> ReuseResult:
    config = LlmConfig()  # the hub's defaults: the prompt budget, line quantum, context files
    backend = BackendConfig(url="http://vllm.invalid:8000", model="Qwen/Qwen2.5-Coder-7B")
    builder = LlmGateway(config, b"bench-secret")
    sessions = [
        await one_session(tokenizer, seed, options, builder, backend, log)
        for seed in range(options.seed, options.seed + options.sessions)
    ]
    pooled: dict[str, dict[str, Any]] = {}
    for layout in LAYOUTS:
        tokens = sum(x.layouts[layout]["prompt_tokens"] for x in sessions)
        cached = sum(x.layouts[layout]["cached_tokens"] for x in sessions)
        own = sum(x.layouts[layout]["cached_tokens_own_cache"] for x in sessions)
        pooled[layout] = {
            "prompts": sum(x.prompts for x in sessions),
            "prompt_tokens": tokens,
            "cached_tokens": cached,
            "hit_rate": round(cached / tokens, 4) if tokens else 0.0,
            "hit_rate_own_cache": round(own / tokens, 4) if tokens else 0.0,
        }
    return ReuseResult(
        tokenizer=tokenizer_name,
        template=builder.template(backend).name,
        budget_tokens=config.context_tokens,
        sessions=sessions,
        pooled=pooled,
    )


# -- the run -------------------------------------------------------------------------------


@dataclass
class AiRun:
    ttft: list[TtftResult]
    cancel: CancelResult
    reuse: ReuseResult
    embedded_startup_s: float


async def run_all(options: AiOptions, log: Callable[[str], None]) -> AiRun:
    from tests.support.replay import FakeBackend, streaming

    with tempfile.TemporaryDirectory(prefix="huddle-ai-") as tmp:
        workdir = Path(tmp)
        log("[ai] starting the embedded model (llama.cpp, SmolLM2-135M) ...")
        async with EmbeddedEngine(EmbeddedConfig(verbosity=1)) as engine:  # errors only
            base = LlmConfig(temperature=0.0, max_tokens=options.max_tokens)
            embedded = engine.backend(base)  # the backend the hub would make of it
            config = base.model_copy(update={"backends": [embedded]})
            results: list[TtftResult] = []
            async with running_rig("embedded", config, workdir, lambda: None) as rig:
                results.append(await ttft(rig, options, log))

            async with FakeBackend(streaming("discount_for(order, value)", "\n")) as fake:
                replay = BackendConfig(url=fake.url, model=REPLAY_MODEL)
                config = base.model_copy(update={"backends": [replay]})

                def last_body() -> dict[str, Any] | None:
                    return fake.requests[-1].json() if fake.requests else None

                async with running_rig("replay", config, workdir, last_body) as rig:
                    results.append(await ttft(rig, options, log))
                    cancel = await cancellation(rig, fake, options, log)

            async with BackendClient(embedded, base) as tokenizer:
                reuse = await prefix_reuse(tokenizer, f"{embedded.model} (llama.cpp)", options, log)
        return AiRun(results, cancel, reuse, round(engine.startup_seconds, 2))


# -- verdict and report --------------------------------------------------------------------


def evaluate(run: AiRun) -> list[Check]:
    checks: list[Check] = []
    for result in run.ttft:
        added = result.added_p50_ms["lsp"]
        checks.append(
            Check(
                f"{result.backend}: the gateway (LSP -> hub -> backend) adds under "
                f"{ADDED_P50_TARGET_MS:g} ms to time to first token at p50",
                added is not None and added < ADDED_P50_TARGET_MS,
                f"{ms(result.stats['lsp']['p50'])} vs {ms(result.stats['direct']['p50'])} ms "
                f"direct: {ms(added)} ms added (paired median "
                f"{ms(result.paired_median_added_ms['lsp'])} ms)",
            )
        )
        if result.bodies_checked:
            checks.append(
                Check(
                    f"{result.backend}: the gateway sent exactly the direct request",
                    result.bodies_matched == result.bodies_checked,
                    f"{result.bodies_matched}/{result.bodies_checked} bodies identical",
                )
            )
    p99 = run.cancel.stats["lsp"]["p99"]
    checks.append(
        Check(
            f"cancellation: `$/cancelRequest` to upstream closed, p99 < "
            f"{CANCEL_P99_TARGET_MS:g} ms",
            p99 is not None and p99 < CANCEL_P99_TARGET_MS,
            f"p99 {ms(p99)} ms, p50 {ms(run.cancel.stats['lsp']['p50'])} ms",
        )
    )
    pooled = run.reuse.pooled
    rate = pooled["gateway"]["hit_rate"]
    checks.append(
        Check(
            f"prefix reuse on the team workload >= {100 * REUSE_TARGET:g} % of prompt tokens",
            rate >= REUSE_TARGET,
            f"{100 * rate:.1f} % over {len(run.reuse.sessions)} sessions, "
            f"{pooled['gateway']['prompts']} prompts (naive layout: "
            f"{100 * pooled['naive']['hit_rate']:.1f} %)",
        )
    )
    return checks


def markdown(run: AiRun, checks: list[Check], options: AiOptions, env: dict[str, Any]) -> str:
    pkgs = env["packages"]
    lines = [
        "# AI gateway benchmark",
        "",
        f"Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x {env['cpu_model']}, "
        f"Python {env['python']}, pygls {pkgs['pygls']}, pycrdt {pkgs['pycrdt']}, xllamacpp "
        f"{pkgs.get('xllamacpp', '?')}. Hub: a `huddle serve` subprocess; `huddle lsp`: a "
        "subprocess driven by a pytest-lsp client; everything on loopback. Embedded model: "
        f"SmolLM2-135M-Instruct Q4_1 on llama.cpp (xllamacpp, started in "
        f"{run.embedded_startup_s:g} s), its default settings (1 thread, 2 slots), run in this "
        "process as the hub would run it and given to the hub as its backend, so that the "
        "direct client reaches the very same server; hub "
        f"settings: the defaults but temperature 0 and max_tokens {options.max_tokens} "
        "(only the first token matters here).",
        "",
        "## 1. Time to first token: gateway versus straight to the backend",
        "",
        "Each round asks one completion each way, in a rotating order (all six orders), "
        f"{options.trials} measured rounds after {options.warmup} warmup rounds. "
        "*direct*: a streamed `POST /v1/completions` with the request body the gateway "
        "builds (same prompt, stop strings, temperature, cache salt; built before the clock "
        "starts, so the gateway's own prompt building counts as its overhead); *hub*: a "
        "`complete` request over a hub connection (`HubClient`); *LSP*: "
        "`textDocument/inlineCompletion` to `huddle lsp`, which asks the hub. Time to first "
        "token: request sent until the client reads the first non-empty text (the first "
        "partial notification; direct: the first chunk that makes the gateway's `Shaper` "
        "show text). Every trial types its own line first (through the LSP, waiting until "
        "the hub has it), so each prompt differs from the one before at the same token and "
        "the backend's prompt cache is in the same state for every path. *added*: p50 minus "
        "direct's p50; *paired*: the median over rounds of (path - direct) within a round.",
        "",
        "| backend | path | n | p50 ms | p95 ms | p99 ms | max ms | mean ms | added p50 ms "
        "| paired ms |",
        "| --- | --- |" + " ---: |" * 8,
    ]
    for result in run.ttft:
        for path in PATHS:
            s = result.stats[path]
            added = result.added_p50_ms.get(path)
            paired = result.paired_median_added_ms.get(path)
            lines.append(
                f"| {result.backend} | {PATH_LABELS[path]} | {s['n']} | {ms(s['p50'])} "
                f"| {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} | {ms(s['mean'])} "
                f"| {ms(added) if path != 'direct' else ''} "
                f"| {ms(paired) if path != 'direct' else ''} |"
            )
    lines.append("")
    for result in run.ttft:
        notes = [
            f"template `{result.template}`, model `{result.model}`",
            "hub's own first-token time (from its model run starting to the first text, "
            f"mean over the hub and LSP trials, `/metrics`): {ms(result.hub_first_token_mean_ms)}"
            " ms",
            "first text shown (each trial's own line: the answer may differ with it): "
            + "; ".join(f"{p} {', '.join(map(repr, t))}" for p, t in result.first_texts.items()),
        ]
        if any(result.without_partial.values()):
            notes.append(
                "trials with no partial (the answer was the first text): "
                + ", ".join(f"{p} {n}" for p, n in result.without_partial.items())
            )
        if any(result.prompt_tokens.values()):
            notes.append(
                "prompt tokens the backend reported: "
                + ", ".join(f"{p} {v}" for p, v in result.prompt_tokens.items() if v)
            )
        if result.bodies_checked:
            notes.append(
                f"request bodies the gateway sent identical to the direct one: "
                f"{result.bodies_matched}/{result.bodies_checked}"
            )
        notes.append(
            "CPU per request, hub / `huddle lsp` (user + system, /proc, 10 ms ticks summed "
            "over the trials): "
            + ", ".join(
                f"{p} {c['hub']:.1f} / {c['lsp']:.1f} ms"
                for p, c in result.cpu_ms_per_request.items()
            )
        )
        notes.append(f"machine busy before the section: {result.background_busy_percent:g} %")
        lines.append(f"- *{result.backend}*: " + "; ".join(notes) + ".")
    c = run.cancel
    lines += [
        "",
        "## 2. Cancellation: client cancel to upstream stream closed",
        "",
        f"{options.cancels} trials per path (alternating, after 2 warmup pairs) against a "
        "replay backend that streams one chunk and then holds the stream open. Once the first "
        "partial reached the client, the client cancels; measured until the backend reads "
        "EOF on that HTTP connection (same clock, this process). The LSP path includes the "
        f"deliberate {c.grace_ms:g} ms `REUSE_GRACE_S` (a request that follows the cancel, as "
        "VS Code sends on every keystroke, may adopt the stream). *client answered*: until "
        "the client had its (cancelled) answer.",
        "",
        "| path | n | p50 ms | p95 ms | p99 ms | max ms | mean ms | client answered p50 ms |",
        "| --- |" + " ---: |" * 7,
    ]
    for path, label in (
        ("lsp", "`$/cancelRequest` to `huddle lsp`"),
        ("hub", "`HubClient` request cancelled"),
    ):
        s = c.stats[path]
        lines.append(
            f"| {label} | {s['n']} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} "
            f"| {ms(s['max'])} | {ms(s['mean'])} | {ms(c.answered[path]['p50'])} |"
        )
    r = run.reuse
    first = r.sessions[0]
    lines += [
        "",
        "## 3. Prefix reuse: a team's prompts under vLLM's prefix cache",
        "",
        f"{len(r.sessions)} sessions (seeds {r.sessions[0].seed}-{r.sessions[-1].seed}), each "
        f"its own room: a generated project of {options.files} Python files (40-150 lines), "
        "three teammates each on a different file (drawn by the seed), each typing new lines "
        "into function bodies in bursts and asking for a completion every 3-6 keystrokes, "
        f"{options.prompts_per_user} prompts each (seed {first.seed}: {first.keystrokes} "
        f"keystrokes over {first.session_s:g} s of simulated time). Every file was shared at "
        "the session's start, so all are the room's recently edited files (the hub's context "
        f"files). Prompts built by `LlmGateway.build_prompt` with template `{r.template}` and "
        f"the hub's default budget ({r.budget_tokens} tokens at 4 characters a token, half for "
        f"other files, cuts every 32 lines), tokenized by {r.tokenizer}'s tokenizer (its "
        "`/tokenize`; Qwen's own would split differently). Cache: vLLM's rule, 16-token "
        "blocks, chained hashes with the room's cache salt (all three teammates share it), "
        "only full blocks, never the last token, unbounded (*blocks* is the size it "
        "reaches). *naive*: the same prompt text reordered with the cursor's file first "
        "(repository line, current file with the cursor, then the other files in the same "
        "order, then the FIM middle token). *own cache*: each teammate with a salt of their "
        "own.",
        "",
        "| seed | files edited (ann / bob / cy) | prompts | tokens / prompt | gateway cached % "
        "| naive cached % | gateway, own cache % | naive, own cache % | blocks (gateway) |",
        "| ---: | --- |" + " ---: |" * 7,
    ]
    for x in r.sessions:
        g, n = x.layouts["gateway"], x.layouts["naive"]
        lines.append(
            f"| {x.seed} | {' / '.join(f'`{x.assignment[u]}`' for u in USERS)} | {x.prompts} "
            f"| {g['mean_prompt_tokens']:,.0f} | {100 * g['hit_rate']:.1f} "
            f"| {100 * n['hit_rate']:.1f} | {100 * g['hit_rate_own_cache']:.1f} "
            f"| {100 * n['hit_rate_own_cache']:.1f} | {g['distinct_blocks']:,} |"
        )
    g, n = r.pooled["gateway"], r.pooled["naive"]
    lines += [
        f"| all | | {g['prompts']} | {g['prompt_tokens'] / max(1, g['prompts']):,.0f} "
        f"| **{100 * g['hit_rate']:.1f}** | **{100 * n['hit_rate']:.1f}** "
        f"| {100 * g['hit_rate_own_cache']:.1f} | {100 * n['hit_rate_own_cache']:.1f} | |",
        "",
        "## Targets",
        "",
        *targets_lines(checks),
    ]
    return "\n".join(lines)


# -- entry point ---------------------------------------------------------------------------


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--ai-trials",
        type=positive_int,
        metavar="N",
        help=f"measured rounds per backend (default {FULL.trials}, quick {QUICK.trials})",
    )
    group.add_argument(
        "--ai-cancels",
        type=positive_int,
        metavar="N",
        help=f"cancellations per path (default {FULL.cancels}, quick {QUICK.cancels})",
    )
    group.add_argument(
        "--ai-prompts",
        type=positive_int,
        metavar="N",
        help="completion prompts per teammate in the prefix-reuse session "
        f"(default {FULL.prompts_per_user}, quick {QUICK.prompts_per_user})",
    )
    group.add_argument(
        "--ai-sessions",
        type=positive_int,
        metavar="N",
        help=f"prefix-reuse sessions (default {FULL.sessions}, quick {QUICK.sessions})",
    )
    group.add_argument("--ai-seed", type=int, metavar="N", help=f"default {FULL.seed}")


def options_from(settings: Settings, args: argparse.Namespace) -> AiOptions:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for flag, attr in (
        ("trials", "trials"),
        ("cancels", "cancels"),
        ("prompts", "prompts_per_user"),
        ("sessions", "sessions"),
        ("seed", "seed"),
    ):
        value = getattr(args, f"ai_{flag}", None)
        if value is not None:
            overrides[attr] = value
    return replace(options, **overrides)


def run(settings: Settings, args: argparse.Namespace) -> str:
    from importlib.metadata import PackageNotFoundError, version

    options = options_from(settings, args)
    env = environment()
    try:
        env["packages"]["xllamacpp"] = version("xllamacpp")
    except PackageNotFoundError:
        env["packages"]["xllamacpp"] = "?"

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    result = asyncio.run(run_all(options, log))
    checks = evaluate(result)
    text = markdown(result, checks, options, env)
    stem = "ai-quick" if settings.quick else "ai"
    report = {
        "benchmark": "ai",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": env,
        "duration_s": round(time.monotonic() - started, 1),
        "embedded_startup_s": result.embedded_startup_s,
        "ttft": [asdict(r) for r in result.ttft],
        "cancel": asdict(result.cancel),
        "prefix_reuse": asdict(result.reuse),
        **target_fields(checks),
    }
    write_results(settings.results_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    name="ai",
    help="AI gateway: time to first token vs direct, cancellation latency, prefix-cache reuse",
    add_arguments=add_arguments,
    run=run,
)
