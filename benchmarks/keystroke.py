"""Keystroke to peer: two ``huddle lsp`` processes and a ``huddle serve`` hub on loopback.

Editor A and editor B (scripted LSP clients, ``tests/support/lsp_editor.py``, both behaving like
VS Code) open the same file in one room, each through its own ``huddle lsp`` subprocess; the hub
runs as a subprocess too. A types one character at a time at a steady rate into the middle of
the file; B answers every ``workspace/applyEdit`` as an editor does (and echoes it as
``didChange``).

- *latency*: from the moment A's ``didChange`` is written to A's server's stdin until B's client
  reads the ``workspace/applyEdit`` that carries that character. The characters B receives are
  matched to A's keystrokes in order (and checked: they must be exactly what A typed).
- *CPU per keystroke*: user + system CPU time (``/proc/PID/stat``) of A's and B's ``huddle lsp``
  and of the hub over the measured keystrokes, divided by their number; once per file size
  (10 KB and 1 MB by default), each in a fresh room with fresh language servers.

The file is real source: the standard library's modules, in name order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import pstats
import signal
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    background_warning,
    huddle_env,
    ms,
    run_facts,
    target_fields,
    targets_lines,
    write_results,
)
from benchmarks.fanout import (
    background_busy_percent,
    free_port,
    machine_cpu_ticks,
    process_cpu_seconds,
    process_memory_mb,
)

ROOM = "bench/keystroke"
FILE = "src/module.py"
P50_TARGET_MS = 15.0
P99_TARGET_MS = 40.0
CPU_RATIO_TARGET = 2.0
SLOWEST = 10  # the slowest keystrokes kept in the JSON, with when they were typed
# What A types: code, line breaks included; cycled.
TYPED = "        total = compute(value, offset)  # keep the running sum\n"
PROCESSES = ("lsp_a", "lsp_b", "hub")
LABELS = {"lsp_a": "A's huddle lsp", "lsp_b": "B's huddle lsp", "hub": "hub"}


@dataclass(frozen=True, slots=True)
class KeystrokeOptions:
    sizes: tuple[int, ...] = (10_000, 1_000_000)
    keystrokes: int = 500
    rate: float = 25.0
    warmup: int = 25
    idle: float = 2.0
    grace: float = 10.0


FULL = KeystrokeOptions()
QUICK = KeystrokeOptions(keystrokes=150, warmup=10, idle=1.0)


# -- the text ------------------------------------------------------------------------------


def sample_text(size: int) -> str:
    """Real source code of about ``size`` UTF-8 bytes, cut at a line break: the standard
    library's top-level modules in name order (fixed for a Python version, unlike ours)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts: list[bytes] = []
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        data = path.read_bytes()
        parts.append(data)
        total += len(data)
        if total > size:
            break
    if not parts:
        raise BenchmarkError(f"no Python sources in {stdlib} to build the sample text from")
    corpus = b"".join(parts)
    data = corpus * (size // len(corpus) + 1)
    cut = data.rfind(b"\n", 0, size) + 1 or size
    return data[:cut].decode("utf-8", errors="ignore")


def typing_offset(text: str) -> int:
    """The start of the line in the middle of ``text`` (code points)."""
    middle = len(text) // 2
    return text.rfind("\n", 0, middle) + 1


# -- the editors ---------------------------------------------------------------------------


def _editor_class() -> type[Any]:
    # Imported here so that ``python -m benchmarks`` loads without the test dependencies.
    from lsprotocol import types as lsp

    from huddle.collab.positions import LineIndex
    from huddle.collab.positions import Position as CPosition
    from tests.support.lsp_editor import Editor

    class BenchEditor(Editor):
        """``Editor`` with an incremental line index per buffer: the stock one rebuilds it
        for every keystroke and every applied edit, O(file) in this (shared) process, which
        would show up as latency on the 1 MB file. Timestamps every ``applyEdit`` on arrival.
        """

        def __init__(
            self,
            *args: Any,
            on_edit: Callable[[float, list[str], int], None] | None = None,
            command_prefix: tuple[str, ...] = (),
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.indexes: dict[str, LineIndex] = {}
            self.on_edit = on_edit
            self.command_prefix = command_prefix
            start_io = self.client.start_io

            async def start(cmd: str, *argv: str, **kw: Any) -> None:
                await start_io(cmd, *self.command_prefix, *argv, **kw)

            self.client.start_io = start  # type: ignore[method-assign]

        @property
        def pid(self) -> int:
            server = self.client._server
            if server is None:
                raise BenchmarkError("the language server is not running")
            return int(server.pid)

        def open(self, path: str, text: str) -> str:
            uri: str = super().open(path, text)
            self.indexes[uri] = LineIndex(text)
            self.buffers[uri].text = ""  # the index holds the text
            return uri

        def text(self, path: str) -> str:
            return str(self.indexes[self.uri(path)].text)

        def replace(self, path: str, start: int, end: int, new_text: str) -> None:
            uri = self.uri(path)
            buf, index = self.buffers[uri], self.indexes[uri]
            lsp_range = lsp.Range(
                start=self._lsp_pos(index.position_at(start, self.encoding)),
                end=self._lsp_pos(index.position_at(end, self.encoding)),
            )
            index.replace(start, end, new_text)
            self._changed(
                buf, [lsp.TextDocumentContentChangePartial(range=lsp_range, text=new_text)]
            )

        def _on_apply_edit(
            self, params: lsp.ApplyWorkspaceEditParams
        ) -> lsp.ApplyWorkspaceEditResult:
            arrived = time.perf_counter()
            self._edit_arrived.set()
            inserted: list[str] = []
            unexpected = 0
            for change in params.edit.document_changes or []:
                if not isinstance(change, lsp.TextDocumentEdit):
                    return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="not text")
                buf = self.buffers.get(change.text_document.uri)
                if buf is None:
                    return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="not open")
                if change.text_document.version != buf.version:
                    self.rejected += 1
                    return lsp.ApplyWorkspaceEditResult(
                        applied=False, failure_reason="stale version"
                    )
                index = self.indexes[buf.uri]
                spans = []
                for edit in change.edits:
                    assert isinstance(edit, lsp.TextEdit)
                    start = index.offset_at(
                        CPosition(edit.range.start.line, edit.range.start.character),
                        self.encoding,
                    )
                    end = index.offset_at(
                        CPosition(edit.range.end.line, edit.range.end.character), self.encoding
                    )
                    spans.append((start, end, edit.new_text, edit.range))
                    if start == end:
                        inserted.append(edit.new_text)
                    else:
                        unexpected += 1
                spans.sort(key=lambda s: s[0], reverse=True)
                for start, end, new_text, _ in spans:
                    index.replace(start, end, new_text)
                self.applied += 1
                self._changed(
                    buf,
                    [lsp.TextDocumentContentChangePartial(range=r, text=t) for _, _, t, r in spans],
                )
            if self.on_edit is not None:
                self.on_edit(arrived, inserted, unexpected)
            return lsp.ApplyWorkspaceEditResult(applied=True)

    return BenchEditor


async def status_of(editor: Any) -> dict[str, Any]:
    from lsprotocol import types as lsp

    result = await editor.client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="huddle.status")
    )
    return dict(result)


async def wait_for(check: Callable[[], Any], what: str, timeout: float, poll: float = 0.01) -> None:
    """Re-check ``check`` (sync or async) until it holds; a bound, not a guess."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


# -- the hub -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_hub(
    data_dir: Path, env: dict[str, str], prefix: tuple[str, ...]
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "hub.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *prefix,
            "-m",
            "huddle.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if b"huddle hub on" not in line:
                raise BenchmarkError(
                    f"the hub did not start: {line!r}\n{log_path.read_text(errors='replace')}"
                )
            yield f"ws://127.0.0.1:{port}", proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


# -- one case ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseResult:
    nominal_bytes: int
    size_bytes: int
    lines: int
    keystrokes: int
    rate_per_s: float
    sent_per_s: float
    typist_lag_ms: float
    delivered: int
    missing: int
    mismatched: int
    unexpected_edits: int
    apply_edits: int
    rejected_edits: int
    latency_ms: dict[str, float | None]
    cpu_us_per_keystroke: dict[str, float]
    idle_cpu_percent: dict[str, float]
    rss_mb: dict[str, float]
    bench_cpu_percent: float
    machine_busy_percent: float
    background_busy_percent: float
    window_s: float
    setup_s: float
    converged: bool
    slowest: list[tuple[float, float]] = field(repr=False)  # (sent at s, latency ms)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def latency_summary(values_s: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50": _percentile(ms, 0.50),
        "p90": _percentile(ms, 0.90),
        "p99": _percentile(ms, 0.99),
        "max": max(ms) if ms else None,
        "mean": statistics.fmean(ms) if ms else None,
    }


class Tracker:
    """Matches the characters B receives to A's keystrokes, in order."""

    def __init__(self, typed: str) -> None:
        self.typed = typed
        self.sent: list[float] = []
        self.arrived: list[float] = []
        self.mismatched = 0
        self.unexpected = 0
        self.apply_edits = 0

    def on_sent(self, at: float) -> None:
        self.sent.append(at)

    def on_edit(self, at: float, inserted: list[str], unexpected: int) -> None:
        self.apply_edits += 1
        self.unexpected += unexpected
        for chunk in inserted:
            for char in chunk:
                k = len(self.arrived)
                if k >= len(self.typed) or char != self.typed[k]:
                    self.mismatched += 1
                    continue
                self.arrived.append(at)

    def delivered(self, upto: int) -> bool:
        return len(self.arrived) >= upto

    def latencies(self, first: int, last: int) -> list[float]:
        end = min(last, len(self.arrived))
        return [self.arrived[k] - self.sent[k] for k in range(first, end)]


@dataclass(frozen=True, slots=True)
class Procs:
    pids: dict[str, int]

    def cpu(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}


async def type_at_rate(
    editor: Any, tracker: Tracker, offset: int, first: int, count: int, rate: float
) -> tuple[float, float]:
    """Type ``tracker.typed[first:first+count]`` at ``rate`` per second.

    Returns the rate achieved and the typist's worst lag behind its schedule (seconds): a
    lag of more than a few milliseconds means this process did not get the CPU in time.
    """
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    start = loop.time()
    lag = 0.0
    for i in range(count):
        k = first + i
        due = start + i * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the typist's schedule
        lag = max(lag, loop.time() - due)
        tracker.on_sent(time.perf_counter())
        editor.type(FILE, offset + k, tracker.typed[k])
    elapsed = loop.time() - start
    return (count / elapsed if elapsed > 0 else float("inf")), lag


async def run_case(
    size: int,
    options: KeystrokeOptions,
    hub_url: str,
    hub_pid: int,
    data_dir: Path,
    workdir: Path,
    profile_dir: Path | None,
) -> CaseResult:
    from tests.support.peers import token

    editor_class = _editor_class()
    text = sample_text(size)
    offset = typing_offset(text)
    total = options.warmup + options.keystrokes
    typed = (TYPED * (total // len(TYPED) + 1))[:total]
    tracker = Tracker(typed)
    room = f"{ROOM}-{size}"
    root = workdir / f"ws-{size}"
    (root / "src").mkdir(parents=True)
    env = {"HUDDLE_LOG_LEVEL": "warning"}

    def editor(user: str, **kw: Any) -> Any:
        prefix: tuple[str, ...] = ()
        if profile_dir is not None:
            prefix = ("-m", "cProfile", "-o", str(profile_dir / f"lsp-{user}-{size}.prof"))
        options_ = {
            "hub": hub_url,
            "room": room,
            "user": user,
            "token": token(data_dir, room, user),
        }
        return editor_class(root, init_options=options_, env=env, command_prefix=prefix, **kw)

    background = await asyncio.to_thread(background_busy_percent)
    setup_started = time.monotonic()
    async with editor("ann") as ann, editor("bob", on_edit=tracker.on_edit) as bob:
        ann.open(FILE, text)
        await wait_for(lambda: _shared(ann), what="A's buffer to be shared", timeout=60, poll=0.05)
        bob.open(FILE, text)
        await wait_for(lambda: _shared(bob), what="B's buffer to be shared", timeout=60, poll=0.05)
        if options.warmup:
            await type_at_rate(ann, tracker, offset, 0, options.warmup, options.rate)
            await wait_for(
                lambda: tracker.delivered(options.warmup),
                what="the warmup keystrokes to reach B",
                timeout=options.grace + 30,
            )
        setup_s = time.monotonic() - setup_started
        procs = Procs({"lsp_a": ann.pid, "lsp_b": bob.pid, "hub": hub_pid, "bench": os.getpid()})

        idle_before, idle_t0 = procs.cpu(), time.monotonic()
        await asyncio.sleep(options.idle)  # an idle window: the processes' background cost
        idle_after, idle_t1 = procs.cpu(), time.monotonic()
        idle_cpu = {
            name: round(100 * (idle_after[name] - idle_before[name]) / (idle_t1 - idle_t0), 1)
            for name in PROCESSES
        }

        busy0, machine0 = machine_cpu_ticks()
        edits_before = tracker.apply_edits
        before, t0 = procs.cpu(), time.monotonic()
        sent_rate, lag = await type_at_rate(
            ann, tracker, offset, options.warmup, options.keystrokes, options.rate
        )
        with contextlib.suppress(BenchmarkError):
            await wait_for(
                lambda: tracker.delivered(total), what="the last keystroke", timeout=options.grace
            )
        after, t1 = procs.cpu(), time.monotonic()
        busy1, machine1 = machine_cpu_ticks()
        rss = {name: round(process_memory_mb(procs.pids[name])[0], 1) for name in PROCESSES}
        expected = ann.text(FILE)
        converged = True
        try:
            await wait_for(
                lambda: bob.text(FILE) == expected, what="A and B to converge", timeout=10
            )
        except BenchmarkError:
            converged = False
        rejected = bob.rejected + ann.rejected

    window = t1 - t0
    n = options.keystrokes
    cpu_us = {name: round(1e6 * (after[name] - before[name]) / n, 1) for name in PROCESSES}
    return CaseResult(
        nominal_bytes=size,
        size_bytes=len(text.encode("utf-8")),
        lines=text.count("\n"),
        keystrokes=n,
        rate_per_s=options.rate,
        sent_per_s=round(sent_rate, 2),
        typist_lag_ms=round(1000 * lag, 1),
        delivered=min(len(tracker.arrived), total) - options.warmup,
        missing=max(0, total - len(tracker.arrived)),
        mismatched=tracker.mismatched,
        unexpected_edits=tracker.unexpected,
        apply_edits=tracker.apply_edits - edits_before,
        rejected_edits=rejected,
        latency_ms=latency_summary(tracker.latencies(options.warmup, total)),
        cpu_us_per_keystroke=cpu_us,
        idle_cpu_percent=idle_cpu,
        rss_mb=rss,
        bench_cpu_percent=round(100 * (after["bench"] - before["bench"]) / window, 1),
        machine_busy_percent=round(100 * (busy1 - busy0) / max(1, machine1 - machine0), 1),
        background_busy_percent=background,
        window_s=round(window, 2),
        setup_s=round(setup_s, 2),
        converged=converged,
        slowest=sorted(
            (
                (round(tracker.sent[k] - tracker.sent[options.warmup], 3), round(1000 * lat, 1))
                for k, lat in enumerate(tracker.latencies(options.warmup, total), options.warmup)
            ),
            key=lambda sample: -sample[1],
        )[:SLOWEST],
    )


async def _shared(editor: Any) -> bool:
    status = await status_of(editor)
    return FILE in status.get("shared", []) and status.get("state") == "connected"


async def run_all(
    options: KeystrokeOptions, profile_dir: Path | None, log: Callable[[str], None]
) -> list[CaseResult]:
    cases: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="huddle-keystroke-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HUDDLE_LOG_LEVEL": "warning"}
        prefix: tuple[str, ...] = ()
        if profile_dir is not None:
            prefix = ("-m", "cProfile", "-o", str(profile_dir / "hub.prof"))
        async with running_hub(data_dir, env, prefix) as (url, hub):
            for size in options.sizes:
                log(f"[keystroke] {size:,} bytes: {options.keystrokes} keystrokes ...")
                case = await run_case(size, options, url, hub.pid, data_dir, workdir, profile_dir)
                lat = case.latency_ms
                log(
                    f"[keystroke]   p50 {ms(lat['p50'])} ms, p99 {ms(lat['p99'])} ms, "
                    f"max {ms(lat['max'])} ms, {case.missing} missing; CPU/keystroke "
                    + ", ".join(f"{k} {v:,.0f} us" for k, v in case.cpu_us_per_keystroke.items())
                )
                cases.append(case)
    return cases


# -- verdict -------------------------------------------------------------------------------


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} KB"
    return f"{n} B"


def ratios(cases: list[CaseResult]) -> dict[str, float | None]:
    """CPU per keystroke of the largest file over the smallest, per process."""
    if len(cases) < 2:
        return {}
    small = min(cases, key=lambda c: c.size_bytes)
    large = max(cases, key=lambda c: c.size_bytes)
    result: dict[str, float | None] = {}
    for name in PROCESSES:
        base = small.cpu_us_per_keystroke[name]
        result[name] = round(large.cpu_us_per_keystroke[name] / base, 2) if base > 0 else None
    return result


def evaluate(cases: list[CaseResult]) -> list[Check]:
    checks: list[Check] = []
    for case in cases:
        size = _size(case.nominal_bytes)
        lat = case.latency_ms
        p50, p99 = lat.get("p50"), lat.get("p99")
        checks.append(
            Check(
                f"{size}: p50 < {P50_TARGET_MS:g} ms",
                p50 is not None and p50 < P50_TARGET_MS,
                f"{ms(p50)} ms",
            )
        )
        checks.append(
            Check(
                f"{size}: p99 < {P99_TARGET_MS:g} ms",
                p99 is not None and p99 < P99_TARGET_MS,
                f"{ms(p99)} ms",
            )
        )
        checks.append(
            Check(
                f"{size}: every keystroke reached B, in order, once",
                case.missing == 0 and case.mismatched == 0 and case.converged,
                f"{case.missing} missing, {case.mismatched} mismatched, "
                f"{'converged' if case.converged else 'NOT converged'}",
            )
        )
    if len(cases) >= 2:
        small = min(cases, key=lambda c: c.size_bytes)
        large = max(cases, key=lambda c: c.size_bytes)
        for name, ratio in ratios(cases).items():
            checks.append(
                Check(
                    f"{LABELS[name]}: CPU per keystroke, {_size(large.nominal_bytes)} within "
                    f"{CPU_RATIO_TARGET:g}x of {_size(small.nominal_bytes)}",
                    ratio is not None and ratio <= CPU_RATIO_TARGET,
                    f"{large.cpu_us_per_keystroke[name]:,.0f} us vs "
                    f"{small.cpu_us_per_keystroke[name]:,.0f} us: "
                    f"{'-' if ratio is None else f'{ratio:.2f}x'}",
                )
            )
    return checks


# -- report --------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    def version(dist: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return dist_version(dist)
        except PackageNotFoundError:
            return "?"

    return {
        **run_facts(),
        "python": platform.python_version(),
        "packages": {d: version(d) for d in ("pygls", "pytest-lsp", "pycrdt", "websockets")},
        "huddle_env": huddle_env(),
    }


def markdown(
    cases: list[CaseResult],
    checks: list[Check],
    options: KeystrokeOptions,
    env: dict[str, Any],
    profiled: bool,
) -> str:
    pkgs = env["packages"]
    lines = [
        "# Keystroke benchmark",
        "",
        f"Editor A types {options.keystrokes} characters (code, line breaks included) at "
        f"{options.rate:g}/s into the middle of a file that editor B has open too, after "
        f"{options.warmup} warmup keystrokes. Each editor is a scripted LSP client (pytest-lsp "
        f"{pkgs['pytest-lsp']}, VS Code behaviour) driving its own `huddle lsp` subprocess; "
        "the hub is a `huddle serve` subprocess; all on loopback. One fresh room and fresh "
        "language servers per file size; the file is real code (the standard library's "
        "modules in name order).",
        "",
        "- *p50/p90/p99/max*: from A's `didChange` written to its server until B's client "
        "reads the `workspace/applyEdit` carrying that character (both clocks are this "
        "process's).",
        "- *CPU µs/keystroke*: user + system CPU time of the process over the measured "
        "keystrokes (until the last one reached B), divided by their number. *idle CPU %*: "
        f"the same processes over {options.idle:g} s of no typing just before (100 % = one "
        "core): background work such as the language server's periodic consistency check.",
        "- *typist lag*: how late this process sent its worst keystroke against a steady "
        "schedule (more than a few ms: the machine held this process up, and likely the "
        "servers too). The JSON lists the slowest keystrokes with when they were typed.",
        "- *edits*: `applyEdit` requests B received (fewer than keystrokes where the server "
        "merged keystrokes that arrived while an edit was in flight); *bench CPU %*: this "
        "process (both LSP clients); *machine %*: all cores busy over the window; "
        "*background %*: all cores busy in the second before the case (work that is not ours).",
        "",
        f"Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x {env['cpu_model']}, "
        f"Python {env['python']}, pygls {pkgs['pygls']}, pycrdt {pkgs['pycrdt']}, websockets "
        f"{pkgs['websockets']}.",
        "",
    ]
    if profiled:
        lines += [
            "**Profiled run** (every server under cProfile): timings and CPU are inflated; "
            "use it for where the time goes, not for how much.",
            "",
        ]
    lines += [
        "## Latency",
        "",
        "| file | bytes | lines | keystrokes | sent/s | typist lag ms | edits | missing "
        "| p50 ms | p90 ms | p99 ms | max ms | mean ms |",
        "| --- |" + " ---: |" * 12,
    ]
    for c in cases:
        lat = c.latency_ms
        lines.append(
            f"| {_size(c.nominal_bytes)} | {c.size_bytes:,} | {c.lines:,} | {c.keystrokes} "
            f"| {c.sent_per_s:.1f} | {c.typist_lag_ms:.0f} "
            f"| {c.apply_edits} | {c.missing} | {ms(lat['p50'])} | {ms(lat['p90'])} "
            f"| {ms(lat['p99'])} | {ms(lat['max'])} | {ms(lat['mean'])} |"
        )
    lines += [
        "",
        "## Server-side CPU per keystroke",
        "",
        "| file | A's lsp µs | B's lsp µs | hub µs | idle CPU % (A / B / hub) "
        "| RSS MB (A / B / hub) | bench CPU % | machine % | background % |",
        "| --- |" + " ---: |" * 8,
    ]
    for c in cases:
        cpu, idle, rss = c.cpu_us_per_keystroke, c.idle_cpu_percent, c.rss_mb
        lines.append(
            f"| {_size(c.nominal_bytes)} | {cpu['lsp_a']:,.0f} | {cpu['lsp_b']:,.0f} "
            f"| {cpu['hub']:,.0f} | {idle['lsp_a']:.1f} / {idle['lsp_b']:.1f} / "
            f"{idle['hub']:.1f} | {rss['lsp_a']:.0f} / {rss['lsp_b']:.0f} / {rss['hub']:.0f} "
            f"| {c.bench_cpu_percent:.0f} | {c.machine_busy_percent:.0f} "
            f"| {c.background_busy_percent:.0f} |"
        )
    ratio = ratios(cases)
    if ratio:
        lines.append(
            "| ratio | "
            + " | ".join("-" if ratio[p] is None else f"{ratio[p]:.2f}x" for p in PROCESSES)
            + " | | | | | |"
        )
    lines += ["", *_warnings(cases), "## Targets", ""]
    lines += targets_lines(checks)
    return "\n".join(lines)


TYPIST_LAG_WARN_MS = 20.0


def _warnings(cases: list[CaseResult]) -> list[str]:
    notes = background_warning([c.background_busy_percent for c in cases])
    slow = [c for c in cases if c.sent_per_s < 0.95 * c.rate_per_s]
    if slow:
        notes += [
            "**Note**: the typist fell behind its schedule in "
            + ", ".join(_size(c.nominal_bytes) for c in slow)
            + ": this process was too busy to send on time.",
            "",
        ]
    stalled = [c for c in cases if c.typist_lag_ms > TYPIST_LAG_WARN_MS]
    if stalled:
        notes += [
            "**Note**: the typist (this process) was held up "
            + ", ".join(f"{c.typist_lag_ms:.0f} ms ({_size(c.nominal_bytes)})" for c in stalled)
            + " at worst: CPU contention on the machine, which shows in the latency tail too.",
            "",
        ]
    odd = [c for c in cases if c.rejected_edits or c.unexpected_edits]
    if odd:
        notes += [
            "**Note**: "
            + "; ".join(
                f"{_size(c.nominal_bytes)}: {c.rejected_edits} edits rejected as stale, "
                f"{c.unexpected_edits} edits that replaced text"
                for c in odd
            ),
            "",
        ]
    return notes


def summarize_profiles(profile_dir: Path, top: int = 30) -> None:
    """A text summary next to every ``.prof`` (by own time and by cumulative time)."""
    for prof in sorted(profile_dir.glob("*.prof")):
        with (prof.with_suffix(".txt")).open("w") as out:
            stats = pstats.Stats(str(prof), stream=out)
            stats.strip_dirs()
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)


# -- entry point ---------------------------------------------------------------------------


def add_arguments(group: argparse._ArgumentGroup) -> None:
    def sizes(text: str) -> tuple[int, ...]:
        units = {"k": 1000, "m": 1_000_000}
        values = []
        for item in text.split(","):
            item = item.strip().lower().removesuffix("b")
            if not item:
                continue
            scale = units.get(item[-1], 1)
            values.append(int(float(item.rstrip("km")) * scale))
        if not values or min(values) < 100:
            raise argparse.ArgumentTypeError("a comma-separated list of sizes, e.g. 10k,1m")
        return tuple(values)

    def positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
        def parse(text: str) -> Any:
            value = kind(text)
            if value <= 0:
                raise argparse.ArgumentTypeError(f"must be positive: {text}")
            return value

        return parse

    group.add_argument(
        "--keystroke-sizes",
        type=sizes,
        metavar="SIZE,...",
        help="file sizes in bytes (k, m suffixes; default 10k,1m)",
    )
    group.add_argument(
        "--keystroke-count",
        type=positive(int),
        metavar="N",
        help=f"measured keystrokes per size (default {FULL.keystrokes}, quick {QUICK.keystrokes})",
    )
    group.add_argument(
        "--keystroke-rate",
        type=positive(float),
        metavar="HZ",
        help=f"keystrokes per second (default {FULL.rate:g})",
    )
    group.add_argument(
        "--keystroke-profile",
        type=Path,
        metavar="DIR",
        help="run the hub and the language servers under cProfile; write the profiles, "
        "their summaries and the results to DIR (not to benchmarks/results)",
    )


def options_from(settings: Settings, args: argparse.Namespace) -> KeystrokeOptions:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for flag, attr in (("sizes", "sizes"), ("count", "keystrokes"), ("rate", "rate")):
        value = getattr(args, f"keystroke_{flag}", None)
        if value is not None:
            overrides[attr] = value
    return replace(options, **overrides)


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = options_from(settings, args)
    profile_dir: Path | None = getattr(args, "keystroke_profile", None)
    if profile_dir is not None:
        profile_dir = profile_dir.resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
    env = environment()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    cases = asyncio.run(run_all(options, profile_dir, log))
    checks = evaluate(cases)
    text = markdown(cases, checks, options, env, profiled=profile_dir is not None)
    stem = "keystroke-quick" if settings.quick else "keystroke"
    report = {
        "benchmark": "keystroke",
        "quick": settings.quick,
        "profiled": profile_dir is not None,
        "options": asdict(options),
        "environment": env,
        "cases": [asdict(c) for c in cases],
        "cpu_ratio_largest_over_smallest": ratios(cases),
        **target_fields(checks),
    }
    out_dir = settings.results_dir if profile_dir is None else profile_dir
    if profile_dir is not None:
        summarize_profiles(profile_dir)
    write_results(out_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    name="keystroke",
    help="keystroke-to-peer latency and per-keystroke CPU through two huddle lsp and the hub",
    add_arguments=add_arguments,
    run=run,
)
