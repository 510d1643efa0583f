"""A room of teammates typing: the CPU every keystroke costs ``huddle lsp`` and the hub.

**Room cases** (one per team size N): N teammates each type 5 letters a second at the end of
their own line of one ~400-line Python file, with cursor presence, into one room of a
``huddle serve`` hub (a subprocess). Up to ``--room-lsp`` of them are scripted LSP editors
(``tests/support/lsp_editor.py``, VS Code behaviour) driving their own ``huddle lsp``
subprocess: their cursors are published by the language server itself; the rest are stock
Yjs clients (``node/room-typers.mjs``: yjs + y-websocket@3, awareness cursors as Yjs relative
positions, as the web client publishes them). One more LSP editor, the *probe*, has the file
open and does not type: a teammate reading, whose ``huddle lsp`` does nothing but follow the
others, so its CPU over the remote keys it receives is the cost of a remote keystroke with
nothing else mixed in.

- *probe lsp µs/remote key*: the probe's ``huddle lsp`` CPU time (user + system, /proc) over
  the window / letters its editor received through ``workspace/applyEdit``.
- *typist lsp µs/key*: after the room's window, one LSP typist types alone at 25 keys/s for a
  few seconds into the quiet room (the *solo* window): its ``huddle lsp`` CPU / its keys. The
  probe's cost per remote key and the latency from that one typist are reported too. (The JSON
  also has a figure from inside the room: a typing teammate's CPU less its remote keys times
  the probe's cost, over its own keys; under contention it is not reliable.)
- *floor µs/remote key*: the same for ``benchmarks/floor_client.py``, a bare Python Yjs client
  in the room (websockets, pycrdt, Huddle's wire codec; no editor, no presence placed): the
  least a Python teammate spends on a remote key, for the probe's figure to be read against.
- *hub µs/key*: the hub's CPU over the window / keys typed in the room.
- *latency*: from a typing editor's ``didChange`` written to its server until the probe's
  editor reads the ``workspace/applyEdit`` carrying that letter (one process, one clock), for
  the keys the language-server typists sent in the window.
- *presence*: ``huddle/peers`` notifications the probe's editor received a second, and remote
  awareness changes each Yjs client saw a second.
- *RSS growth / 10k edits*: RSS at the window's end less at its start, per 10,000 keys typed in
  the room (every replica applies every key).

**Relay cases** (the hub's side, against its peers): the same typing with presence from stock
Yjs clients only (``@hocuspocus/provider`` ones for Hocuspocus), to 1 peer (one typist at
25 keys/s and one passive client) and to 10 peers (11 clients, each typing 5 keys/s), against
the hub, ``y-websocket@1.5.4``'s ``bin/server.js``, Hocuspocus and pycrdt-websocket, the
Python peer: what relaying costs in Python with the same libraries (all in memory; the hub
persists every update to SQLite). Server CPU over the window / keys typed.

With ``--room-profile DIR`` the first room case runs again with the hub, the probe's and one
typist's ``huddle lsp`` under cProfile; the profiles and a summary grouped by candidate cost
(``room-profile.md``) go to DIR and the summary to ``benchmarks/results/`` as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    background_warning,
    ms,
    number_list,
    package_version,
    target_fields,
    targets_lines,
    write_atomic,
    write_results,
)
from benchmarks.fanout import (
    CLIENTS_DIR,
    HOCUSPOCUS,
    HUDDLE,
    NODE_DIR,
    NODE_SERVER,
    PYCRDT,
    background_busy_percent,
    free_port,
    machine_cpu_ticks,
    node_binary,
    process_cpu_seconds,
    process_memory_mb,
    running_server,
)
from benchmarks.keystroke import (
    _editor_class,
    environment,
    latency_summary,
    running_hub,
    sample_text,
    status_of,
    wait_for,
)

ROOM = "bench/room"
FILE = "src/room.py"
LINES = 400
TYPERS_JS = NODE_DIR / "room-typers.mjs"
RELAY_SERVERS = (HUDDLE, NODE_SERVER, HOCUSPOCUS, PYCRDT)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# The targets (issue 18): what the cuts must reach; this part measures before them.
LSP_REMOTE_TARGET_US = 1000.0
LSP_TYPIST_TARGET_US = 1000.0
P50_TARGET_MS = 5.9
P99_TARGET_MS = 9.3


@dataclass(frozen=True, slots=True)
class RoomOptions:
    teams: tuple[int, ...] = (10, 20, 50)
    # typing teammates that are language servers (the rest: Yjs clients): with the probe, the
    # hub and this process's editors, what two shared cores carry without saturating
    lsp: int = 5
    rate: float = 5.0
    warmup: float = 3.0
    duration: float = 20.0
    grace: float = 10.0
    relay_peers: tuple[int, ...] = (1, 10)
    relay_rate_one_peer: float = 25.0
    relay_duration: float = 15.0
    solo_rate: float = 25.0
    solo_duration: float = 10.0


FULL = RoomOptions()
QUICK = RoomOptions(teams=(10,), warmup=2.0, duration=8.0, relay_duration=6.0, solo_duration=5.0)


def room_text() -> str:
    """A ~400-line Python file of real code (the standard library's first modules)."""
    lines = sample_text(60_000).splitlines(keepends=True)
    if len(lines) < LINES:
        raise BenchmarkError(f"the sample text has {len(lines)} lines, fewer than {LINES}")
    return "".join(lines[:LINES])


def typist_lines(count: int) -> list[int]:
    """Each typist's own line, spread over the file."""
    stride = max(1, (LINES - 10) // max(1, count))
    return [5 + k * stride for k in range(count)]


# -- the editors ---------------------------------------------------------------------------


def _room_editor_class() -> type[Any]:
    from lsprotocol import types as lsp

    base = _editor_class()

    class RoomEditor(base):  # type: ignore[misc,valid-type]
        """Counts the letters each ``applyEdit`` inserts by line (a typist's line is its own:
        no one types a line break) and the notifications by method."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.counts: dict[str, int] = {}
            self.by_line: dict[int, list[float]] = {}  # arrival time of each letter, by line
            self.received = 0
            super().__init__(*args, **kwargs)

        def _recorder(self, method: str) -> Any:
            def record(*_args: Any) -> None:  # pygls passes the client only to a typed one
                self.counts[method] = self.counts.get(method, 0) + 1

            return record

        def _on_apply_edit(
            self, params: lsp.ApplyWorkspaceEditParams
        ) -> lsp.ApplyWorkspaceEditResult:
            arrived = time.perf_counter()
            for change in params.edit.document_changes or []:
                if isinstance(change, lsp.TextDocumentEdit):
                    for edit in change.edits:
                        if isinstance(edit, lsp.TextEdit) and edit.new_text:
                            line = edit.range.start.line
                            self.by_line.setdefault(line, []).extend([arrived] * len(edit.new_text))
                            self.received += len(edit.new_text)
            result: lsp.ApplyWorkspaceEditResult = super()._on_apply_edit(params)
            return result

    return RoomEditor


@dataclass(slots=True)
class LspTypist:
    editor: Any
    line: int
    column: int
    sent: list[float]  # perf_counter of every key, warmup included

    def type_key(self) -> None:
        from huddle.collab.positions import Position as CPosition

        index = self.editor.indexes[self.editor.uri(FILE)]
        offset = index.offset_at(CPosition(self.line, self.column), self.editor.encoding)
        self.sent.append(time.perf_counter())
        self.editor.type(FILE, offset, LETTERS[len(self.sent) % len(LETTERS)])
        self.column += 1
        # VS Code reports the moved selection after every key (``huddle/cursor``).
        self.editor.client.protocol.notify(
            "huddle/cursor",
            {
                "uri": self.editor.uri(FILE),
                "position": {"line": self.line, "character": self.column},
            },
        )


async def type_steadily(typist: LspTypist, rate: float, phase: float, stop: asyncio.Event) -> int:
    """Type at ``rate`` keys/s until ``stop``; an open loop that skips slots it missed."""
    loop = asyncio.get_running_loop()
    period = 1.0 / rate
    start = loop.time() + phase
    k = skipped = 0
    while not stop.is_set():
        delay = start + k * period - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)  # the typist's schedule
            if stop.is_set():
                break
        typist.type_key()
        nxt = max(k + 1, int((loop.time() - start) / period) + 1)
        skipped += nxt - k - 1
        k = nxt
    return skipped


# -- the Node typers -----------------------------------------------------------------------


class Typers:
    """``room-typers.mjs`` as an asyncio subprocess, steered over stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = await asyncio.wait_for(
                    self.proc.stdout.readline(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                raise BenchmarkError(f"room typers: no '{event}' in time\n{self._tail()}") from None
            if not line:
                await self.proc.wait()
                raise BenchmarkError(
                    f"room typers exited ({self.proc.returncode}) before '{event}'\n{self._tail()}"
                )
            try:
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # a library's stray output
            if message.get("event") == "error":
                raise BenchmarkError(f"room typers failed: {message.get('error')}")
            if message.get("event") == event:
                return message

    async def phase(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())
        await self.proc.stdin.drain()
        if word != "report":
            await self.expect("ok", 30)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def running_typers(workdir: Path, config: dict[str, Any]) -> AsyncIterator[Typers]:
    config_path = workdir / f"typers-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps({"clientsDir": str(CLIENTS_DIR), **config}))
    log_path = config_path.with_suffix(".log")
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            node_binary(),
            str(TYPERS_JS),
            str(config_path),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        typers = Typers(proc, log_path)
        try:
            await typers.expect("ready", 120)
            yield typers
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- a room case ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomCase:
    teammates: int
    lsp_typists: int
    yjs_typists: int
    rate_per_s: float
    window_s: float
    keys_typed: int
    lsp_keys: int
    yjs_keys: int
    skipped_slots: int
    probe_remote_keys: int
    probe_us_per_remote_key: float
    floor_us_per_remote_key: float  # benchmarks/floor_client.py over the same keys
    typist_us_per_key: float  # lsp0's CPU / its keys, typing alone (the solo window)
    typist_derived_us_per_key: float  # in the room: (CPU - remote keys x probe's cost) / own
    typist_mixed_us_per_key: float  # typing teammates' CPU / (own + remote keys)
    hub_us_per_key: float
    solo_keys: int
    solo_window_s: float
    solo_probe_us_per_remote_key: float
    solo_floor_us_per_remote_key: float
    solo_hub_us_per_key: float
    solo_latency_ms: dict[str, float | None]
    cpu_percent: dict[str, float]  # probe, typist (mean), hub, typers, bench
    latency_ms: dict[str, float | None]
    latency_samples: int
    missing: int
    yjs_latency_ms: dict[str, Any] | None
    presence_peers_per_s: float
    presence_awareness_per_client_per_s: float | None
    rss_mb: dict[str, float]
    rss_growth_mb_per_10k_edits: dict[str, float]
    converged: bool
    machine_busy_percent: float
    background_busy_percent: float


class FloorClient:
    """``benchmarks/floor_client.py`` in its own process: the letters it has received."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    async def received(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"?\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise BenchmarkError("the floor client ended")
        return int(json.loads(line)["received"])


@contextlib.asynccontextmanager
async def running_floor(
    url: str, room: str, token: str, env: dict[str, str]
) -> AsyncIterator[FloorClient]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.floor_client",
        url,
        room,
        token,
        FILE,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"synced":
            raise BenchmarkError(f"the floor client did not sync: {line!r}")
        yield FloorClient(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _shared(editor: Any) -> bool:
    status = await status_of(editor)
    return FILE in status.get("shared", []) and status.get("state") == "connected"


async def run_room_case(
    n: int,
    options: RoomOptions,
    workdir: Path,
    profile_dir: Path | None,
    log: Callable[[str], None],
) -> RoomCase:
    from tests.support.peers import token

    editor_class = _room_editor_class()
    text = room_text()
    lines = text.splitlines()
    n_lsp = min(n, options.lsp)
    n_yjs = n - n_lsp
    owned = typist_lines(n)
    data_dir = workdir / f"data-{n}"
    root = workdir / f"ws-{n}"
    (root / "src").mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HUDDLE_LOG_LEVEL": "warning"}

    def prof(name: str) -> tuple[str, ...]:
        if profile_dir is None:
            return ()
        return ("-m", "benchmarks.cpu_profile", str(profile_dir / f"{name}.prof"))

    background = await asyncio.to_thread(background_busy_percent)
    async with running_hub(data_dir, env, prof("hub")) as (url, hub):
        room = f"{ROOM}-{n}"

        def editor(user: str, profiled: bool) -> Any:
            init = {"hub": url, "room": room, "user": user, "token": token(data_dir, room, user)}
            return editor_class(
                root,
                init_options=init,
                env={"HUDDLE_LOG_LEVEL": "warning"},
                command_prefix=prof(f"lsp-{user}") if profiled else (),
            )

        probe = editor("probe", profiled=True)
        typing = [editor(f"lsp{k}", profiled=k == 0) for k in range(n_lsp)]
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(probe)
            await asyncio.gather(*(stack.enter_async_context(e) for e in typing))
            probe.open(FILE, text)
            await wait_for(lambda: _shared(probe), "the probe's buffer to be shared", 60, 0.05)
            floor = await stack.enter_async_context(
                running_floor(url, room, token(data_dir, room, "floor"), env)
            )
            for e in typing:
                e.open(FILE, text)
            for e in typing:
                await wait_for(partial(_shared, e), "a typist's buffer to be shared", 60, 0.05)
            typists = [
                LspTypist(e, owned[k], len(lines[owned[k]]), []) for k, e in enumerate(typing)
            ]
            yjs_specs = [
                {"user": f"yjs{k}", "token": token(data_dir, room, f"yjs{k}"), "line": line}
                for k, line in enumerate(owned[n_lsp:])
            ]
            typers: Typers | None = None
            if yjs_specs:
                config = {
                    "url": url,
                    "room": room,
                    "file": FILE,
                    "client": "y-websocket",
                    "clients": yjs_specs,
                    "seed": None,
                    "rate": options.rate,
                }
                typers = await stack.enter_async_context(running_typers(workdir, config))
            log(f"[room] {n} teammates ({n_lsp} huddle lsp, {n_yjs} Yjs) + probe: typing ...")

            pids = {"probe": probe.pid, "floor": floor.pid, "hub": hub.pid, "bench": os.getpid()}
            pids |= {f"lsp{k}": e.pid for k, e in enumerate(typing)}
            if typers is not None:
                pids["typers"] = typers.pid

            def cpu() -> dict[str, float]:
                return {name: process_cpu_seconds(pid) for name, pid in pids.items()}

            def rss() -> dict[str, float]:
                return {name: process_memory_mb(pid)[0] for name, pid in pids.items()}

            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    type_steadily(t, options.rate, k / max(1, n) / options.rate, stop)
                )
                for k, t in enumerate(typists)
            ]
            try:
                if typers is not None:
                    await typers.phase("start")
                await asyncio.sleep(options.warmup)  # the warmup: caches, first presence
                if typers is not None:
                    await typers.phase("measure")
                sent0 = [len(t.sent) for t in typists]
                recv0 = {"probe": probe.received, "floor": await floor.received()} | {
                    f"lsp{k}": e.received for k, e in enumerate(typing)
                }
                peers0 = probe.counts.get("huddle/peers", 0)
                profiled = [hub.pid, probe.pid, typing[0].pid] if profile_dir else []
                for pid in profiled:
                    os.kill(pid, signal.SIGUSR1)  # benchmarks.cpu_profile: start
                rss0, cpu0, t0 = rss(), cpu(), time.monotonic()
                busy0, machine0 = machine_cpu_ticks()
                await asyncio.sleep(options.duration)  # the measured window
                stop.set()
                skipped = sum(await asyncio.gather(*tasks))
                if typers is not None:
                    await typers.phase("stop")
                window_s = time.monotonic() - t0
                peers1 = probe.counts.get("huddle/peers", 0)
                sent1 = [len(t.sent) for t in typists]

                def lsp_keys_at_probe() -> bool:
                    return all(len(probe.by_line.get(t.line, [])) >= len(t.sent) for t in typists)

                with contextlib.suppress(BenchmarkError):
                    await wait_for(
                        lsp_keys_at_probe, "the typists' keys at the probe", options.grace
                    )
                yjs: dict[str, Any] | None = None
                if typers is not None:
                    await asyncio.sleep(0.5)  # the Yjs typers' last keys: no event to wait on
                cpu1, rss1 = cpu(), rss()
                for pid in profiled:
                    os.kill(pid, signal.SIGUSR2)  # benchmarks.cpu_profile: stop, write
                busy1, machine1 = machine_cpu_ticks()
                recv1 = {"probe": probe.received, "floor": await floor.received()} | {
                    f"lsp{k}": e.received for k, e in enumerate(typing)
                }
                if typers is not None:
                    await typers.phase("report")
                    yjs = await typers.expect("result", 60)
                    del pids["typers"]  # it exits after its report
            finally:
                stop.set()
                for task in tasks:
                    task.cancel()

            # every replica converged: the probe's editor holds every typist's letters
            expected_probe = probe.text(FILE)
            converged = True
            try:
                await wait_for(
                    lambda: all(e.text(FILE) == expected_probe for e in typing),
                    "the editors to converge",
                    10,
                )
            except BenchmarkError:
                converged = False

            # The typist alone: lsp0 types at ``solo_rate`` into the quiet room (the Yjs
            # typers have left): its own keys' cost with no remote keys mixed in, and the
            # probe's cost per remote key and the latency from one typist, uncontended.
            solo = typists[0]
            solo_first, probe_solo0 = len(solo.sent), probe.received
            floor_solo0 = await floor.received()
            solo_stop = asyncio.Event()
            cpu_s0, ts0 = cpu(), time.monotonic()
            solo_task = asyncio.create_task(type_steadily(solo, options.solo_rate, 0.0, solo_stop))
            await asyncio.sleep(options.solo_duration)  # the solo window
            solo_stop.set()
            await solo_task
            with contextlib.suppress(BenchmarkError):
                await wait_for(
                    lambda: len(probe.by_line.get(solo.line, [])) >= len(solo.sent),
                    "the solo typist's keys at the probe",
                    options.grace,
                )
            cpu_s1, ts1 = cpu(), time.monotonic()
            floor_solo = await floor.received() - floor_solo0
            solo_keys = len(solo.sent) - solo_first
            probe_solo = probe.received - probe_solo0
            arrived_solo = probe.by_line.get(solo.line, [])
            solo_latencies = [
                arrived_solo[k] - solo.sent[k]
                for k in range(solo_first, min(len(solo.sent), len(arrived_solo)))
            ]

    # -- figures
    lsp_keys = sum(b - a for a, b in zip(sent0, sent1, strict=True))
    yjs_keys = int(yjs["sent"]) if yjs else 0
    keys = lsp_keys + yjs_keys
    skipped += int(yjs["skipped_slots"]) if yjs else 0
    spent = {name: cpu1[name] - cpu0[name] for name in cpu0}
    probe_remote = recv1["probe"] - recv0["probe"]
    probe_us = 1e6 * spent["probe"] / max(1, probe_remote)
    floor_us = 1e6 * spent["floor"] / max(1, recv1["floor"] - recv0["floor"])
    derived_costs, mixed_costs = [], []
    for k in range(n_lsp):
        name = f"lsp{k}"
        remote = recv1[name] - recv0[name]
        own = sent1[k] - sent0[k]
        derived_costs.append((1e6 * spent[name] - probe_us * remote) / max(1, own))
        mixed_costs.append(1e6 * spent[name] / max(1, own + remote))
    latencies: list[float] = []
    missing = 0
    for t, first, last in zip(typists, sent0, sent1, strict=True):
        arrived = probe.by_line.get(t.line, [])
        for k in range(first, last):
            if k < len(arrived):
                latencies.append(arrived[k] - t.sent[k])
            else:
                missing += 1
    growth = {}
    for name in ("hub", "probe", "lsp0"):
        if name in rss0:
            growth[name] = round((rss1[name] - rss0[name]) / max(1, keys) * 10_000, 2)
    lsp_cpu = [100 * spent[f"lsp{k}"] / window_s for k in range(n_lsp)]
    return RoomCase(
        teammates=n,
        lsp_typists=n_lsp,
        yjs_typists=n_yjs,
        rate_per_s=options.rate,
        window_s=round(window_s, 2),
        keys_typed=keys,
        lsp_keys=lsp_keys,
        yjs_keys=yjs_keys,
        skipped_slots=skipped,
        probe_remote_keys=probe_remote,
        probe_us_per_remote_key=round(probe_us, 1),
        floor_us_per_remote_key=round(floor_us, 1),
        typist_us_per_key=round(1e6 * (cpu_s1["lsp0"] - cpu_s0["lsp0"]) / max(1, solo_keys), 1),
        typist_derived_us_per_key=round(sum(derived_costs) / max(1, len(derived_costs)), 1),
        typist_mixed_us_per_key=round(sum(mixed_costs) / max(1, len(mixed_costs)), 1),
        hub_us_per_key=round(1e6 * spent["hub"] / max(1, keys), 1),
        solo_keys=solo_keys,
        solo_window_s=round(ts1 - ts0, 2),
        solo_probe_us_per_remote_key=round(
            1e6 * (cpu_s1["probe"] - cpu_s0["probe"]) / max(1, probe_solo), 1
        ),
        solo_floor_us_per_remote_key=round(
            1e6 * (cpu_s1["floor"] - cpu_s0["floor"]) / max(1, floor_solo), 1
        ),
        solo_hub_us_per_key=round(1e6 * (cpu_s1["hub"] - cpu_s0["hub"]) / max(1, solo_keys), 1),
        solo_latency_ms=latency_summary(solo_latencies),
        cpu_percent={
            "probe": round(100 * spent["probe"] / window_s, 1),
            "typist_mean": round(sum(lsp_cpu) / max(1, len(lsp_cpu)), 1),
            "hub": round(100 * spent["hub"] / window_s, 1),
            "typers": round(100 * spent.get("typers", 0.0) / window_s, 1),
            "bench": round(100 * spent["bench"] / window_s, 1),
        },
        latency_ms=latency_summary(latencies),
        latency_samples=len(latencies),
        missing=missing,
        yjs_latency_ms=yjs["latency_ms"] if yjs else None,
        presence_peers_per_s=round((peers1 - peers0) / window_s, 1),
        presence_awareness_per_client_per_s=yjs["awareness_per_client_per_s"] if yjs else None,
        rss_mb={name: round(rss1[name], 1) for name in ("hub", "probe", "lsp0") if name in rss1},
        rss_growth_mb_per_10k_edits=growth,
        converged=converged and (yjs is None or bool(yjs["converged"])),
        machine_busy_percent=round(100 * (busy1 - busy0) / max(1, machine1 - machine0), 1),
        background_busy_percent=background,
    )


# -- a relay case --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayCase:
    server: str
    peers: int  # clients each key reaches
    typists: int
    rate_per_s: float
    window_s: float
    keys_typed: int
    keys_received: int
    us_per_key: float
    cpu_percent: float
    latency_ms: dict[str, Any]
    awareness_per_client_per_s: float | None
    rss_mb: float
    converged: bool


async def run_relay_case(
    server: str, peers: int, options: RoomOptions, workdir: Path, text: str
) -> RelayCase:
    from tests.support.peers import token

    case_dir = workdir / f"relay-{server.split('@')[0]}-{peers}"
    case_dir.mkdir(parents=True)
    lines: list[int | None]  # each client's line to type on (None: only receives)
    if peers == 1:
        rate, lines = options.relay_rate_one_peer, [10, None]
    else:
        rate, lines = options.rate, list(typist_lines(peers + 1))
    port = free_port()
    with running_server(server, port, case_dir) as child:
        url = f"ws://127.0.0.1:{port}"
        room = ROOM if server != HUDDLE else f"{ROOM}-relay"
        specs = []
        for k, line in enumerate(lines):
            user = f"yjs{k}"
            tok = token(case_dir / "data", room, user) if server == HUDDLE else None
            specs.append({"user": user, "token": tok, "line": line})
        config = {
            "url": url,
            "room": room,
            "file": FILE,
            "client": "hocuspocus" if server == HOCUSPOCUS else "y-websocket",
            "clients": specs,
            "seed": text,
            "rate": rate,
        }
        async with running_typers(case_dir, config) as typers:
            await typers.phase("start")
            await asyncio.sleep(options.warmup)
            await typers.phase("measure")
            cpu0, t0 = process_cpu_seconds(child.pid), time.monotonic()
            await asyncio.sleep(options.relay_duration)  # the measured window
            await typers.phase("stop")
            window_s = time.monotonic() - t0
            await asyncio.sleep(0.5)  # the last keys' relay: counted in the server's CPU
            cpu1 = process_cpu_seconds(child.pid)
            rss = process_memory_mb(child.pid)[0]
            await typers.phase("report")
            result = await typers.expect("result", 60)
    keys = int(result["sent"])
    return RelayCase(
        server=server,
        peers=peers,
        typists=sum(1 for line in lines if line is not None),
        rate_per_s=rate,
        window_s=round(window_s, 2),
        keys_typed=keys,
        keys_received=int(result["received"]),
        us_per_key=round(1e6 * (cpu1 - cpu0) / max(1, keys), 1),
        cpu_percent=round(100 * (cpu1 - cpu0) / window_s, 1),
        latency_ms=result["latency_ms"],
        awareness_per_client_per_s=result["awareness_per_client_per_s"],
        rss_mb=round(rss, 1),
        converged=bool(result["converged"]),
    )


# -- the profile ---------------------------------------------------------------------------

# Candidate costs from the issue, matched on a profile entry's file and function name (first
# match wins); the order puts the specific before the general.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("presence resolution", ("huddle/lsp/presence.py", "huddle/collab/sticky.py", "StickyIndex")),
    ("UTF-16 / line index", ("huddle/collab/positions.py",)),
    ("SQLite commits", ("sqlite3", "huddle/server/store", "huddle/server/sqlite")),
    (
        "JSON: JSON-RPC, lsprotocol (hub: awareness JSON)",
        ("pygls/", "lsprotocol/", "cattrs/", "cattr/", "json/", "huddle/lsp/stdio.py", "_json"),
    ),
    (
        "observers / bridge / CRDT apply",
        (
            "huddle/collab/bridge.py",
            "huddle/collab/ops.py",
            "huddle/collab/updates.py",
            "huddle/lsp/documents.py",
            "huddle/lsp/edits.py",
            "huddle/lsp/workspace.py",
            "huddle/lsp/session.py",
            "huddle/lsp/server.py",
            "pycrdt",
            "builtins.Transaction",
        ),
    ),
    (
        "relay / websocket transport",
        ("websockets/", "huddle/server/", "huddle/collab/wire.py", "huddle/lsp/hub_client.py"),
    ),
    ("pydantic models", ("pydantic",)),
    ("asyncio / event loop / sockets", ("asyncio/", "selectors", "socket", "select.epoll")),
    ("logging / metrics", ("logging/", "prometheus")),
    ("imports", ("<frozen importlib", "importlib", "marshal")),
)


# The hot paths' entry points, inclusive of everything they call: (label, file, function).
HOT_PATHS: tuple[tuple[str, str, str], ...] = (
    ("presence tick: teammates' cursors resolved, `huddle/peers` sent", "lsp/presence.py", "_tick"),
    ("  of it: resolving cursors (StickyIndex, UTF-16)", "lsp/presence.py", "_peer_cursor"),
    ("  of it: `uri_of` for every teammate", "lsp/presence.py", "uri_of"),
    ("editor `didChange` (the editor's echo of each applied edit)", "lsp/server.py", "did_change"),
    ("hub messages in (decode, apply, awareness)", "lsp/hub_client.py", "_handle"),
    ("remote change -> `workspace/applyEdit` (bridge)", "lsp/edits.py", "pump"),
    ("JSON-RPC out (lsprotocol -> JSON -> stdout)", "pygls/protocol/json_rpc.py", "_send_data"),
    ("hub: reading a connection (all of it)", "server/hub.py", "_read"),
    ("  of it: a message into the room", "server/room.py", "receive"),
    ("  of it: relaying to the peers", "server/room.py", "_send"),
    ("  of it: an update checked and applied", "server/room.py", "_receive_update"),
    (
        "awareness decoded and checked (`wire.decode_awareness`)",
        "collab/wire.py",
        "decode_awareness",
    ),
    ("hub: SQLite write loop", "server/store.py", "_write_loop"),
    ("hub: Prometheus labels", "prometheus_client/metrics.py", "labels"),
)


def category(entry: tuple[str, int, str]) -> str:
    where = f"{entry[0]}:{entry[2]}"
    for name, needles in CATEGORIES:
        if any(n in where for n in needles):
            return name
    return "other"


def _label(entry: tuple[str, int, str]) -> str:
    path, line, func = entry
    path = re.sub(r"^.*/lib/python3\.\d+/(site-packages/)?", "", path)
    path = re.sub(r"^.*?/(huddle|benchmarks)/", r"\1/", path)
    return f"{func} ({path}:{line})" if path != "~" else func


def profile_section(prof: Path, what: str, per: int, unit: str, top: int = 12) -> list[str]:
    stats = pstats.Stats(str(prof))
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    by_cat: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, callers) in entries.items():
        if key[0] == "~" and category(key) == "other" and callers:
            # a builtin (len, isinstance, str.join): its time goes to its callers' costs
            for caller, (_c, _n, caller_tt, _t) in callers.items():
                by_cat[category(caller)] = by_cat.get(category(caller), 0.0) + caller_tt
        else:
            by_cat[category(key)] = by_cat.get(category(key), 0.0) + tt
    lines = [
        f"### {what}",
        "",
        f"{total:.2f} s of CPU profiled, {per:,} keys: {1e6 * total / max(1, per):,.0f} µs "
        f"per {unit} (profiled).",
        "",
        f"| candidate cost (own time; a builtin's goes to its caller's) | µs per {unit} | share |",
        "| --- | ---: | ---: |",
    ]
    for name, tt in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {1e6 * tt / max(1, per):,.0f} | {100 * tt / total:.1f} % |")
    hot = [
        (label, ct)
        for label, path, func in HOT_PATHS
        for key, (_cc, _nc, _tt, ct, _callers) in entries.items()
        if key[0].endswith(path) and key[2] == func
    ]
    if hot:
        lines += ["", f"Hot paths, inclusive (µs per {unit}):", ""]
        lines += ["| path | µs | share |", "| --- | ---: | ---: |"]
        for label, ct in hot:
            lines.append(f"| {label} | {1e6 * ct / max(1, per):,.0f} | {100 * ct / total:.1f} % |")
    lines += ["", f"Top functions by own time (µs per {unit}):", ""]
    lines += ["| function | category | own µs | cum µs | calls per " + unit + " |"]
    lines += ["| --- | --- | ---: | ---: | ---: |"]
    by_own = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    for key, (_cc, nc, tt, ct, _callers) in by_own:
        lines.append(
            f"| `{_label(key)}` | {category(key)} | {1e6 * tt / max(1, per):,.0f} "
            f"| {1e6 * ct / max(1, per):,.0f} | {nc / max(1, per):.1f} |"
        )
    lines += ["", f"Top functions by cumulative time (µs per {unit}; nested, they overlap):", ""]
    lines += ["| function | category | cum µs | own µs |", "| --- | --- | ---: | ---: |"]
    skip = ("<frozen", "builtins.exec", "<module>", "run_forever", "_run_once", "_run (")
    ranked = sorted(entries.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for key, (_cc, _nc, tt, ct, _callers) in ranked:
        if any(s in _label(key) for s in skip) or key[2] in ("run", "main"):
            continue
        lines.append(
            f"| `{_label(key)}` | {category(key)} | {1e6 * ct / max(1, per):,.0f} "
            f"| {1e6 * tt / max(1, per):,.0f} |"
        )
        shown += 1
        if shown >= top:
            break
    return [*lines, ""]


async def run_profile(
    n: int, options: RoomOptions, workdir: Path, profile_dir: Path, log: Callable[[str], None]
) -> tuple[RoomCase, str]:
    log(f"[room] profiling a {n}-teammate room (hub, probe's and lsp0's huddle lsp) ...")
    (workdir / "profile").mkdir()
    case = await run_room_case(n, options, workdir / "profile", profile_dir, log)
    lines = [
        "# Where a keystroke's CPU goes (room benchmark, profiled)",
        "",
        f"`./dev bench room --room-profile DIR`: a room of {n} teammates "
        f"({case.lsp_typists} `huddle lsp`, {case.yjs_typists} Yjs clients) typing "
        f"{options.rate:g} keys/s each with cursor presence, plus the probe (a `huddle lsp` that "
        "only follows), with the hub, the probe's and one typist's (lsp0) `huddle lsp` under "
        "cProfile counting CPU time (`python -m benchmarks.cpu_profile OUT -m huddle.cli ...`), "
        f"over the measured window only ({case.window_s:g} s: {case.keys_typed:,} keys typed "
        f"in the room, {case.probe_remote_keys:,} remote keys at the probe). cProfile adds its "
        "own overhead to every call: read the shares and the ranking here, and the unprofiled "
        "run (`room.md`) for how much. Own time is exclusive (the rows add up); cumulative "
        "time nests.",
        "",
    ]
    lines += profile_section(
        profile_dir / "lsp-probe.prof",
        "A teammate's `huddle lsp` (the probe, not typing)",
        case.probe_remote_keys,
        "remote key",
    )
    if (profile_dir / "lsp-lsp0.prof").exists():
        lines += profile_section(
            profile_dir / "lsp-lsp0.prof",
            "A typing teammate's `huddle lsp` (lsp0: its own keys and everyone else's)",
            case.keys_typed,
            "key in the room",
        )
    lines += profile_section(profile_dir / "hub.prof", "The hub", case.keys_typed, "key typed")
    return case, "\n".join(lines)


# -- run it all ----------------------------------------------------------------------------


async def run_all(
    options: RoomOptions, profile_dir: Path | None, log: Callable[[str], None]
) -> tuple[list[RoomCase], list[RelayCase], str | None]:
    rooms: list[RoomCase] = []
    relays: list[RelayCase] = []
    profile_md: str | None = None
    with tempfile.TemporaryDirectory(prefix="huddle-room-") as tmp:
        workdir = Path(tmp)
        for n in options.teams:
            case = await run_room_case(n, options, workdir, None, log)
            log(
                f"[room]   probe {case.probe_us_per_remote_key:,.0f} us/remote key, typist "
                f"{case.typist_us_per_key:,.0f} us/key, hub {case.hub_us_per_key:,.0f} us/key, "
                f"p50 {ms(case.latency_ms['p50'])} ms p99 {ms(case.latency_ms['p99'])} ms, "
                f"{case.missing} missing"
            )
            rooms.append(case)
        text = room_text()
        for peers in options.relay_peers:
            for server in RELAY_SERVERS:
                log(f"[room] relay: {server}, {peers} peer(s) ...")
                relay = await run_relay_case(server, peers, options, workdir, text)
                log(
                    f"[room]   {relay.us_per_key:,.0f} us/key, p50 "
                    f"{ms(relay.latency_ms.get('p50'))} ms p99 {ms(relay.latency_ms.get('p99'))} ms"
                )
                relays.append(relay)
        if profile_dir is not None:
            _case, profile_md = await run_profile(
                options.teams[0], options, workdir, profile_dir, log
            )
    return rooms, relays, profile_md


def evaluate(rooms: list[RoomCase], relays: list[RelayCase]) -> list[Check]:
    checks: list[Check] = []
    for c in rooms:
        label = f"{c.teammates} teammates"
        checks.append(
            Check(
                f"{label}: a teammate's huddle lsp <= {LSP_REMOTE_TARGET_US:g} µs per remote key",
                c.probe_us_per_remote_key <= LSP_REMOTE_TARGET_US,
                f"{c.probe_us_per_remote_key:,.0f} µs",
            )
        )
        checks.append(
            Check(
                f"{label}: the typist's huddle lsp <= {LSP_TYPIST_TARGET_US:g} µs per key",
                c.typist_us_per_key <= LSP_TYPIST_TARGET_US,
                f"{c.typist_us_per_key:,.0f} µs",
            )
        )
        p50, p99 = c.latency_ms["p50"], c.latency_ms["p99"]
        checks.append(
            Check(
                f"{label}: keystroke to peer p50 <= {P50_TARGET_MS:g} ms, "
                f"p99 <= {P99_TARGET_MS:g} ms",
                (p50 or 1e9) <= P50_TARGET_MS and (p99 or 1e9) <= P99_TARGET_MS,
                f"p50 {ms(p50)} ms, p99 {ms(p99)} ms",
            )
        )
        checks.append(
            Check(
                f"{label}: every key reached the probe and all replicas converged",
                c.missing == 0 and c.converged,
                f"{c.missing} missing, {'converged' if c.converged else 'NOT converged'}",
            )
        )
    by = {(r.server, r.peers): r for r in relays}
    for peers in sorted({r.peers for r in relays}):
        hub, node = by.get((HUDDLE, peers)), by.get((NODE_SERVER, peers))
        if hub is None or node is None:
            continue
        checks.append(
            Check(
                f"hub CPU per key <= {NODE_SERVER}'s, {peers} peer(s)",
                hub.us_per_key <= node.us_per_key,
                f"{hub.us_per_key:,.0f} µs vs {node.us_per_key:,.0f} µs",
            )
        )
    return checks


def markdown(
    rooms: list[RoomCase],
    relays: list[RelayCase],
    checks: list[Check],
    options: RoomOptions,
    env: dict[str, Any],
) -> str:
    pkgs = env["packages"]
    lines = [
        "# Room benchmark: CPU per keystroke",
        "",
        f"N teammates each type {options.rate:g} letters/s at the end of their own line of a "
        f"{LINES}-line Python file, with cursor presence, for {options.duration:g} s after "
        f"{options.warmup:g} s of warmup. Up to {options.lsp} of them are scripted LSP editors "
        "(VS Code behaviour) each driving its own `huddle lsp`; the rest are stock Yjs clients "
        "(yjs + y-websocket@3, awareness cursors as relative positions). A probe editor with its "
        "own `huddle lsp` follows the room without typing; the floor is a bare Python Yjs client "
        "(`benchmarks/floor_client.py`) in the same room. Hub: `huddle serve` (SQLite). See "
        "`benchmarks/room.py` for the definitions.",
        "",
        f"Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x {env['cpu_model']}, "
        f"Python {env['python']}, pygls {pkgs['pygls']}, pycrdt {pkgs['pycrdt']}, websockets "
        f"{pkgs['websockets']}.",
        "",
        "## Room",
        "",
        "| teammates (lsp + Yjs) | keys typed | teammate lsp µs/remote key "
        "| floor µs/remote key | hub µs/key | p50 ms | p99 ms "
        "| presence /s (lsp peers; Yjs awareness per client) "
        "| RSS MB / 10k edits (hub, lsp) | CPU % (probe, typist, hub) | machine % |",
        "| --- |" + " ---: |" * 10,
    ]
    for c in rooms:
        g = c.rss_growth_mb_per_10k_edits
        aw = c.presence_awareness_per_client_per_s
        lines.append(
            f"| {c.teammates} ({c.lsp_typists} + {c.yjs_typists}) | {c.keys_typed:,} "
            f"| {c.probe_us_per_remote_key:,.0f} | {c.floor_us_per_remote_key:,.0f} "
            f"| {c.hub_us_per_key:,.0f} | {ms(c.latency_ms['p50'])} | {ms(c.latency_ms['p99'])} "
            f"| {c.presence_peers_per_s:.1f}; {'-' if aw is None else f'{aw:.1f}'} "
            f"| {g.get('hub', 0):.2f}, {g.get('probe', 0):.2f} "
            f"| {c.cpu_percent['probe']:.0f}, {c.cpu_percent['typist_mean']:.0f}, "
            f"{c.cpu_percent['hub']:.0f} | {c.machine_busy_percent:.0f} |"
        )
    lines += [
        "",
        f"Typing alone (solo window): one LSP typist at {options.solo_rate:g} keys/s, the room "
        "quiet, everyone else's `huddle lsp` still open.",
        "",
        "| teammates | keys | typist lsp µs/key | probe lsp µs/remote key "
        "| floor µs/remote key | hub µs/key | p50 ms | p99 ms |",
        "| --- |" + " ---: |" * 7,
    ]
    for c in rooms:
        lat = c.solo_latency_ms
        lines.append(
            f"| {c.teammates} | {c.solo_keys} | {c.typist_us_per_key:,.0f} "
            f"| {c.solo_probe_us_per_remote_key:,.0f} | {c.solo_floor_us_per_remote_key:,.0f} "
            f"| {c.solo_hub_us_per_key:,.0f} "
            f"| {ms(lat['p50'])} | {ms(lat['p99'])} |"
        )
    lines += [
        "",
        "## Relay: the hub against its peers (Yjs clients only, same typing with presence)",
        "",
        "| peers | server | typists x keys/s | keys | µs/key | CPU % | p50 ms | p99 ms "
        "| awareness /client/s | RSS MB |",
        "| ---: | --- | --- |" + " ---: |" * 7,
    ]
    for r in relays:
        aw = r.awareness_per_client_per_s
        lines.append(
            f"| {r.peers} | {r.server} | {r.typists} x {r.rate_per_s:g} | {r.keys_typed:,} "
            f"| {r.us_per_key:,.0f} | {r.cpu_percent:.1f} | {ms(r.latency_ms.get('p50'))} "
            f"| {ms(r.latency_ms.get('p99'))} | {'-' if aw is None else f'{aw:.1f}'} "
            f"| {r.rss_mb:.0f} |"
        )
    lines += ["", *background_warning([c.background_busy_percent for c in rooms])]
    lines += ["## Targets (issue 18)", ""]
    lines += targets_lines(checks)
    return "\n".join(lines)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--room-teams",
        type=number_list(2, "team sizes"),
        metavar="N,...",
        help=f"teammates per room (default {','.join(map(str, FULL.teams))}, quick 10)",
    )
    group.add_argument(
        "--room-lsp",
        type=int,
        metavar="N",
        help=f"typing teammates that are huddle lsp processes, at most (default {FULL.lsp})",
    )
    group.add_argument(
        "--room-duration",
        type=float,
        metavar="S",
        help=f"measured seconds per room (default {FULL.duration:g}, quick {QUICK.duration:g})",
    )
    group.add_argument(
        "--room-profile",
        type=Path,
        metavar="DIR",
        help="also profile the first room (hub, probe and one typist under cProfile); "
        "profiles to DIR, the summary to DIR and benchmarks/results/room-profile.md",
    )


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for flag, attr in (("teams", "teams"), ("lsp", "lsp"), ("duration", "duration")):
        value = getattr(args, f"room_{flag}", None)
        if value is not None:
            overrides[attr] = value
    options = replace(options, **overrides)
    profile_dir: Path | None = getattr(args, "room_profile", None)
    if profile_dir is not None:
        profile_dir = profile_dir.resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    env["peers"] = {
        "y-websocket": package_version(NODE_DIR / "node_modules" / "y-websocket"),
        "hocuspocus": package_version(NODE_DIR / "node_modules" / "@hocuspocus" / "server"),
    }

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rooms, relays, profile_md = asyncio.run(run_all(options, profile_dir, log))
    checks = evaluate(rooms, relays)
    text = markdown(rooms, relays, checks, options, env)
    stem = "room-quick" if settings.quick else "room"
    report = {
        "benchmark": "room",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": env,
        "rooms": [asdict(c) for c in rooms],
        "relays": [asdict(r) for r in relays],
        **target_fields(checks),
    }
    write_results(settings.results_dir, stem, report, text)
    if profile_md is not None and profile_dir is not None:
        write_atomic(profile_dir / "room-profile.md", profile_md)
        write_atomic(settings.results_dir / "room-profile.md", profile_md)
    return text


BENCHMARK = Benchmark(
    name="room",
    help="CPU per keystroke in huddle lsp and the hub with N teammates typing with presence",
    add_arguments=add_arguments,
    run=run,
)
