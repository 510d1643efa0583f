"""Cluster fan-out: C clients in one room spread round-robin over the nodes of a cluster.

The hub as a cluster is K ``huddle serve --store postgresql://...`` nodes on one PostgreSQL;
the clustered peer is K ``@hocuspocus/server`` 3.4.4 instances with
``@hocuspocus/extension-redis`` on one ``redis-server`` (``node/hocuspocus-server.mjs`` with
``REDIS_PORT``). For every client count and every (server, K) this starts the nodes, runs the
fan-out load generator (``node/loadgen.mjs`` with ``urls``: client i joins node i mod K, each
client inserts a small token 10 times a second), samples the CPU of every node, of the store
(PostgreSQL: the postmaster and its backends; redis-server) and of the load generator from
``/proc`` over the measured window, and stops the nodes. One PostgreSQL and one redis-server
serve the whole run (a fresh database, or a fresh redis key prefix, per case); the cases
alternate between servers so that both see the same machine in the same run.

Latency is split by where the sender and the receiver are connected: the same node (relayed in
that node's process) or different ones (through the store). Every token sent, warmup included,
is followed until every other client has it: *missing all* counts the ones that never arrived.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import Benchmark, BenchmarkError, Settings
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
from benchmarks.fanout import (
    CLIENTS_DIR,
    CLK_TCK,
    HOCUSPOCUS_JS,
    LOADGEN_SATURATED_PERCENT,
    NODE_DIR,
    ROOM,
    Child,
    WindowEdge,
    background_busy_percent,
    free_port,
    loadgen_config,
    machine_cpu_ticks,
    measure_window,
    node_binary,
    process_memory_mb,
    stat_fields,
    window_fields,
)

HUDDLE = "huddle"
HOCUSPOCUS = "hocuspocus+redis"
SERVERS = (HUDDLE, HOCUSPOCUS)
LATENCY_RATIO_TARGET = 2.0  # cross-node p99 within 2x of same-node p99
LATENCY_TARGET_CLIENTS = 50
SCALING_TARGET = 2.0  # delivered/s with 3 nodes at least 2x one node
SCALING_NODES = 3


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    clients: tuple[int, ...] = (20, 50)
    huddle_nodes: tuple[int, ...] = (1, 2, 3)
    hocuspocus_nodes: tuple[int, ...] = (1, 2)
    servers: tuple[str, ...] = SERVERS
    rate: float = 10.0
    warmup: float = 3.0
    duration: float = 10.0
    grace: float = 5.0


FULL = ClusterOptions()
QUICK = ClusterOptions(clients=(20,), warmup=1.0, duration=3.0, grace=3.0)


# -- /proc sampling ------------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and every live descendant, plus what they reaped of exited children.

    utime + stime + cutime + cstime over the tree: a PostgreSQL backend that exits inside the
    window is still counted, in its parent's cutime/cstime once the postmaster reaped it.
    """
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue  # exited while we looked
        child = int(entry.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = sum(int(v) for v in fields[11:15]) / CLK_TCK
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += children.get(current, [])
    return total


@dataclass(frozen=True, slots=True)
class CpuSnapshot(WindowEdge):
    nodes: tuple[float, ...]
    store: float

    @classmethod
    def take(cls, nodes: list[int], store: int, loadgen: int) -> CpuSnapshot:
        busy, total = machine_cpu_ticks()
        return cls(
            wall=time.monotonic(),
            nodes=tuple(tree_cpu_seconds(pid) for pid in nodes),
            store=tree_cpu_seconds(store),
            loadgen=tree_cpu_seconds(loadgen),
            machine_busy=busy,
            machine_total=total,
        )


# -- the stores and the nodes --------------------------------------------------------------


@dataclass(slots=True)
class Stores:
    """The one PostgreSQL and the one redis-server of a run, started on first use."""

    stack: ExitStack
    postgres: Any = None  # tests.support.postgres.PostgresServer
    redis: Any = None  # tests.support.redis.RedisServer
    cases: int = 0  # names this case's database or redis key prefix

    def postgres_database(self) -> tuple[str, int]:
        """A fresh database's URL and the postmaster's pid."""
        if self.postgres is None:
            try:
                from tests.support.postgres import PostgresServer
            except ImportError as exc:
                raise BenchmarkError(f"cannot start PostgreSQL: {exc}") from exc
            try:
                # headroom for every node's connections (pool, listener, locks) at once
                server = PostgresServer("max_connections=300")
                self.stack.callback(server.close)
                self.postgres = server.start()
            except AssertionError as exc:  # the support classes fail the way tests do
                raise BenchmarkError(str(exc)) from exc
        self.cases += 1
        url: str = self.postgres.new_database(f"cluster{self.cases}")
        return url, int(self.postgres.proc.pid)

    def redis_server(self) -> tuple[int, int, str]:
        """redis-server's port and pid, and a fresh key prefix (a case's channels only)."""
        if self.redis is None:
            try:
                from tests.support.redis import RedisServer
            except ImportError as exc:
                raise BenchmarkError(f"cannot start redis-server: {exc}") from exc
            try:
                server = RedisServer()
                self.stack.callback(server.close)
                self.redis = server.start()
            except AssertionError as exc:
                raise BenchmarkError(str(exc)) from exc
        self.cases += 1
        return int(self.redis.port), int(self.redis.proc.pid), f"case{self.cases}"


def _huddle(*args: str) -> list[str]:
    return [sys.executable, "-m", "huddle.cli", *args]


def issue_tokens(store_url: str, room: str, clients: int) -> list[str]:
    """One edit token per client, signed with the cluster's key as ``huddle invite --store``
    does: valid on every node. Opening the store also creates its schema, so the nodes can
    start together."""
    # Imported here so that the benchmarks package loads without the hub installed.
    from huddle.server.auth import Role, TokenSigner
    from huddle.server.postgres import PostgresDatabase

    db = PostgresDatabase(store_url)
    try:
        signer = TokenSigner(db.signing_key())
    finally:
        db.close()
    return [signer.issue(room, f"bench{i}", Role.EDIT, timedelta(hours=1)) for i in range(clients)]


def _node_argv(server: str, port: int, workdir: Path, store: str) -> tuple[list[str], str]:
    """(argv, the line it prints once it listens) of one node."""
    if server == HUDDLE:
        argv = _huddle(
            "serve",
            "--store",
            store,
            "--data-dir",
            str(workdir / f"node-{port}"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        )
        return argv, "huddle hub on "
    return [node_binary(), str(HOCUSPOCUS_JS)], "running at "


@contextmanager
def running_nodes(
    server: str, count: int, workdir: Path, store: str, redis_port: int | None = None
) -> Iterator[list[tuple[int, Child]]]:
    """Start ``count`` nodes of ``server`` at once; yield (port, process) once all listen."""
    nodes: list[tuple[int, Child]] = []
    env = dict(os.environ)
    if redis_port is not None:
        env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_port), REDIS_PREFIX=store)
    try:
        ready = ""
        for k in range(count):
            port = free_port()
            argv, ready = _node_argv(server, port, workdir, store)
            node_env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
            child = Child(f"{server} node {k + 1}", argv, node_env, workdir / f"node{k}.log")
            nodes.append((port, child))
        deadline = time.monotonic() + 60
        for _port, child in nodes:
            while not child.next_line(deadline, "ready line").startswith(ready):
                pass
        yield nodes
    finally:
        # together: a hub node takes about a second to shut down
        with ThreadPoolExecutor(max(1, len(nodes))) as pool:
            list(pool.map(lambda node: node[1].stop(signal.SIGTERM), nodes))


# -- one case ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseResult:
    server: str
    nodes: int
    clients: int
    sent: int
    offered_per_s: float
    expected_deliveries: int
    delivered: int
    missing: int
    delivered_per_s: float
    latency_ms: dict[str, float | None]
    same_node_ms: dict[str, float | None]  # p50, p99, count
    cross_node_ms: dict[str, float | None]
    missing_same_node: int
    missing_cross_node: int
    sent_all: int
    missing_all: int  # deliveries of any token sent (warmup included) that never arrived
    converged: bool  # every client ended with the same text
    node_cpu_percent: list[float]
    node_rss_mb: list[float]
    store_cpu_percent: float  # PostgreSQL (postmaster + backends) or redis-server
    loadgen_cpu_percent: float
    loadgen_event_loop_utilization: float
    machine_busy_percent: float
    background_busy_percent: float
    updates_per_event: float | None
    connect_s: float
    drain_s: float
    loadgen: dict[str, Any] = field(repr=False)

    @property
    def node_ms_per_update(self) -> float | None:
        """CPU milliseconds one node (the mean) spends per update sent into the room.

        Every node holding a room applies every update of it, whichever node it came in on,
        while relaying to clients splits over the nodes: where this stays near one node's
        figure as nodes are added, a room's update rate, not its fan-out, is the ceiling:
        1000 / this is roughly the updates a second (at this fan-out) that one core lets a
        node keep up with, however many nodes there are.
        """
        if self.offered_per_s <= 0:
            return None
        mean_cores = sum(self.node_cpu_percent) / len(self.node_cpu_percent) / 100
        return 1000 * mean_cores / self.offered_per_s

    @property
    def store_ms_per_update(self) -> float | None:
        """CPU milliseconds of PostgreSQL (or redis-server) per update sent into the room."""
        if self.offered_per_s <= 0:
            return None
        return 1000 * self.store_cpu_percent / 100 / self.offered_per_s


def run_case(
    server: str, nodes: int, clients: int, options: ClusterOptions, stores: Stores
) -> CaseResult:
    background = background_busy_percent()
    with tempfile.TemporaryDirectory(prefix=f"huddle-cluster-{nodes}x{clients}-") as tmp:
        workdir = Path(tmp)
        tokens: list[str] | None = None
        redis_port: int | None = None
        if server == HUDDLE:
            store, store_pid = stores.postgres_database()
            tokens = issue_tokens(store, ROOM, clients)
        else:
            redis_port, store_pid, store = stores.redis_server()
        with running_nodes(server, nodes, workdir, store, redis_port) as started:
            urls = [f"ws://127.0.0.1:{port}" for port, _ in started]
            client = "y-websocket" if server == HUDDLE else "hocuspocus"
            config = {**loadgen_config(urls[0], clients, tokens, client, options), "urls": urls}
            pids = [child.pid for _, child in started]
            before, (after, rss), result = measure_window(
                workdir,
                config,
                lambda loadgen: CpuSnapshot.take(pids, store_pid, loadgen),
                lambda loadgen: (
                    CpuSnapshot.take(pids, store_pid, loadgen),
                    [process_memory_mb(pid)[0] for pid in pids],
                ),
            )
    wall = after.wall - before.wall

    def percent(seconds: float) -> float:
        return round(100 * seconds / wall, 1)

    return CaseResult(
        server=server,
        nodes=nodes,
        clients=clients,
        same_node_ms=result["latency_same_node_ms"],
        cross_node_ms=result["latency_cross_node_ms"],
        missing_same_node=result["missing_same_node"],
        missing_cross_node=result["missing_cross_node"],
        sent_all=result["sent_all"],
        missing_all=result["missing_all"],
        converged=result["converged"],
        node_cpu_percent=[percent(a - b) for a, b in zip(after.nodes, before.nodes, strict=True)],
        node_rss_mb=[round(r, 1) for r in rss],
        store_cpu_percent=percent(after.store - before.store),
        **window_fields(before, after, background, result),
    )


# -- verdict -------------------------------------------------------------------------------


def _p99(stats: dict[str, float | None]) -> float:
    value = stats.get("p99")
    return float("inf") if value is None else value


def _cpu(case: CaseResult) -> str:
    nodes = " + ".join(f"{v:.0f}" for v in case.node_cpu_percent)
    return f"node CPU {nodes} %, store {case.store_cpu_percent:.0f} %"


def latency_clients(cases: list[CaseResult]) -> int:
    """The client count the latency target is judged at: 50, or the largest that ran."""
    counts = {c.clients for c in cases}
    return LATENCY_TARGET_CLIENTS if LATENCY_TARGET_CLIENTS in counts else max(counts)


def evaluate(cases: list[CaseResult]) -> list[Check]:
    hub = [c for c in cases if c.server == HUDDLE]
    checks: list[Check] = []
    if not hub:
        return checks
    at = latency_clients(hub)
    for case in (c for c in hub if c.clients == at and c.nodes > 1):
        same, cross = _p99(case.same_node_ms), _p99(case.cross_node_ms)
        checks.append(
            Check(
                f"{case.nodes} nodes, N={at}: cross-node p99 <= {LATENCY_RATIO_TARGET:g}x "
                "same-node p99",
                cross <= LATENCY_RATIO_TARGET * same,
                f"{ms(case.cross_node_ms.get('p99'))} ms vs {ms(case.same_node_ms.get('p99'))} ms"
                f" (x{cross / same:.2f})",
            )
        )
    # judged at the heaviest load that ran: below it one node has room to spare anyway
    n = max(c.clients for c in hub)
    by_nodes = {c.nodes: c for c in hub if c.clients == n}
    one, many = by_nodes.get(1), by_nodes.get(SCALING_NODES)
    if one is not None and many is not None:
        ratio = many.delivered_per_s / max(one.delivered_per_s, 1e-9)
        offered = one.offered_per_s * (n - 1)
        checks.append(
            Check(
                f"N={n}: delivered/s with {SCALING_NODES} nodes >= {SCALING_TARGET:g}x one node",
                ratio >= SCALING_TARGET,
                f"{many.delivered_per_s:,.0f}/s vs {one.delivered_per_s:,.0f}/s (x{ratio:.2f}); "
                f"one node delivered {one.delivered_per_s / max(offered, 1e-9):.0%} of the "
                f"{offered:,.0f}/s offered at {_cpu(one)}; {SCALING_NODES} nodes: {_cpu(many)}; "
                f"load generator {one.loadgen_cpu_percent:.0f} / "
                f"{many.loadgen_cpu_percent:.0f} % CPU, machine {one.machine_busy_percent:.0f} / "
                f"{many.machine_busy_percent:.0f} % busy",
            )
        )
    for case in hub:
        checks.append(
            Check(
                f"{case.nodes} node{'s' if case.nodes > 1 else ''}, N={case.clients}: "
                "no update lost, every client converged",
                case.missing_all == 0 and case.converged,
                f"{case.missing_all:,} of {case.sent_all * (case.clients - 1):,} deliveries "
                f"missing, {'converged' if case.converged else 'texts differ'}",
            )
        )
    return checks


# -- report --------------------------------------------------------------------------------


def environment(stores: Stores) -> dict[str, Any]:
    hocuspocus = NODE_DIR / "node_modules" / "@hocuspocus"
    clients = CLIENTS_DIR / "node_modules"
    postgres = stores.postgres
    return {
        **run_facts(),
        "node": command_output(node_binary(), "--version"),
        "clients": {
            "yjs": package_version(clients / "yjs"),
            "y-websocket": package_version(clients / "y-websocket"),
        },
        "hocuspocus": {
            "server": package_version(hocuspocus / "server"),
            "extension-redis": package_version(hocuspocus / "extension-redis"),
            "provider": package_version(hocuspocus / "provider"),
            "ioredis": package_version(NODE_DIR / "node_modules" / "ioredis"),
        },
        # "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)": the version and its build
        "postgres": (
            command_output(str(postgres.bin / "postgres"), "--version").split(") ", 1)[-1]
            if postgres
            else None
        ),
        # "Redis server v=7.0.15 sha=...": the version
        "redis": (
            command_output("redis-server", "--version").split("v=", 1)[-1].split()[0]
            if stores.redis
            else None
        ),
        "huddle_env": huddle_env(),
    }


def _server_label(case: CaseResult) -> str:
    return "huddle + PostgreSQL" if case.server == HUDDLE else "hocuspocus + redis"


def markdown(
    cases: list[CaseResult], checks: list[Check], options: ClusterOptions, env: dict[str, Any]
) -> str:
    hp = env["hocuspocus"]
    lines = [
        "# Cluster fan-out benchmark",
        "",
        f"N clients in one room, spread round-robin over K nodes (client i on node i mod K), "
        f"each inserting a small token (`|sender:seq|`) at the end of one shared `Y.Text` "
        f"{options.rate:g} times a second, all clients in one Node process "
        f"({options.warmup:g} s warmup, {options.duration:g} s measured). Huddle: K "
        f"`huddle serve --store postgresql://...` nodes on one PostgreSQL "
        f"({env['postgres'] or '-'}), stock yjs {env['clients']['yjs']} + y-websocket "
        f"{env['clients']['y-websocket']} clients; every update is committed in PostgreSQL "
        "before any node relays it. Hocuspocus: K `@hocuspocus/server` "
        f"{hp['server']} instances with `@hocuspocus/extension-redis` {hp['extension-redis']} "
        f"on one redis-server ({env['redis'] or '-'}), documents in memory, "
        f"`@hocuspocus/provider` {hp['provider']} clients.",
        "",
        "- *delivered/s*: (update, receiving client) pairs received in the measured window, per "
        "second; *offered/s*: updates sent per second times N - 1.",
        "- *p50/p99*: receive time minus send time (one clock), for updates sent in the window; "
        "*same node*: sender and receiver on one node; *cross node*: on different nodes.",
        f"- *missing all*: deliveries of any token sent (warmup included) not arrived "
        f"{options.grace:g} s after the window; *conv.*: every client ended with the same text.",
        "- *node CPU %*: each node's process over the window (100 % = one core); *store CPU %*: "
        "PostgreSQL's postmaster and backends, or redis-server; *node ms / update*: CPU one "
        "node (the mean) spent per update sent into the room (every node applies every update "
        "of a room it holds; the fan-out to clients is what splits over nodes); *store ms / "
        "update*: the same for the store; *loadgen %*: the load generator; *machine %*: all "
        "cores busy.",
        "",
        f"Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x {env['cpu_model']}, "
        f"Node {env['node']}: every node, the store and the load generator share these cores.",
        "",
        "| server | K | N | offered/s | delivered/s | missing all | conv. | p50 ms | p99 ms "
        "| same-node p50 / p99 ms | cross-node p50 / p99 ms | node CPU % | store CPU % "
        "| node ms / update | store ms / update | loadgen % | machine % |",
        "| --- |" + " ---: |" * 5 + " --- |" + " ---: |" * 10,
    ]
    for c in cases:
        lat, same, cross = c.latency_ms, c.same_node_ms, c.cross_node_ms
        per_node, per_store = c.node_ms_per_update, c.store_ms_per_update
        lines.append(
            f"| {_server_label(c)} | {c.nodes} | {c.clients} "
            f"| {c.offered_per_s * (c.clients - 1):,.0f} | {c.delivered_per_s:,.0f} "
            f"| {c.missing_all:,} | {'yes' if c.converged else '**no**'} "
            f"| {ms(lat.get('p50'))} | {ms(lat.get('p99'))} "
            f"| {ms(same.get('p50'))} / {ms(same.get('p99'))} "
            f"| {ms(cross.get('p50'))} / {ms(cross.get('p99'))} "
            f"| {' + '.join(f'{v:.0f}' for v in c.node_cpu_percent)} "
            f"| {c.store_cpu_percent:.0f} | {_fixed(per_node)} | {_fixed(per_store)} "
            f"| {c.loadgen_cpu_percent:.0f} | {c.machine_busy_percent:.0f} |"
        )
    lines += ["", *_warnings(cases), "## Targets", ""]
    lines += targets_lines(checks)
    return "\n".join(lines)


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _warnings(cases: list[CaseResult]) -> list[str]:
    notes = background_warning([c.background_busy_percent for c in cases])
    saturated = [c for c in cases if c.loadgen_cpu_percent > LOADGEN_SATURATED_PERCENT]
    if saturated:
        which = ", ".join(f"{_server_label(c)} K={c.nodes} N={c.clients}" for c in saturated)
        notes += [
            f"**Note**: the load generator (one single-threaded Node process) was saturated "
            f"(> {LOADGEN_SATURATED_PERCENT:.0f} % of a core) in: {which}. There the clients, "
            "not the servers, set the pace.",
            "",
        ]
    full = [c for c in cases if c.machine_busy_percent > 90]
    if full:
        notes += [
            f"**Note**: all cores were busy (> 90 %) in {len(full)} of the cases: more nodes on "
            "this machine share the same cores, so added nodes cannot add throughput there; "
            "the per-node CPU (*node CPU %*, *node ms / update*) says what a node on cores of "
            "its own would take.",
            "",
        ]
    return notes


# -- entry point ---------------------------------------------------------------------------


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--cluster-clients",
        type=number_list(2),
        metavar="N,N,...",
        help=f"client counts (default {','.join(map(str, FULL.clients))}, quick "
        f"{','.join(map(str, QUICK.clients))})",
    )
    group.add_argument(
        "--cluster-huddle-nodes",
        type=number_list(1),
        metavar="K,K,...",
        help=f"hub node counts (default {','.join(map(str, FULL.huddle_nodes))})",
    )
    group.add_argument(
        "--cluster-hocuspocus-nodes",
        type=number_list(1),
        metavar="K,K,...",
        help=f"Hocuspocus instance counts (default {','.join(map(str, FULL.hocuspocus_nodes))})",
    )
    add_servers_flag(group, "cluster", SERVERS)
    add_duration_flag(group, "cluster", FULL.duration, QUICK.duration)


def options_from(settings: Settings, args: argparse.Namespace) -> ClusterOptions:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for name in ("clients", "huddle_nodes", "hocuspocus_nodes", "servers", "duration"):
        value = getattr(args, f"cluster_{name}", None)
        if value is not None:
            overrides[name] = value
    return replace(options, **overrides)


def plan(options: ClusterOptions) -> list[tuple[str, int, int]]:
    """(server, nodes, clients) in run order: the servers alternate at each node count."""
    counts = {HUDDLE: options.huddle_nodes, HOCUSPOCUS: options.hocuspocus_nodes}
    most = max((len(counts[s]) for s in options.servers), default=0)
    return [
        (server, counts[server][k], clients)
        for clients in options.clients
        for k in range(most)
        for server in options.servers
        if k < len(counts[server])
    ]


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = options_from(settings, args)
    if (
        HOCUSPOCUS in options.servers
        and not (NODE_DIR / "node_modules" / "@hocuspocus" / "extension-redis").is_dir()
    ):
        raise BenchmarkError(
            "@hocuspocus/extension-redis is missing in benchmarks/node: ./dev setup"
        )
    cases: list[CaseResult] = []
    with ExitStack() as stack:
        stores = Stores(stack)
        for server, nodes, clients in plan(options):
            print(
                f"[cluster] {server}, {nodes} node(s), {clients} clients ...",
                file=sys.stderr,
                flush=True,
            )
            case = run_case(server, nodes, clients, options, stores)
            print(
                f"[cluster]   {case.delivered_per_s:,.0f} delivered/s, "
                f"p99 {ms(case.latency_ms.get('p99'))} ms (same node "
                f"{ms(case.same_node_ms.get('p99'))}, cross {ms(case.cross_node_ms.get('p99'))})"
                f", {case.missing_all} missing, {_cpu(case)}",
                file=sys.stderr,
                flush=True,
            )
            cases.append(case)
        env = environment(stores)
    checks = evaluate(cases)
    text = markdown(cases, checks, options, env)
    report = {
        "benchmark": "cluster",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": env,
        "cases": [
            {
                **asdict(c),
                "node_ms_per_update": c.node_ms_per_update,
                "store_ms_per_update": c.store_ms_per_update,
            }
            for c in cases
        ],
        **target_fields(checks),
    }
    write_results(
        settings.results_dir, "cluster-quick" if settings.quick else "cluster", report, text
    )
    return text


BENCHMARK = Benchmark(
    name="cluster",
    help="C clients in one room over 1-3 hub nodes on PostgreSQL vs Hocuspocus instances on "
    "redis; same-node vs cross-node latency, CPU per node",
    add_arguments=add_arguments,
    run=run,
)
