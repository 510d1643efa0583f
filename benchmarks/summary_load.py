"""Completions while a summary streams: does a long summary for one teammate slow another
teammate's completions in the same room?

A hub (in-process, the embedded llama.cpp model: the default a laptop runs) holds one room.
Ann asks for completions one after another, each at a fresh spot (so llama.cpp's prompt cache
cannot answer from an earlier request), and measures time to first token: from sending the
``complete`` request over her hub connection to the first ``complete/partial`` notification.
The trials alternate between blocks with an idle hub and blocks during which Bob has a long
``summarize`` streaming (restarted whenever it ends), same room, same run. Each loaded trial is
asked just after the summary streamed more text, so it always meets a summary being generated
(the summary steps aside for completions and resumes a moment after the last one).

Target (issue 5): loaded p50 within 20% of idle p50.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pycrdt import Assoc, StickyIndex, Text

from benchmarks import Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    cpu_model,
    ms,
    targets_lines,
    write_results,
)
from huddle.collab import schema
from huddle.llm import LlmConfig
from huddle.lsp.hub_client import HubClient
from huddle.protocol import HubMethod, HubNotification, RpcError
from huddle.server.auth import Role, TokenSigner
from huddle.server.config import HubConfig
from huddle.server.hub import Hub

ROOM = "bench/summary-load"
RATIO_TARGET = 1.2
SUMMARY_TOKENS = 256
COMPLETION_TOKENS = 8
LONG_FILE = "".join(
    f"def handler_{i}(request, context):\n"
    f"    value = context.lookup('key_{i}')\n"
    f"    return respond(request, value * {i})\n\n"
    for i in range(20)  # one model call: it fits the embedded model's summary budget
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _client(hub: Hub, signer: TokenSigner, user: str) -> HubClient:
    token = signer.issue(ROOM, user, Role.EDIT, timedelta(hours=1))
    client = HubClient(hub.url, ROOM, token)
    await client.__aenter__()
    await asyncio.wait_for(client.synced.wait(), 10)
    return client


async def _first_token(ann: HubClient, trial: int) -> float:
    """Seconds from asking to the first streamed text, for a completion at a fresh spot."""
    path = f"trial_{trial}.py"
    line = f"result_{trial} = compute_{trial}("
    await ann.request(HubMethod.CREATE_FILE, {"path": path, "content": f"{line}\n"})
    text = schema.files(ann.doc).get(path)
    deadline = time.monotonic() + 10
    while not isinstance(text, Text):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{path} never reached Ann's replica")
        await asyncio.sleep(0.01)
        text = schema.files(ann.doc).get(path)
    cursor = dict(StickyIndex.new(text, len(line), Assoc.AFTER).to_json())
    params = {
        "path": path,
        "cursor": cursor,
        "state": base64.b64encode(ann.doc.get_state()).decode(),
        "scope": "line",
        "max_tokens": COMPLETION_TOKENS,
    }
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    started = loop.time()

    def on_partial(method: str, payload: dict[str, Any]) -> None:
        if not first.done():
            first.set_result(loop.time())

    answer = asyncio.ensure_future(ann.request(HubMethod.COMPLETE, params, on_partial))
    await asyncio.wait({first, answer}, return_when=asyncio.FIRST_COMPLETED)
    if first.done():
        elapsed = first.result() - started
    else:  # nothing visible streamed (e.g. only whitespace): the answer is the first token
        await answer
        elapsed = loop.time() - started
    await answer
    return float(elapsed)


async def _summaries(bob: HubClient, streaming: asyncio.Event) -> None:
    """Keep a long summary streaming until cancelled."""
    while True:

        def on_note(method: str, payload: dict[str, Any]) -> None:
            if method == HubNotification.SUMMARY_PARTIAL:
                streaming.set()

        try:
            await bob.request(HubMethod.SUMMARIZE, {"kind": "file", "path": "long.py"}, on_note)
        except RpcError as exc:
            raise BenchmarkError(f"the summary failed: {exc.message}") from None
        streaming.clear()


async def measure(blocks: int, per_block: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        data_dir = Path(tmp)
        llm = LlmConfig(summary_max_tokens=SUMMARY_TOKENS)
        async with Hub(HubConfig(port=0, data_dir=data_dir, llm=llm)) as hub:
            await hub.ai.start()
            signer = TokenSigner.for_data_dir(data_dir)
            ann = await _client(hub, signer, "ann")
            bob = await _client(hub, signer, "bob")
            try:
                await bob.request(HubMethod.CREATE_FILE, {"path": "long.py", "content": LONG_FILE})
                await _first_token(ann, -1)  # warm-up, not counted
                idle: list[float] = []
                loaded: list[float] = []
                trial = 0
                for _ in range(blocks):
                    for _ in range(per_block):
                        idle.append(await _first_token(ann, trial))
                        trial += 1
                    streaming = asyncio.Event()
                    summary = asyncio.ensure_future(_summaries(bob, streaming))
                    try:
                        for _ in range(per_block):
                            # asked right after the summary streamed more text: it is being
                            # generated (a summary waiting to resume after the last completion
                            # would make this an idle trial)
                            streaming.clear()
                            await asyncio.wait_for(streaming.wait(), 60)
                            loaded.append(await _first_token(ann, trial))
                            trial += 1
                    finally:
                        summary.cancel()
                        await asyncio.gather(summary, return_exceptions=True)
            finally:
                await ann.__aexit__(None, None, None)
                await bob.__aexit__(None, None, None)
    return {"idle_s": idle, "loaded_s": loaded}


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": 1000 * statistics.median(values),
        "p90_ms": 1000 * _percentile(values, 0.9),
        "max_ms": 1000 * max(values),
    }


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--summary-load-blocks", type=int, default=4, help="idle/loaded block pairs")
    group.add_argument("--summary-load-trials", type=int, default=5, help="completions a block")


def run(settings: Settings, args: argparse.Namespace) -> str:
    blocks = 2 if settings.quick else args.summary_load_blocks
    per_block = 2 if settings.quick else args.summary_load_trials
    raw = asyncio.run(measure(blocks, per_block))
    idle, loaded = _stats(raw["idle_s"]), _stats(raw["loaded_s"])
    ratio = loaded["p50_ms"] / idle["p50_ms"]
    checks = [
        Check(
            f"completion time to first token while a summary streams within "
            f"{RATIO_TARGET - 1:.0%} of idle (p50)",
            ratio <= RATIO_TARGET,
            f"{ms(loaded['p50_ms'])} vs {ms(idle['p50_ms'])} ms, x{ratio:.2f}",
        )
    ]
    report = {
        "benchmark": "summary_load",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": cpu_model(),
        "backend": "embedded llama.cpp (xllamacpp), SmolLM2-135M-Instruct Q4_1, 2 slots",
        "summary_max_tokens": SUMMARY_TOKENS,
        "completion_max_tokens": COMPLETION_TOKENS,
        "idle": idle,
        "loaded": loaded,
        "ratio_p50": ratio,
        "raw": raw,
        "targets": [c.__dict__ for c in checks],
    }
    lines = [
        "## Completions while a summary streams (same room)",
        "",
        f"Machine: {cpu_model()}. Backend: {report['backend']}. Time to first token of a "
        f"completion through the hub, at a fresh spot each time; idle and loaded blocks "
        f"alternate ({blocks} x {per_block} each).",
        "",
        "| hub | n | p50 ms | p90 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in (("idle", idle), ("summary streaming", loaded)):
        lines.append(
            f"| {name} | {row['n']} | {ms(row['p50_ms'])} | {ms(row['p90_ms'])} | "
            f"{ms(row['max_ms'])} |"
        )
    lines += ["", *targets_lines(checks)]
    text = "\n".join(lines)
    stem = "summary_load-quick" if settings.quick else "summary_load"
    write_results(settings.results_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    "summary_load",
    "completion time to first token while a teammate's summary streams",
    add_arguments,
    run,
)
