"""Fan-out: N clients in one room, each sending small text updates 10 times a second.

For every N and every server (the hub, and as peers ``y-websocket@1.5.4``'s reference
``bin/server.js``, Hocuspocus and pycrdt-websocket, all in memory) this starts the server on a
free port with a fresh data directory, runs the load generator (``node/loadgen.mjs``: N Yjs
clients in one Node process), samples the server's CPU time and memory from ``/proc`` over the
measured window, and stops the server. The cases alternate between servers so that all see the
same machine in the same run. Hocuspocus prefixes every message with the document's name, so its
clients are ``@hocuspocus/provider`` ones; every other server gets stock ``y-websocket@3``
clients.

A second measurement, memory per open document: each server gets D rooms with one client each
holding a small document; the server's RSS growth from a warm baseline, divided by the rooms.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from benchmarks import ROOT, Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    add_duration_flag,
    add_servers_flag,
    background_warning,
    command_output,
    huddle_env,
    ms,
    number_list,
    package_version,
    run_facts,
    target_fields,
    targets_lines,
    write_results,
)

HUDDLE = "huddle"
NODE_SERVER = "y-websocket@1.5.4"
HOCUSPOCUS = "hocuspocus@3.4.4"
PYCRDT = "pycrdt-websocket@0.16.5"
SERVERS = (HUDDLE, NODE_SERVER, HOCUSPOCUS, PYCRDT)
PEERS = SERVERS[1:]
ROOM = "bench"
NODE_DIR = ROOT / "benchmarks" / "node"
LOADGEN = NODE_DIR / "loadgen.mjs"
NODE_SERVER_JS = NODE_DIR / "node_modules" / "y-websocket" / "bin" / "server.js"
HOCUSPOCUS_JS = NODE_DIR / "hocuspocus-server.mjs"
CLIENTS_DIR = ROOT / "tests" / "node"
THROUGHPUT_TOLERANCE = 0.01  # delivered/s within 1 % counts as equal: window-edge jitter
P99_TARGET_MS = 10.0
P99_TARGET_CLIENTS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class FanoutOptions:
    clients: tuple[int, ...] = (10, 50, 100)
    rate: float = 10.0
    warmup: float = 3.0
    duration: float = 10.0
    grace: float = 5.0
    servers: tuple[str, ...] = SERVERS
    rooms: int = 500  # memory per document: rooms opened past the baseline (0: skip)
    rooms_base: int = 20  # rooms open when the baseline RSS is taken (first-use costs paid)
    doc_bytes: int = 1024


FULL = FanoutOptions()
QUICK = FanoutOptions(warmup=1.0, duration=3.0, grace=3.0, rooms=100)


# -- /proc sampling ------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: ``[2]`` is field 3 of proc(5) (the state)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc/PID/stat."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) ticks over all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def background_busy_percent(seconds: float = 1.0) -> float:
    """How busy the machine is with nothing of ours running: other work skews the results."""
    busy0, total0 = machine_cpu_ticks()
    time.sleep(seconds)  # a measurement interval
    busy1, total1 = machine_cpu_ticks()
    return round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MiB, from /proc/PID/status."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            kb[key] = int(value.split()[0])
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


@dataclass(frozen=True, slots=True)
class WindowEdge:
    """What every fan-out case samples at either edge of the measured window."""

    wall: float
    loadgen: float
    machine_busy: int
    machine_total: int


@dataclass(frozen=True, slots=True)
class CpuSnapshot(WindowEdge):
    server: float

    @classmethod
    def take(cls, server_pid: int, loadgen_pid: int) -> CpuSnapshot:
        busy, total = machine_cpu_ticks()
        return cls(
            wall=time.monotonic(),
            server=process_cpu_seconds(server_pid),
            loadgen=process_cpu_seconds(loadgen_pid),
            machine_busy=busy,
            machine_total=total,
        )


# -- child processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Child:
    """A subprocess whose stdout lines are read on a thread into a queue (None at EOF)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log: Path,
        *,
        stdin: bool = False,
    ) -> None:
        self.name = name
        self.log = log
        self._log_file: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the children
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"{name} stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float, waiting_for: str) -> str:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BenchmarkError(
                f"{self.name}: no {waiting_for} in time\n{_tail(self.log)}"
            ) from None
        if line is None:
            self.proc.wait()
            raise BenchmarkError(
                f"{self.name} exited (status {self.proc.returncode}) before {waiting_for}\n"
                f"{_tail(self.log)}"
            )
        return line

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._log_file.close()


@contextmanager
def running_server(server: str, port: int, workdir: Path, timeout: float = 60.0) -> Iterator[Child]:
    """Start ``server`` on 127.0.0.1:``port`` and yield once it says it listens."""
    env = dict(os.environ)
    if server == HUDDLE:
        argv = [
            sys.executable,
            "-m",
            "huddle.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
        ]
        ready = re.compile(r"^huddle hub on ")
    elif server == NODE_SERVER:
        argv = [node_binary(), str(NODE_SERVER_JS)]
        env.update(HOST="127.0.0.1", PORT=str(port))
        env.pop("YPERSISTENCE", None)  # in memory, like the hub's doc; no LevelDB
        ready = re.compile(r"^running at ")
    elif server == HOCUSPOCUS:
        argv = [node_binary(), str(HOCUSPOCUS_JS)]
        env.update(HOST="127.0.0.1", PORT=str(port))
        ready = re.compile(r"^running at ")
    elif server == PYCRDT:
        argv = [sys.executable, "-m", "benchmarks.pycrdt_server", "--port", str(port)]
        ready = re.compile(r"^running at ")
    else:
        raise BenchmarkError(f"unknown server {server!r}; known: {', '.join(SERVERS)}")
    child = Child(server, argv, env, workdir / "server.log")
    try:
        deadline = time.monotonic() + timeout
        while not ready.search(child.next_line(deadline, "ready line")):
            pass
        yield child
    finally:
        child.stop(signal.SIGTERM)


class Loadgen(Child):
    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(deadline, f"'{event}' event")
            try:
                message: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue  # stray output from a library: not ours
            if message.get("event") == "error":
                raise BenchmarkError(f"load generator failed: {message.get('error')}")
            if message.get("event") == event:
                return message


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise BenchmarkError("Node.js is needed for the fan-out benchmark (node not on PATH)")
    return node


class Schedule(Protocol):
    """How the load generator's clients type: updates a second each, and the phases."""

    @property
    def rate(self) -> float: ...
    @property
    def warmup(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def grace(self) -> float: ...


def loadgen_config(
    url: str, clients: int, tokens: list[str] | None, client: str, schedule: Schedule
) -> dict[str, Any]:
    """The load generator's configuration: ``clients`` clients of ``client`` typing in ROOM."""
    return {
        "url": url,
        "room": ROOM,
        "clients": clients,
        "tokens": tokens,
        "rate": schedule.rate,
        "warmup": schedule.warmup,
        "duration": schedule.duration,
        "grace": schedule.grace,
        "clientsDir": str(CLIENTS_DIR),
        "client": client,
    }


Start = TypeVar("Start")
End = TypeVar("End")


def measure_window(
    workdir: Path,
    config: dict[str, Any],
    start: Callable[[int], Start],
    end: Callable[[int], End],
) -> tuple[Start, End, dict[str, Any]]:
    """Run the load generator on ``config`` (from :func:`loadgen_config`) to its result.

    ``start`` and ``end`` take their samples as the measured window opens and closes, given
    the load generator's pid; returns both samples and the load generator's result.
    """
    config_path = workdir / "loadgen.json"
    config_path.write_text(json.dumps(config))
    loadgen = Loadgen(
        "load generator",
        [node_binary(), str(LOADGEN), str(config_path)],
        os.environ,
        workdir / "loadgen.log",
    )
    try:
        loadgen.expect("ready", timeout=120)
        loadgen.expect("measure_start", timeout=config["warmup"] + 30)
        before = start(loadgen.pid)
        loadgen.expect("measure_end", timeout=config["duration"] + 30)
        after = end(loadgen.pid)
        result = loadgen.expect("result", timeout=config["grace"] + 60)
    finally:
        loadgen.stop()
    return before, after, result


# what the load generator's result gives as a case's fields, as it is
LOADGEN_FIELDS = (
    "sent",
    "offered_per_s",
    "expected_deliveries",
    "delivered",
    "missing",
    "delivered_per_s",
    "latency_ms",
    "loadgen_event_loop_utilization",
    "updates_per_event",
    "connect_s",
    "drain_s",
)


def window_fields(
    before: WindowEdge, after: WindowEdge, background: float, result: dict[str, Any]
) -> dict[str, Any]:
    """A case's fields that the fan-out and cluster benchmarks share: the load generator's
    figures, its CPU and the machine's over the window, and how busy the machine was before."""
    wall = after.wall - before.wall
    machine_total = max(1, after.machine_total - before.machine_total)
    return {
        **{name: result[name] for name in LOADGEN_FIELDS},
        "loadgen_cpu_percent": round(100 * (after.loadgen - before.loadgen) / wall, 1),
        "machine_busy_percent": round(
            100 * (after.machine_busy - before.machine_busy) / machine_total, 1
        ),
        "background_busy_percent": background,
        "loadgen": result,
    }


# -- one case ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseResult:
    server: str
    client: str  # the client library the load generator used against this server
    clients: int
    sent: int
    offered_per_s: float
    expected_deliveries: int
    delivered: int
    missing: int
    delivered_per_s: float
    latency_ms: dict[str, float | None]
    server_cpu_percent: float
    server_rss_mb: float
    server_peak_rss_mb: float
    loadgen_cpu_percent: float
    loadgen_event_loop_utilization: float
    machine_busy_percent: float
    background_busy_percent: float
    updates_per_event: float | None
    connect_s: float
    drain_s: float
    loadgen: dict[str, Any] = field(repr=False)

    @property
    def p99(self) -> float:
        value = self.latency_ms.get("p99")
        return float("inf") if value is None else value


def issue_tokens(data_dir: Path, rooms: list[str]) -> list[str]:
    """One edit token per entry of ``rooms`` (a room name once per client that joins it)."""
    # Imported here so that the benchmarks package loads without the hub installed.
    from huddle.server.auth import Role, TokenSigner

    signer = TokenSigner.for_data_dir(data_dir)
    return [
        signer.issue(room, f"bench{i}", Role.EDIT, timedelta(hours=1))
        for i, room in enumerate(rooms)
    ]


def client_library(server: str) -> str:
    """Which clients the load generator speaks to ``server`` with."""
    return "hocuspocus" if server == HOCUSPOCUS else "y-websocket"


def run_case(server: str, clients: int, options: FanoutOptions) -> CaseResult:
    background = background_busy_percent()
    with tempfile.TemporaryDirectory(prefix=f"huddle-fanout-{clients}-") as tmp:
        workdir = Path(tmp)
        tokens = issue_tokens(workdir / "data", [ROOM] * clients) if server == HUDDLE else None
        port = free_port()
        config = loadgen_config(
            f"ws://127.0.0.1:{port}", clients, tokens, client_library(server), options
        )
        with running_server(server, port, workdir) as srv:
            before, (after, (rss, peak)), result = measure_window(
                workdir,
                config,
                lambda loadgen: CpuSnapshot.take(srv.pid, loadgen),
                lambda loadgen: (CpuSnapshot.take(srv.pid, loadgen), process_memory_mb(srv.pid)),
            )
    wall = after.wall - before.wall
    return CaseResult(
        server=server,
        client=client_library(server),
        clients=clients,
        server_cpu_percent=round(100 * (after.server - before.server) / wall, 1),
        server_rss_mb=round(rss, 1),
        server_peak_rss_mb=round(peak, 1),
        **window_fields(before, after, background, result),
    )


# -- memory per open document -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocMemory:
    server: str
    client: str
    rooms_base: int
    rooms: int  # opened past the baseline
    doc_bytes: int
    base_rss_mb: float
    rss_mb: float
    per_doc_kb: float  # (rss - base_rss) / rooms
    open_s: float  # time to open the rooms past the baseline (connect, write, confirm)


def run_rooms(server: str, options: FanoutOptions) -> DocMemory:
    """Open ``rooms_base`` rooms, take the server's RSS, open ``rooms`` more, take it again.

    One client per room, each writing ``doc_bytes`` of text into its own document and waiting
    until the server has it; the baseline absorbs first-use costs (imports, pools, JIT).
    """
    total = options.rooms_base + options.rooms
    with tempfile.TemporaryDirectory(prefix="huddle-fanout-rooms-") as tmp:
        workdir = Path(tmp)
        names = [f"{ROOM}{k}" for k in range(total)]
        tokens = issue_tokens(workdir / "data", names) if server == HUDDLE else None
        port = free_port()
        config = {
            "url": f"ws://127.0.0.1:{port}",
            "room": ROOM,
            "clients": total,
            "mode": "rooms",
            "rooms": [options.rooms_base, total],
            "roomTokens": tokens,
            "docBytes": options.doc_bytes,
            "clientsDir": str(CLIENTS_DIR),
            "client": client_library(server),
        }
        config_path = workdir / "loadgen.json"
        config_path.write_text(json.dumps(config))
        with running_server(server, port, workdir) as srv:
            loadgen = Loadgen(
                "load generator (rooms)",
                [node_binary(), str(LOADGEN), str(config_path)],
                os.environ,
                workdir / "loadgen.log",
                stdin=True,
            )
            try:
                loadgen.expect("rooms_open", timeout=120)
                base, _ = process_memory_mb(srv.pid)
                loadgen.send_line("next")
                opened = loadgen.expect("rooms_open", timeout=300)
                rss, _ = process_memory_mb(srv.pid)
            finally:
                loadgen.stop()
    return DocMemory(
        server=server,
        client=client_library(server),
        rooms_base=options.rooms_base,
        rooms=options.rooms,
        doc_bytes=options.doc_bytes,
        base_rss_mb=round(base, 1),
        rss_mb=round(rss, 1),
        per_doc_kb=round((rss - base) * 1024 / options.rooms, 1),
        open_s=round(float(opened["open_s"]), 2),
    )


# -- verdict -------------------------------------------------------------------------------


def evaluate(cases: list[CaseResult]) -> list[Check]:
    by_key = {(c.server, c.clients): c for c in cases}
    checks: list[Check] = []
    for n in sorted({c.clients for c in cases}):
        hub = by_key.get((HUDDLE, n))
        for name in PEERS:
            peer = by_key.get((name, n))
            if hub is None or peer is None:
                continue
            checks.append(
                Check(
                    f"N={n}: throughput >= {name}",
                    hub.delivered_per_s >= peer.delivered_per_s * (1 - THROUGHPUT_TOLERANCE),
                    f"{hub.delivered_per_s:,.0f}/s vs {peer.delivered_per_s:,.0f}/s",
                )
            )
            checks.append(
                Check(
                    f"N={n}: p99 <= {name}'s p99",
                    hub.p99 <= peer.p99,
                    f"{ms(hub.latency_ms.get('p99'))} ms vs {ms(peer.latency_ms.get('p99'))} ms",
                )
            )
    hub_small = by_key.get((HUDDLE, P99_TARGET_CLIENTS))
    if hub_small is not None:
        checks.append(
            Check(
                f"N={P99_TARGET_CLIENTS}: p99 < {P99_TARGET_MS:g} ms",
                hub_small.p99 < P99_TARGET_MS,
                f"{ms(hub_small.latency_ms.get('p99'))} ms",
            )
        )
    for case in cases:
        if case.server == HUDDLE:
            checks.append(
                Check(
                    f"N={case.clients}: every update delivered",
                    case.missing == 0,
                    f"{case.missing:,} of {case.expected_deliveries:,} missing",
                )
            )
    return checks


# -- report --------------------------------------------------------------------------------


def _python_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def environment() -> dict[str, Any]:
    clients = CLIENTS_DIR / "node_modules"
    hocuspocus = NODE_DIR / "node_modules" / "@hocuspocus"
    return {
        **run_facts(),
        "python": platform.python_version(),
        "node": command_output(node_binary(), "--version"),
        "clients": {
            "yjs": package_version(clients / "yjs"),
            "y-websocket": package_version(clients / "y-websocket"),
            "ws": package_version(clients / "ws"),
        },
        "reference_server": {
            "y-websocket": package_version(NODE_DIR / "node_modules" / "y-websocket"),
            "yjs": package_version(NODE_DIR / "node_modules" / "yjs"),
            "ws": package_version(NODE_DIR / "node_modules" / "ws"),
        },
        "hocuspocus": {
            "server": package_version(hocuspocus / "server"),
            "provider": package_version(hocuspocus / "provider"),
            "yjs": package_version(NODE_DIR / "node_modules" / "yjs"),
        },
        "pycrdt_websocket": {
            "pycrdt-websocket": _python_version("pycrdt-websocket"),
            "pycrdt": _python_version("pycrdt"),
        },
        "huddle_env": huddle_env(),
    }


def markdown(
    cases: list[CaseResult],
    memory: list[DocMemory],
    checks: list[Check],
    options: FanoutOptions,
    env: dict[str, Any],
) -> str:
    clients = env["clients"]
    hp = env["hocuspocus"]
    lines = [
        "# Fan-out benchmark",
        "",
        f"N clients in one room, each inserting a small token (`|sender:seq|`) at the end of "
        f"one shared `Y.Text` {options.rate:g} times a second: stock yjs {clients['yjs']} + "
        f"y-websocket {clients['y-websocket']} clients, all in one Node process "
        f"({options.warmup:g} s warmup, {options.duration:g} s measured). Hocuspocus "
        "prefixes every message with the document's name, which stock y-websocket clients "
        f"do not speak: against it the clients are `@hocuspocus/provider` {hp['provider']} "
        f"(yjs {hp['yjs']}), same load generator, same schedule (column *client*).",
        "",
        "- *offered/s*: updates sent per second times N - 1 receivers (what a server that "
        "loses nothing delivers); *delivered/s*: (update, receiving client) pairs received in "
        "the measured window, per second.",
        "- *p50/p99/max*: receive time minus send time on the load generator's clock, for the "
        f"updates sent in the window; *missing*: of those, deliveries not arrived "
        f"{options.grace:g} s after the window.",
        "- *upd/msg*: updates per remote text change a client applied (above 1 where the "
        "server merges updates into fewer messages).",
        "- *CPU %*: the server process's CPU time over the window (100 % = one core); "
        "*RSS*: at the window's end (peak since start); *loadgen CPU %*: the same for the "
        "load generator; *machine %*: all cores busy over the window; *background %*: all "
        "cores busy in the second before the case started (work that is not ours).",
        "",
        f"Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x {env['cpu_model']}, "
        f"Python {env['python']}, Node {env['node']}. Peers, all in memory: y-websocket "
        f"{env['reference_server']['y-websocket']} `bin/server.js`; `@hocuspocus/server` "
        f"{hp['server']} with no extensions (`benchmarks/node/hocuspocus-server.mjs`); "
        f"pycrdt-websocket {env['pycrdt_websocket']['pycrdt-websocket']} (pycrdt "
        f"{env['pycrdt_websocket']['pycrdt']}) `WebsocketServer` behind `websockets` "
        "(`benchmarks/pycrdt_server.py`). Huddle commits every update to SQLite before "
        "relaying it, and runs as `huddle serve` starts by default: with the embedded model "
        "(SmolLM2-135M on llama.cpp) loaded, about 230 MB of its RSS.",
        "",
        "| server | client | N | offered/s | delivered/s | missing | p50 ms | p99 ms | max ms "
        "| upd/msg | CPU % | RSS MB (peak) | loadgen CPU % | machine % | background % |",
        "| --- | --- |" + " ---: |" * 13,
    ]
    for c in cases:
        lat = c.latency_ms
        lines.append(
            f"| {c.server} | {c.client} | {c.clients} "
            f"| {c.offered_per_s * (c.clients - 1):,.0f} "
            f"| {c.delivered_per_s:,.0f} | {c.missing:,} | {ms(lat.get('p50'))} "
            f"| {ms(lat.get('p99'))} | {ms(lat.get('max'))} "
            f"| {c.updates_per_event or 0:.1f} | {c.server_cpu_percent:.0f} "
            f"| {c.server_rss_mb:.0f} ({c.server_peak_rss_mb:.0f}) "
            f"| {c.loadgen_cpu_percent:.0f} | {c.machine_busy_percent:.0f} "
            f"| {c.background_busy_percent:.0f} |"
        )
    lines += ["", *_warnings(cases)]
    if memory:
        m0 = memory[0]
        lines += [
            "## Memory per open document",
            "",
            f"{m0.rooms_base} rooms open (baseline RSS), then {m0.rooms} more: one client "
            f"per room, each writing {m0.doc_bytes:,} bytes of text into its document and "
            "waiting until the server has it. *per doc*: RSS growth / rooms added, which "
            "includes each room's one connection.",
            "",
            "| server | client | rooms | baseline RSS MB | RSS MB | per doc KB | open s |",
            "| --- | --- |" + " ---: |" * 5,
            *(
                f"| {m.server} | {m.client} | {m.rooms_base} + {m.rooms} | {m.base_rss_mb:.1f} "
                f"| {m.rss_mb:.1f} | {m.per_doc_kb:.1f} | {m.open_s:.1f} |"
                for m in memory
            ),
            "",
        ]
    lines += [
        "## Targets",
        "",
        f"Throughput within {THROUGHPUT_TOLERANCE:.0%} of a peer's counts as equal "
        "(deliveries in flight at the window's edges).",
        "",
    ]
    lines += targets_lines(checks)
    return "\n".join(lines)


LOADGEN_SATURATED_PERCENT = 85.0


def _warnings(cases: list[CaseResult]) -> list[str]:
    notes = background_warning([c.background_busy_percent for c in cases])
    behind = [c for c in cases if c.latency_ms.get("p50") is None and c.missing > 0]
    if behind:
        which = ", ".join(f"{c.server} N={c.clients}" for c in behind)
        notes += [
            f"**Fell behind**: {which}: none of the updates sent in the window reached the "
            "other clients within the grace after it (p50/p99 '-'); what arrived in the "
            "window (*delivered/s*) was older updates from a growing backlog.",
            "",
        ]
    saturated = [c for c in cases if c.loadgen_cpu_percent > LOADGEN_SATURATED_PERCENT]
    if saturated:
        which = ", ".join(f"{c.server} N={c.clients}" for c in saturated)
        notes += [
            f"**Note**: the load generator (one single-threaded Node process) was saturated "
            f"(> {LOADGEN_SATURATED_PERCENT:.0f} % of a core) in: {which}. There the clients, "
            "not the server, set the pace: sends fall behind the 10/s schedule and latency "
            "includes the clients' own queueing.",
            "",
        ]
    return notes


# -- entry point ---------------------------------------------------------------------------


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--fanout-clients",
        type=number_list(2, "client counts"),
        metavar="N,N,...",
        help=f"client counts (default {','.join(map(str, FULL.clients))})",
    )
    add_servers_flag(group, "fanout", SERVERS)
    group.add_argument(
        "--fanout-rate",
        type=float,
        metavar="HZ",
        help=f"updates per second per client (default {FULL.rate:g})",
    )
    group.add_argument(
        "--fanout-warmup",
        type=float,
        metavar="S",
        help=f"seconds before measuring (default {FULL.warmup:g}, quick {QUICK.warmup:g})",
    )
    add_duration_flag(group, "fanout", FULL.duration, QUICK.duration)
    group.add_argument(
        "--fanout-grace",
        type=float,
        metavar="S",
        help=f"seconds to wait for late deliveries (default {FULL.grace:g})",
    )
    group.add_argument(
        "--fanout-rooms",
        type=int,
        metavar="D",
        help=f"memory per document: rooms opened past the baseline of {FULL.rooms_base} "
        f"(default {FULL.rooms}, quick {QUICK.rooms}; 0 skips it)",
    )


def options_from(settings: Settings, args: argparse.Namespace) -> FanoutOptions:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for name in ("clients", "servers", "rate", "warmup", "duration", "grace", "rooms"):
        value = getattr(args, f"fanout_{name}", None)
        if value is not None:
            overrides[name] = value
    return replace(options, **overrides)


def _check_peers(servers: tuple[str, ...]) -> None:
    if NODE_SERVER in servers and not NODE_SERVER_JS.exists():
        raise BenchmarkError(f"{NODE_SERVER_JS} is missing: run ./dev setup")
    if HOCUSPOCUS in servers and not (NODE_DIR / "node_modules" / "@hocuspocus").is_dir():
        raise BenchmarkError("@hocuspocus/server is missing in benchmarks/node: run ./dev setup")
    if PYCRDT in servers and _python_version("pycrdt-websocket") == "?":
        raise BenchmarkError("pycrdt-websocket is not installed: run ./dev setup")


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = options_from(settings, args)
    _check_peers(options.servers)
    env = environment()
    cases: list[CaseResult] = []
    for clients in options.clients:
        for server in options.servers:
            print(f"[fanout] {server}, {clients} clients ...", file=sys.stderr, flush=True)
            case = run_case(server, clients, options)
            print(
                f"[fanout]   {case.delivered_per_s:,.0f} delivered/s, "
                f"p50 {ms(case.latency_ms.get('p50'))} ms, "
                f"p99 {ms(case.latency_ms.get('p99'))} ms, {case.missing} missing, "
                f"server CPU {case.server_cpu_percent:.0f} %",
                file=sys.stderr,
                flush=True,
            )
            cases.append(case)
    memory: list[DocMemory] = []
    for server in options.servers if options.rooms > 0 else ():
        print(
            f"[fanout] {server}, memory per document ({options.rooms} rooms) ...",
            file=sys.stderr,
            flush=True,
        )
        mem = run_rooms(server, options)
        print(
            f"[fanout]   {mem.per_doc_kb:.1f} KB per document "
            f"(RSS {mem.base_rss_mb:.0f} -> {mem.rss_mb:.0f} MB)",
            file=sys.stderr,
            flush=True,
        )
        memory.append(mem)
    checks = evaluate(cases)
    text = markdown(cases, memory, checks, options, env)
    stem = "fanout-quick" if settings.quick else "fanout"
    report = {
        "benchmark": "fanout",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": env,
        "cases": [asdict(c) for c in cases],
        "memory_per_document": [asdict(m) for m in memory],
        **target_fields(checks),
    }
    write_results(settings.results_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    name="fanout",
    help="N clients in one room, hub vs y-websocket@1.5.4, Hocuspocus and pycrdt-websocket; "
    "memory per open document",
    add_arguments=add_arguments,
    run=run,
)
