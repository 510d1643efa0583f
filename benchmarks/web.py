"""The browser client: page load, bundle size, and keystroke from the page to a peer editor.

A ``huddle serve`` hub runs as a subprocess on loopback; one headless chromium (Debian's, driven
by ``tests/web/driver.mjs`` through playwright-core, as the tests drive it) loads the room's
page from its join link. A ``huddle lsp`` under the scripted LSP editor
(``tests/support/lsp_editor.py``, behaving like VS Code) shares the file first.

- *page load to first editable file*: from the start of the navigation (the browser's own
  clock, ``performance.now()``) until the file's CodeMirror editor is in the page and editable
  (the page opens it once its websocket has synced the room), seen by a MutationObserver the
  driver installs before the page's scripts run. *Cold*: each load in a fresh browser context
  (no cache, no cookies); *warm*: loads again in one context, so the content-hashed script and
  style come from the cache (the page itself is ``no-store``). The browser process is already
  running in both.
- *bundle*: the script and stylesheet the hub serves, raw and gzipped (level 9, as the hub
  compresses them).
- *keystroke to peer*: the page types (playwright's keyboard: real key events) at a steady rate
  at the end of a 10 KB file; latency runs from the key's ``keydown`` in the page to the moment
  the peer editor's client reads the ``workspace/applyEdit`` carrying that character. The page
  stamps keys with ``performance.timeOrigin + performance.now()`` and this process stamps
  arrivals with its own clock; the offset between the two is measured through the driver (the
  sample with the shortest round trip, before and after typing) and reported with its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    command_output,
    ms,
    run_facts,
    target_fields,
    targets_lines,
    write_results,
)
from benchmarks.keystroke import (
    Tracker,
    _editor_class,
    latency_summary,
    running_hub,
    sample_text,
    status_of,
    wait_for,
)

ROOM = "bench/web"
FILE = "src/module.py"
INTERACTIVE_TARGET_MS = 1000.0
BUNDLE_TARGET_BYTES = 300 * 1024
# What the page types: no leading blanks, so Enter adds no indentation the peer did not see typed.
TYPED = "total = compute(value, offset)  # keep the running sum\n"
SIZE = 10_000


@dataclass(frozen=True, slots=True)
class WebOptions:
    cold_loads: int = 20
    warm_loads: int = 20
    keystrokes: int = 300
    warmup: int = 20
    rate: float = 25.0


FULL = WebOptions()
QUICK = WebOptions(cold_loads=5, warm_loads=5, keystrokes=100, warmup=10)


def bundle() -> dict[str, Any]:
    """The built bundle's files as the hub serves them: raw and gzipped bytes."""
    from huddle.server.web import STATIC

    try:
        manifest = json.loads((STATIC / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"the web client is not built ({exc}): run ./dev setup") from None
    files = {}
    for kind in ("script", "style"):
        body = (STATIC / manifest[kind]).read_bytes()
        files[kind] = {
            "name": manifest[kind],
            "bytes": len(body),
            "gzip_bytes": len(gzip.compress(body, 9, mtime=0)),
        }
    return {
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
        "gzip_bytes": sum(f["gzip_bytes"] for f in files.values()),
    }


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None, "mean": None}
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(0.95 * (len(ordered) - 1))))
    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[rank], 1),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


async def _clock_offset(browser: Any, page: str, samples: int = 9) -> tuple[float, float]:
    """The page's epoch clock minus ours (seconds), and its bound (half the shortest round trip
    through the driver)."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        reply = await browser.request("clock", page=page)
        t1 = time.time()
        half = (t1 - t0) / 2
        if best is None or half < best[1]:
            best = (reply["now"] / 1000 - (t0 + half), half)
    assert best is not None
    return best


async def measure(options: WebOptions, log: Callable[[str], None]) -> dict[str, Any]:
    from tests.support.browser import Browser, missing
    from tests.support.peers import token

    lacking = missing()
    if lacking:
        raise BenchmarkError("the web benchmark needs: " + "; ".join(lacking))
    from huddle.protocol import web_url

    editor_class = _editor_class()
    total = options.warmup + options.keystrokes
    typed = (TYPED * (total // len(TYPED) + 1))[:total]
    tracker = Tracker(typed)
    text = sample_text(SIZE)
    with tempfile.TemporaryDirectory(prefix="huddle-web-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        root = workdir / "ws"
        (root / "src").mkdir(parents=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HUDDLE_LOG_LEVEL": "warning"}
        async with running_hub(data_dir, env, ()) as (hub_url, _hub):
            options_ = {
                "hub": hub_url,
                "room": ROOM,
                "user": "ed",
                "token": token(data_dir, ROOM, "ed"),
            }
            lsp_env = {"HUDDLE_LOG_LEVEL": "warning"}
            async with (
                editor_class(
                    root, init_options=options_, env=lsp_env, on_edit=tracker.on_edit
                ) as ed,
                Browser() as browser,
            ):
                ed.open(FILE, text)

                async def shared() -> bool:
                    status = await status_of(ed)
                    return FILE in status.get("shared", []) and status.get("state") == "connected"

                await wait_for(shared, what="the editor's file to be shared", timeout=60, poll=0.05)
                link = web_url(hub_url, ROOM, token(data_dir, ROOM, "pam"))

                log(f"[web] {options.cold_loads} cold loads, {options.warm_loads} warm ...")
                cold = [
                    await browser.request("load", page="load", url=link, fresh=True)
                    for _ in range(options.cold_loads)
                ]
                await browser.request("load", page="load", url=link, fresh=True)
                warm = [
                    await browser.request("load", page="load", url=link, fresh=False)
                    for _ in range(options.warm_loads)
                ]
                await browser.request("close", page="load")

                log(f"[web] {options.keystrokes} keystrokes at {options.rate:g}/s ...")
                await browser.request("load", page="typist", url=link, fresh=True)
                await browser.request("focusEnd", page="typist")
                await browser.request("keys", page="typist")  # the clicks' keys are not typing
                before = await _clock_offset(browser, "typist")
                delay_ms = 1000 / options.rate
                started = time.monotonic()
                await browser.request(
                    "type",
                    timeout=total / options.rate * 3 + 30,
                    page="typist",
                    text=typed,
                    delay=delay_ms,
                )
                typing_s = time.monotonic() - started
                await wait_for(
                    lambda: tracker.delivered(total), what="the last keystroke", timeout=30
                )
                after = await _clock_offset(browser, "typist")
                keys = (await browser.request("keys", page="typist"))["keys"]
                shown = await browser.state("typist")
    if len(keys) != total:
        raise BenchmarkError(f"the page saw {len(keys)} keys down, {total} typed")
    # Into this process's perf_counter clock, where the tracker stamps arrivals.
    offset = (before[0] + after[0]) / 2
    to_perf = time.time() - time.perf_counter()
    tracker.sent = [k / 1000 - offset - to_perf for k in keys]
    latencies = tracker.latencies(options.warmup, total)
    return {
        "cold": [_round(c) for c in cold],
        "warm": [_round(w) for w in warm],
        "keystroke": {
            "keystrokes": options.keystrokes,
            "warmup": options.warmup,
            "rate_per_s": options.rate,
            "sent_per_s": round(total / typing_s, 1),
            "file_bytes": len(text.encode()),
            "delivered": len(tracker.arrived) - options.warmup,
            "mismatched": tracker.mismatched,
            "unexpected_edits": tracker.unexpected,
            "apply_edits": tracker.apply_edits,
            "latency_ms": latency_summary(latencies),
            "clock_offset_ms": round(1000 * offset, 3),
            "clock_offset_drift_ms": round(1000 * abs(after[0] - before[0]), 3),
            "clock_bound_ms": round(1000 * max(before[1], after[1]), 3),
            "page_errors": shown["errors"],
        },
    }


def _round(load: dict[str, Any]) -> dict[str, Any]:
    """A load's timings (the driver's reply, less its envelope)."""
    return {
        k: round(v, 1) if isinstance(v, float) else v
        for k, v in load.items()
        if k not in ("id", "ok")
    }


def evaluate(sizes: dict[str, Any], results: dict[str, Any]) -> list[Check]:
    cold = _summary([c["interactive_ms"] for c in results["cold"]])
    warm = _summary([w["interactive_ms"] for w in results["warm"]])
    typing = results["keystroke"]
    return [
        Check(
            f"page interactive (cold, p50) < {INTERACTIVE_TARGET_MS:.0f} ms",
            cold["p50"] is not None and cold["p50"] < INTERACTIVE_TARGET_MS,
            f"{ms(cold['p50'])} ms, p95 {ms(cold['p95'])} ms",
        ),
        Check(
            f"page interactive (warm, p50) < {INTERACTIVE_TARGET_MS:.0f} ms",
            warm["p50"] is not None and warm["p50"] < INTERACTIVE_TARGET_MS,
            f"{ms(warm['p50'])} ms, p95 {ms(warm['p95'])} ms",
        ),
        Check(
            f"bundle < {BUNDLE_TARGET_BYTES // 1024} KB gzipped",
            sizes["gzip_bytes"] < BUNDLE_TARGET_BYTES,
            f"{sizes['gzip_bytes'] / 1024:.0f} KB",
        ),
        Check(
            "every keystroke reaches the peer editor, as typed",
            typing["delivered"] == typing["keystrokes"]
            and typing["mismatched"] == 0
            and typing["unexpected_edits"] == 0,
            f"{typing['delivered']} of {typing['keystrokes']}, {typing['mismatched']} mismatched",
        ),
    ]


def markdown(report: dict[str, Any], checks: list[Check]) -> str:
    cold = report["page_load"]["cold"]
    warm = report["page_load"]["warm"]
    typing = report["keystroke"]
    lat = typing["latency_ms"]
    b = report["bundle"]
    env = report["environment"]
    lines = [
        f"# Web client{' (quick)' if report['quick'] else ''}",
        "",
        f"{env['date']}, commit `{env['commit']}`, {env['cpus']} x {env['cpu_model']}, "
        f"{env['chromium']}, headless. Method: `benchmarks/web.py`.",
        "",
        "| measure | p50 | p95 | max | n |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| page load to first editable file, cold (ms) | {ms(cold['p50'])} | "
        f"{ms(cold['p95'])} | {ms(cold['max'])} | {cold['n']} |",
        f"| page load to first editable file, warm (ms) | {ms(warm['p50'])} | "
        f"{ms(warm['p95'])} | {ms(warm['max'])} | {warm['n']} |",
        "",
        f"Bundle: {b['gzip_bytes'] / 1024:.0f} KB gzipped ({b['bytes'] / 1024:.0f} KB raw: "
        f"script {b['files']['script']['gzip_bytes'] / 1024:.0f} KB, style "
        f"{b['files']['style']['gzip_bytes'] / 1024:.1f} KB gzipped). A cold load transfers "
        f"{report['page_load']['cold_transfer_bytes'] / 1024:.0f} KB.",
        "",
        f"Keystroke from the page to a peer editor (`huddle lsp` under the scripted editor), "
        f"{typing['keystrokes']} keys at {typing['rate_per_s']:g}/s into a "
        f"{typing['file_bytes'] / 1000:.0f} KB file: p50 {ms(lat['p50'])} ms, p99 "
        f"{ms(lat['p99'])} ms, max {ms(lat['max'])} ms (clocks matched within "
        f"{typing['clock_bound_ms']:.2f} ms).",
        "",
        *targets_lines(checks),
    ]
    return "\n".join(lines)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--web-loads", type=int, metavar="N", help="cold and warm loads each")
    group.add_argument("--web-keystrokes", type=int, metavar="N", help="keys the page types")


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = QUICK if settings.quick else FULL
    loads = getattr(args, "web_loads", None)
    keystrokes = getattr(args, "web_keystrokes", None)
    if loads is not None:
        options = WebOptions(**{**asdict(options), "cold_loads": loads, "warm_loads": loads})
    if keystrokes is not None:
        options = WebOptions(**{**asdict(options), "keystrokes": keystrokes})

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    sizes = bundle()
    results = asyncio.run(measure(options, log))
    checks = evaluate(sizes, results)
    cold_loads = results["cold"]
    report = {
        "benchmark": "web",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": {**run_facts(), "chromium": command_output("chromium", "--version")},
        "bundle": sizes,
        "page_load": {
            "cold": _summary([c["interactive_ms"] for c in cold_loads]),
            "warm": _summary([w["interactive_ms"] for w in results["warm"]]),
            "cold_transfer_bytes": statistics.median(c["transfer_bytes"] for c in cold_loads),
            "loads": {"cold": cold_loads, "warm": results["warm"]},
        },
        "keystroke": results["keystroke"],
        **target_fields(checks),
    }
    text = markdown(report, checks)
    write_results(settings.results_dir, "web-quick" if settings.quick else "web", report, text)
    return text


BENCHMARK = Benchmark(
    name="web",
    help="the browser client: page load cold and warm, bundle size, keystroke to a peer editor",
    add_arguments=add_arguments,
    run=run,
)
