"""Real editing traces replayed through huddle (``josephg/editing-traces``, CC BY 4.0).

Two parts:

- *sequential* (``automerge-paper``, ``rustcode``): editor A, a scripted LSP client
  (``tests/support/lsp_editor.py``, VS Code behaviour) types the whole trace through its own
  ``huddle lsp`` subprocess; editors B and C follow through their own ``huddle lsp``
  subprocesses, answering and echoing every ``workspace/applyEdit`` as an editor does; the hub is
  a ``huddle serve`` subprocess. Consecutive trace edits are batched into one ``didChange``
  (``contentChanges`` in order, as editors send when typing fast). At the end the text must equal
  the trace's ``endContent`` in A's, B's and C's buffers and in the hub (read by a fresh
  y-websocket client).
- *concurrent* (``friendsforever``, ``clownschool``): one pycrdt replica per author, holding
  the room's schema (``files`` Map of ``Text``) as huddle's replicas do. Each transaction is
  applied on its author's replica after merging exactly the transactions its ``parents`` name
  (no more); positions (code points) become UTF-8 byte offsets through a :class:`LineIndex`
  mirror that follows the ``Text``'s events, the way huddle's bridge does. Then every replica
  and a fresh "hub" document merge everything: all must equal ``endContent``.
  ``tests/test_traces.py`` runs the same replay in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pycrdt import Doc, Subscription, Text, TextEvent, TransactionEvent

from benchmarks import ROOT, Benchmark, BenchmarkError, Settings
from benchmarks.common import Check, target_fields, targets_lines, write_results
from huddle.collab import schema
from huddle.collab.positions import LineIndex

TRACES_ENV = "HUDDLE_TRACES_DIR"
TRACES_DIRS = (
    ROOT / "tests" / "data" / "editing-traces",  # a copy in the project, if there is one
    ROOT.parent / "shared" / "data" / "editing-traces",  # the workspace's shared data
)
SEQUENTIAL = ("automerge-paper", "rustcode")
CONCURRENT = ("friendsforever", "clownschool")
PATH = "trace.txt"  # the file's key in the room's ``files`` map
ATTRIBUTION = (
    "Editing traces from [josephg/editing-traces](https://github.com/josephg/editing-traces) "
    "(commit 762fa6c) by Joseph Gentle and contributors, CC BY 4.0."
)

Patch = tuple[int, int, str]  # (position in code points, code points deleted, text inserted)


class TraceError(RuntimeError):
    """A trace that does not hold together (missing, malformed, parents out of order)."""


def find(name: str) -> Path | None:
    """Where the trace ``name`` is: ``$HUDDLE_TRACES_DIR``, else the project's copy, else the
    workspace's shared data."""
    override = os.environ.get(TRACES_ENV)
    for directory in (Path(override),) if override else TRACES_DIRS:
        path = directory / f"{name}.json.gz"
        if path.is_file():
            return path
    return None


def load(name: str) -> dict[str, Any]:
    path = find(name)
    if path is None:
        where = os.environ.get(TRACES_ENV) or " or ".join(str(d) for d in TRACES_DIRS)
        raise TraceError(f"no trace {name}.json.gz in {where} (set ${TRACES_ENV})")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise TraceError(f"cannot read the trace {path}: {exc}") from exc
    if not isinstance(data, dict) or "txns" not in data or "endContent" not in data:
        raise TraceError(f"{path} is not an editing trace")
    return data


def patches_of(txn: dict[str, Any]) -> list[Patch]:
    return [(int(pos), int(deleted), str(inserted)) for pos, deleted, inserted in txn["patches"]]


def apply_patches(text: str, patches: Sequence[Patch]) -> str:
    for pos, deleted, inserted in patches:
        text = text[:pos] + inserted + text[pos + deleted :]
    return text


# -- concurrent traces ---------------------------------------------------------------------


def version_vectors(txns: Sequence[dict[str, Any]], agents: int) -> list[tuple[int, ...]]:
    """For every transaction, how many of each agent's transactions it has seen (itself
    included): the set of its ancestors. Exact because each agent's transactions form a
    chain (each one has the previous one of its agent among its ancestors), which is checked."""
    vectors: list[tuple[int, ...]] = []
    seen = [0] * agents
    for index, txn in enumerate(txns):
        vector = [0] * agents
        for parent in txn["parents"]:
            if not 0 <= parent < index:
                raise TraceError(f"transaction {index}: parent {parent} is not an earlier one")
            vector = [max(a, b) for a, b in zip(vector, vectors[parent], strict=True)]
        agent = int(txn["agent"])
        if vector[agent] != seen[agent]:
            raise TraceError(
                f"transaction {index}: agent {agent}'s transactions do not form a chain"
            )
        seen[agent] += 1
        vector[agent] = seen[agent]
        vectors.append(tuple(vector))
    return vectors


class Replica:
    """One author's pycrdt replica of the room, with a code-point mirror of the trace's file.

    Local edits convert code points to UTF-8 bytes through the mirror; remote updates reach
    the mirror through the ``Text``'s events (deltas in UTF-8 bytes), as in huddle's bridge.
    """

    def __init__(self, agent: int, seed: bytes, client_id: int | None = None) -> None:
        self.agent = agent
        self.origin = f"agent-{agent}"
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.doc.apply_update(seed)
        text = schema.files(self.doc)[PATH]
        assert isinstance(text, Text)
        self.text = text
        self.mirror = LineIndex(str(text))
        self.updates: list[bytes] = []  # of this replica's own transactions, in order
        self._merging = False
        self._subs: list[Subscription] = [
            text.observe(self._on_text),
            self.doc.observe(self._on_transaction),
        ]

    def edit(self, patches: Sequence[Patch]) -> None:
        mirror = self.mirror
        with self.doc.transaction(origin=self.origin):
            for pos, deleted, inserted in patches:
                if deleted:
                    first, last = mirror.byte_offset(pos), mirror.byte_offset(pos + deleted)
                    del self.text[first:last]
                    mirror.replace(pos, pos + deleted, "")
                if inserted:
                    self.text.insert(mirror.byte_offset(pos), inserted)
                    mirror.replace(pos, pos, inserted)

    def merge(self, update: bytes) -> None:
        self._merging = True
        try:
            self.doc.apply_update(update)
        finally:
            self._merging = False

    def _on_transaction(self, event: TransactionEvent) -> None:
        if not self._merging:
            self.updates.append(event.update)

    def _on_text(self, event: TextEvent) -> None:
        if event.transaction.origin == self.origin:
            return
        mirror = self.mirror
        byte = offset = 0
        for item in event.delta:  # type: ignore[attr-defined]
            if "insert" in item:
                inserted = item["insert"]
                mirror.replace(offset, offset, inserted)
                offset += len(inserted)
                byte += len(inserted.encode("utf-8"))
                continue
            step = item.get("retain", item.get("delete"))
            end = mirror.offset_of_byte(byte + step)
            if "delete" in item:
                mirror.replace(offset, end, "")
            else:
                offset, byte = end, byte + step


@dataclass(frozen=True, slots=True)
class ConcurrentResult:
    trace: str
    agents: int
    txns: int
    patches: int
    merges: int
    merged_txns: int
    replay_s: float
    txns_per_s: float
    merge_s: float
    edit_s: float
    sync_s: float
    hub_merge_s: float
    final_chars: int
    final_utf8_bytes: int
    update_bytes: int
    client_ids: tuple[int, ...]
    replicas_equal: bool
    matches: bool


def agent_ordered_ids(agents: int, reverse: bool = False) -> list[int]:
    """Client ids that follow the agents' numbers (or run against them).

    Yrs orders concurrent inserts at one place by client id, and pycrdt's ``Text.insert``
    at an index that follows a deleted character places the new text after the tombstone.
    So where one author deletes a character and types in its place while the other types
    right after it, the two runs have the same left neighbour, and which comes first
    depends on the client ids: ``friendsforever`` has such a place (around offset 3,800),
    and its ``endContent`` is what agent 0 first gives. With random ids a replay still
    converges, just not always to ``endContent``.
    """
    ids = [agent + 1 for agent in range(agents)]
    return ids[::-1] if reverse else ids


def replay_concurrent(
    trace: dict[str, Any], name: str = "?", client_ids: Sequence[int] | None = None
) -> ConcurrentResult:
    """Replay a concurrent trace, one replica per agent; see the module's docstring.

    ``client_ids``: the replicas' pycrdt client ids, by agent (default
    :func:`agent_ordered_ids`).
    """
    txns = trace["txns"]
    agents = int(trace["numAgents"])
    if client_ids is None:
        client_ids = agent_ordered_ids(agents)
    if len(set(client_ids)) != agents or len(client_ids) != agents:
        raise TraceError(f"{agents} distinct client ids needed, got {list(client_ids)}")
    vectors = version_vectors(txns, agents)
    by_agent: list[list[int]] = [[] for _ in range(agents)]
    for index, txn in enumerate(txns):
        by_agent[int(txn["agent"])].append(index)

    seed_doc: Doc[Any] = Doc(client_id=max(client_ids) + 1)  # the room, as the hub starts it
    schema.files(seed_doc)[PATH] = Text(trace.get("startContent", ""))
    seed = seed_doc.get_update()
    replicas = [Replica(agent, seed, client_ids[agent]) for agent in range(agents)]
    held = [[0] * agents for _ in range(agents)]  # per replica: a version vector
    update_of: dict[int, bytes] = {}

    merges = merged_txns = patches = 0
    merge_s = edit_s = 0.0
    started = time.perf_counter()
    for index, txn in enumerate(txns):
        agent = int(txn["agent"])
        replica, have = replicas[agent], held[agent]
        need = [0] * agents
        for parent in txn["parents"]:
            need = [max(a, b) for a, b in zip(need, vectors[parent], strict=True)]
        missing: list[int] = []
        for other in range(agents):
            if have[other] > need[other]:
                raise TraceError(
                    f"transaction {index}: replica {agent} holds more than its parents"
                )
            missing += by_agent[other][have[other] : need[other]]
        if missing:
            t0 = time.perf_counter()
            missing.sort()
            for k in missing:
                if update_of[k]:  # an empty transaction has no update
                    replica.merge(update_of[k])
            merge_s += time.perf_counter() - t0
            merges += 1
            merged_txns += len(missing)
            held[agent] = have = need
        t0 = time.perf_counter()
        txn_patches = patches_of(txn)
        before = len(replica.updates)
        replica.edit(txn_patches)
        if len(replica.updates) > before + 1:
            raise TraceError(
                f"transaction {index} produced {len(replica.updates) - before} updates"
            )
        edit_s += time.perf_counter() - t0
        patches += len(txn_patches)
        update_of[index] = replica.updates[-1] if len(replica.updates) > before else b""
        have[agent] += 1
    replay_s = time.perf_counter() - started

    # Every replica catches up with all the others; a fresh document (the hub) takes all.
    t0 = time.perf_counter()
    for replica in replicas:
        for other in replicas:
            if other is not replica:
                replica.merge(other.doc.get_update(replica.doc.get_state()))
    sync_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hub: Doc[Any] = Doc()  # receives every transaction's update, one by one, in trace order
    hub.apply_update(seed)
    for k in range(len(txns)):
        if update_of[k]:
            hub.apply_update(update_of[k])
    hub_text = schema.file_texts(hub).get(PATH, "")
    hub_merge_s = time.perf_counter() - t0

    expected = trace["endContent"]
    texts = [str(r.text) for r in replicas]
    mirrors_ok = all(r.mirror.text == t for r, t in zip(replicas, texts, strict=True))
    return ConcurrentResult(
        trace=name,
        agents=agents,
        txns=len(txns),
        patches=patches,
        merges=merges,
        merged_txns=merged_txns,
        replay_s=round(replay_s, 3),
        txns_per_s=round(len(txns) / replay_s, 1),
        merge_s=round(merge_s, 3),
        edit_s=round(edit_s, 3),
        sync_s=round(sync_s, 3),
        hub_merge_s=round(hub_merge_s, 3),
        final_chars=len(hub_text),
        final_utf8_bytes=len(hub_text.encode("utf-8")),
        update_bytes=len(hub.get_update()),
        client_ids=tuple(client_ids),
        replicas_equal=mirrors_ok and all(t == hub_text for t in texts),
        matches=hub_text == expected and all(t == expected for t in texts),
    )


# -- sequential traces through huddle lsp and the hub --------------------------------------


@dataclass(frozen=True, slots=True)
class SequentialOptions:
    batch: int = 16  # trace transactions per didChange
    window: int = 8  # didChanges A may send before it waits for its server to catch up
    prefix: dict[str, int] | None = None  # transactions replayed per trace (None: all)
    timeout: float = 300.0  # for the followers and the hub to catch up after the last edit


@dataclass(frozen=True, slots=True)
class SequentialResult:
    trace: str
    txns: int
    txns_in_trace: int
    patches: int
    batch: int
    did_changes: int
    send_s: float
    total_s: float
    hub_s: float
    edits_per_s: float
    txns_per_s: float
    final_chars: int
    final_utf8_bytes: int
    crdt_update_bytes: int
    apply_edits: dict[str, int]
    rejected_edits: int
    repairs: dict[str, int]
    rss_mb: dict[str, float]
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]
    matches: dict[str, bool]
    full: bool
    machine_busy_percent: float  # all cores, over the replay
    background_busy_percent: float  # all cores, in the second before it (not our work)


EDITORS = ("a", "b", "c")
PROCESSES = ("lsp_a", "lsp_b", "lsp_c", "hub")


def expected_prefix(trace: dict[str, Any], txns: int) -> str:
    if txns >= len(trace["txns"]):
        return str(trace["endContent"])
    index = LineIndex(trace.get("startContent", ""))
    for txn in trace["txns"][:txns]:
        for pos, deleted, inserted in patches_of(txn):
            index.replace(pos, pos + deleted, inserted)
    return index.text


def _trace_editor_class() -> type[Any]:
    from lsprotocol import types as lsp

    from benchmarks.keystroke import _editor_class

    class TraceEditor(_editor_class()):  # type: ignore[misc]
        def replace_many(self, path: str, patches: Sequence[Patch]) -> None:
            """One ``didChange`` with one change per patch, each on the text before it."""
            uri = self.uri(path)
            buf, index = self.buffers[uri], self.indexes[uri]
            changes: list[Any] = []
            for pos, deleted, inserted in patches:
                lsp_range = lsp.Range(
                    start=self._lsp_pos(index.position_at(pos, self.encoding)),
                    end=self._lsp_pos(index.position_at(pos + deleted, self.encoding)),
                )
                index.replace(pos, pos + deleted, inserted)
                changes.append(lsp.TextDocumentContentChangePartial(range=lsp_range, text=inserted))
            self._changed(buf, changes)

    return TraceEditor


async def replay_sequential(
    name: str,
    trace: dict[str, Any],
    txns: int,
    options: SequentialOptions,
    hub_url: str,
    hub_pid: int,
    data_dir: Path,
    workdir: Path,
) -> SequentialResult:
    from benchmarks.fanout import (
        background_busy_percent,
        machine_cpu_ticks,
        process_cpu_seconds,
        process_memory_mb,
    )
    from benchmarks.keystroke import status_of, wait_for
    from huddle.lsp.hub_client import HubClient, Status
    from tests.support.peers import token

    editor_class = _trace_editor_class()
    room = f"bench/traces-{name}"
    root = workdir / f"ws-{name}"
    root.mkdir(parents=True)
    start_text = str(trace.get("startContent", ""))
    expected = expected_prefix(trace, txns)
    env = {"HUDDLE_LOG_LEVEL": "warning"}

    def editor(user: str) -> Any:
        init = {"hub": hub_url, "room": room, "user": user, "token": token(data_dir, room, user)}
        return editor_class(root, init_options=init, env=env)

    async def shared(ed: Any) -> bool:
        status = await status_of(ed)
        return PATH in status.get("shared", []) and status.get("state") == "connected"

    batches: list[list[Patch]] = []
    replayed = trace["txns"][:txns]
    for first in range(0, txns, options.batch):
        batches.append(
            [p for txn in replayed[first : first + options.batch] for p in patches_of(txn)]
        )
    patches = sum(len(b) for b in batches)

    async with editor("ann") as ann, editor("bob") as bob, editor("cat") as cat:
        editors = {"a": ann, "b": bob, "c": cat}
        for ed in editors.values():
            ed.open(PATH, start_text)
            await wait_for(lambda ed=ed: shared(ed), what="the file to be shared", timeout=60)
        pids = {f"lsp_{k}": ed.pid for k, ed in editors.items()} | {"hub": hub_pid}
        background = await asyncio.to_thread(background_busy_percent)
        busy0, machine0 = machine_cpu_ticks()
        cpu0 = {k: process_cpu_seconds(pid) for k, pid in pids.items()}

        started = time.perf_counter()
        for k, batch in enumerate(batches, 1):
            ann.replace_many(PATH, batch)
            if k % options.window == 0:
                await status_of(ann)  # A's server has taken every didChange sent so far
        await status_of(ann)
        sent = time.perf_counter()
        for key in ("b", "c"):
            await wait_for(
                lambda key=key: editors[key].text(PATH) == expected,
                what=f"editor {key.upper()} to hold the trace's text",
                timeout=options.timeout,
                poll=0.05,
            )
        converged = time.perf_counter()
        busy1, machine1 = machine_cpu_ticks()

        doc: Any = None
        hub_text = ""
        with contextlib.suppress(Exception):
            async with HubClient(hub_url, room, token(data_dir, room, "hub-reader", "read")) as hc:
                await asyncio.wait_for(hc.wait_status(Status.CONNECTED), 30)

                def hub_has() -> bool:
                    nonlocal hub_text
                    hub_text = schema.file_texts(hc.doc).get(PATH, "")
                    return hub_text == expected

                with contextlib.suppress(Exception):
                    await wait_for(hub_has, what="the hub's text", timeout=60, poll=0.05)
                doc = hc.doc
        hub_s = time.perf_counter() - converged
        update_bytes = len(doc.get_update()) if doc is not None else 0

        cpu = {k: round(process_cpu_seconds(pid) - cpu0[k], 2) for k, pid in pids.items()}
        memory = {k: process_memory_mb(pid) for k, pid in pids.items()}
        statuses = {k: await status_of(ed) for k, ed in editors.items()}
        matches = {k: ed.text(PATH) == expected for k, ed in editors.items()}
        matches["hub"] = hub_text == expected
        result = SequentialResult(
            trace=name,
            txns=txns,
            txns_in_trace=len(trace["txns"]),
            patches=patches,
            batch=options.batch,
            did_changes=len(batches),
            send_s=round(sent - started, 2),
            total_s=round(converged - started, 2),
            hub_s=round(hub_s, 2),
            edits_per_s=round(patches / (converged - started), 1),
            txns_per_s=round(txns / (converged - started), 1),
            final_chars=len(expected),
            final_utf8_bytes=len(expected.encode("utf-8")),
            crdt_update_bytes=update_bytes,
            apply_edits={k: ed.applied for k, ed in editors.items()},
            rejected_edits=sum(ed.rejected for ed in editors.values()),
            repairs={k: int(s.get("repairs", -1)) for k, s in statuses.items()},
            rss_mb={k: round(m[0], 1) for k, m in memory.items()},
            peak_rss_mb={k: round(m[1], 1) for k, m in memory.items()},
            cpu_s=cpu,
            matches=matches,
            full=txns >= len(trace["txns"]),
            machine_busy_percent=round(100 * (busy1 - busy0) / max(1, machine1 - machine0), 1),
            background_busy_percent=background,
        )
    return result


# -- the benchmark -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TracesOptions:
    batch: tuple[tuple[str, int], ...] = (("automerge-paper", 64), ("rustcode", 16))
    prefix: tuple[tuple[str, int], ...] = ()  # transactions replayed per trace; absent: all
    reversed_ids: bool = True  # replay each concurrent trace with the client ids reversed too


FULL = TracesOptions()
QUICK = TracesOptions(prefix=(("automerge-paper", 20_000), ("rustcode", 5_000)))


async def run_sequential(
    options: TracesOptions, log: Callable[[str], None]
) -> list[SequentialResult]:
    from benchmarks.keystroke import running_hub

    results: list[SequentialResult] = []
    batches, prefixes = dict(options.batch), dict(options.prefix)
    with tempfile.TemporaryDirectory(prefix="huddle-traces-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HUDDLE_LOG_LEVEL": "warning",
            "HUDDLE_HUB__LLM__PRELOAD": "false",  # no model in the hub's memory figure
        }
        async with running_hub(data_dir, env, ()) as (url, hub):
            for name in SEQUENTIAL:
                trace = load(name)
                txns = min(prefixes.get(name, len(trace["txns"])), len(trace["txns"]))
                batch = batches.get(name, 16)
                log(f"[traces] {name}: {txns:,} transactions, {batch} per didChange ...")
                result = await replay_sequential(
                    name,
                    trace,
                    txns,
                    SequentialOptions(batch=batch),
                    url,
                    hub.pid,
                    data_dir,
                    workdir,
                )
                log(
                    f"[traces]   {result.total_s:.1f} s, {result.edits_per_s:,.0f} edits/s, "
                    f"text equal: {result.matches}"
                )
                results.append(result)
    return results


def run_concurrent(options: TracesOptions, log: Callable[[str], None]) -> list[ConcurrentResult]:
    results: list[ConcurrentResult] = []
    for name in CONCURRENT:
        trace = load(name)
        orders = [False, True] if options.reversed_ids else [False]
        for reverse in orders:
            ids = agent_ordered_ids(int(trace["numAgents"]), reverse=reverse)
            log(f"[traces] {name}: {len(trace['txns']):,} transactions, client ids {ids} ...")
            result = replay_concurrent(trace, name, ids)
            log(
                f"[traces]   {result.replay_s:.1f} s, {result.txns_per_s:,.0f} txns/s, "
                f"equals endContent: {result.matches}"
            )
            results.append(result)
    return results


def evaluate(sequential: list[SequentialResult], concurrent: list[ConcurrentResult]) -> list[Check]:
    checks: list[Check] = []
    for s in sequential:
        what = "endContent" if s.full else f"the text after its first {s.txns:,} transactions"
        wrong = [k for k, ok in s.matches.items() if not ok]
        checks.append(
            Check(
                f"{s.trace}: the final text equals {what} in A, B, C and the hub",
                not wrong and all(r == 0 for r in s.repairs.values()),
                ("equal everywhere" if not wrong else f"differs in {', '.join(wrong)}")
                + f"; bridge repairs {sum(s.repairs.values())}",
            )
        )
    for c in concurrent:
        if c.client_ids != tuple(agent_ordered_ids(c.agents)):
            checks.append(
                Check(
                    f"{c.trace} (client ids reversed): every replica and the hub converge",
                    c.replicas_equal,
                    ("converged" if c.replicas_equal else "DIVERGED")
                    + (
                        ", to endContent"
                        if c.matches
                        else ", to a text other than endContent (order of a concurrent insert)"
                    ),
                )
            )
            continue
        checks.append(
            Check(
                f"{c.trace}: every replica and the hub end in endContent",
                c.matches and c.replicas_equal,
                "equal" if c.matches else "differs",
            )
        )
    return checks


def _size(n: int) -> str:
    return f"{n / 1000:,.1f} KB" if n >= 1000 else f"{n} B"


def markdown(
    sequential: list[SequentialResult],
    concurrent: list[ConcurrentResult],
    checks: list[Check],
    env: dict[str, Any],
    quick: bool,
) -> str:
    pkgs = env["packages"]
    lines = [
        "# Editing traces benchmark",
        "",
        f"{ATTRIBUTION} Run {env['date']} at commit `{env['commit']}` on {env['cpus']} x "
        f"{env['cpu_model']}, Python {env['python']}, pygls {pkgs['pygls']}, pycrdt "
        f"{pkgs['pycrdt']}, websockets {pkgs['websockets']}."
        + (" **Quick run**: prefixes of the sequential traces." if quick else ""),
        "",
        "## Sequential traces through three `huddle lsp` and the hub",
        "",
        "Editor A (a scripted LSP client, VS Code behaviour: one `didChange` per batch, "
        "UTF-16 positions) replays the trace through its own `huddle lsp`; editors B and C "
        "follow through theirs, answering and echoing every `workspace/applyEdit`; the hub is "
        "a `huddle serve` subprocess; all on loopback. Consecutive trace transactions are "
        "batched into one `didChange` (its `contentChanges` in order, as editors send when "
        "typing fast); A waits for its server to take every few notifications (a "
        "`huddle.status` round trip). *time*: from A's first `didChange` until B and C both "
        "hold the final text; *edits/s*: the trace's patches over that time. The hub's text is "
        "read by a fresh y-websocket client afterwards; *CRDT*: the size of the hub's "
        "document as one update (history included). RSS at the end (peak in the JSON); CPU "
        "over the replay; *machine %*: all cores busy over the replay (in brackets: in the "
        "second before it, work that is not ours).",
        "",
        "| trace | transactions | patches | per didChange | time s | edits/s | final text "
        "| CRDT | B/C applyEdits | RSS MB A / B / C / hub | CPU s A / B / C / hub "
        "| machine % (before) | equal |",
        "| --- |" + " ---: |" * 11 + " --- |",
    ]
    for s in sequential:
        txns = f"{s.txns:,}" + ("" if s.full else f" of {s.txns_in_trace:,}")
        rss = " / ".join(f"{s.rss_mb[p]:.0f}" for p in PROCESSES)
        cpu = " / ".join(f"{s.cpu_s[p]:.1f}" for p in PROCESSES)
        equal = "yes" if all(s.matches.values()) else "**no**"
        lines.append(
            f"| {s.trace} | {txns} | {s.patches:,} | {s.batch} | {s.total_s:.1f} "
            f"| {s.edits_per_s:,.0f} | {s.final_chars:,} chars | {_size(s.crdt_update_bytes)} "
            f"| {s.apply_edits['b']:,} / {s.apply_edits['c']:,} | {rss} | {cpu} "
            f"| {s.machine_busy_percent:.0f} ({s.background_busy_percent:.0f}) | {equal} |"
        )
    lines += [
        "",
        "## Concurrent traces through pycrdt replicas",
        "",
        "One pycrdt replica per author, each holding the room's schema (`files` Map of "
        "`Text`). Every transaction is applied on its author's replica after merging exactly "
        "the transactions its `parents` name (code points turned into UTF-8 byte offsets "
        "through a line index that follows the `Text`'s events, as huddle's bridge does); "
        "then every replica merges the others' updates and a fresh document (the hub) applies "
        "every transaction's update in trace order. *merge*: time spent applying other "
        "authors' updates during the replay; *edit*: applying the authors' own patches. "
        "Client ids follow the agents' numbers; the second row of each trace reverses them "
        "(see below).",
        "",
        "| trace | agents | transactions | client ids | replay s | txns/s | merges "
        "| merge s | edit s | hub merge s | final text | CRDT | converged | = endContent |",
        "| --- |" + " ---: |" * 11 + " --- | --- |",
    ]
    for c in concurrent:
        lines.append(
            f"| {c.trace} | {c.agents} | {c.txns:,} | {', '.join(map(str, c.client_ids))} "
            f"| {c.replay_s:.2f} | {c.txns_per_s:,.0f} | {c.merges:,} | {c.merge_s:.2f} "
            f"| {c.edit_s:.2f} | {c.hub_merge_s:.2f} | {c.final_chars:,} chars "
            f"| {_size(c.update_bytes)} | {'yes' if c.replicas_equal else '**no**'} "
            f"| {'yes' if c.matches else 'no'} |"
        )
    lines += [
        "",
        "*Client ids*: Yrs orders concurrent inserts with the same left neighbour by client "
        "id, and pycrdt's `Text.insert` at an index right after a deleted character puts the "
        "new text after the tombstone. `friendsforever` has one place (around offset 3,800) "
        "where one author deletes a character and types `, huh?` in its place while the other "
        "types ` The whole scene` right after it: with agent 0's id above agent 1's, the "
        "replicas still converge, but to `90s The whole , hh?uscene` instead of "
        "`90s, huh? The whole scene`. The trace promises no concurrent inserts at one place; "
        "that holds for its author's CRDT, not for Yjs's placement after tombstones.",
        "",
        "## Targets",
        "",
    ]
    lines += targets_lines(checks)
    lines += ["## For the README", "", *readme_section(sequential, concurrent), ""]
    return "\n".join(lines)


def readme_section(
    sequential: list[SequentialResult], concurrent: list[ConcurrentResult]
) -> list[str]:
    """A paragraph and a table for the README's Performance section."""
    ordered = [c for c in concurrent if c.client_ids == tuple(agent_ordered_ids(c.agents))]
    all_equal = all(all(s.matches.values()) for s in sequential) and all(c.matches for c in ordered)
    lines = [
        "**Real editing traces** ([josephg/editing-traces](https://github.com/josephg/"
        "editing-traces), CC BY 4.0). The LaTeX paper of the crdt-benchmarks B4 trace "
        "(259,778 single-character edits) and a Rust file being edited (36,981 transactions) are "
        "replayed by a scripted editor through a real `huddle lsp` (consecutive edits batched "
        "into one `didChange`, as editors do when typing fast), with two more editors following "
        "through their own `huddle lsp` and the hub in between; two traces of people "
        "typing into one document at the same time are replayed on one pycrdt replica per "
        "author, each transaction on a replica holding exactly its parents. "
        + (
            "The final text equals the trace's `endContent` in every editor, every replica "
            "and the hub (for the concurrent traces with the replicas' client ids in the "
            "authors' order: see benchmarks/results/traces.md for why). Timings on two "
            "shared cores running all the processes."
            if all_equal
            else "**Not every replay ended in the trace's `endContent`**: see "
            "benchmarks/results/traces.md."
        ),
        "",
        "| trace | edits | end to end | final text | RSS per `huddle lsp` / hub |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for s in sequential:
        lsp_rss = max(s.rss_mb[p] for p in PROCESSES if p != "hub")
        edits = f"{s.patches:,}" + ("" if s.full else " (prefix)")
        lines.append(
            f"| {s.trace} (3 editors, batches of {s.batch}) | {edits} "
            f"| {s.total_s:.0f} s, {s.edits_per_s:,.0f} edits/s | {s.final_chars:,} chars "
            f"| ≤ {lsp_rss:.0f} MB / {s.rss_mb['hub']:.0f} MB |"
        )
    for c in ordered:
        lines.append(
            f"| {c.trace} ({c.agents} authors, concurrent) | {c.patches:,} "
            f"| {c.replay_s:.1f} s, {c.txns_per_s:,.0f} txns/s (merges {c.merge_s:.1f} s) "
            f"| {c.final_chars:,} chars, CRDT {_size(c.update_bytes)} | - |"
        )
    return lines


def add_arguments(group: argparse._ArgumentGroup) -> None:
    def batch(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
        return value

    group.add_argument(
        "--traces-batch",
        type=batch,
        metavar="N",
        help="trace transactions per didChange for every sequential trace "
        "(default: automerge-paper 64, rustcode 16)",
    )
    group.add_argument(
        "--traces-prefix",
        type=batch,
        metavar="N",
        help="replay only the first N transactions of each sequential trace "
        "(default: all; quick: 20,000 and 5,000)",
    )


def run(settings: Settings, args: argparse.Namespace) -> str:
    from benchmarks.keystroke import environment

    options = QUICK if settings.quick else FULL
    if (value := getattr(args, "traces_batch", None)) is not None:
        options = replace(options, batch=tuple((name, value) for name in SEQUENTIAL))
    if (value := getattr(args, "traces_prefix", None)) is not None:
        options = replace(options, prefix=tuple((name, value) for name in SEQUENTIAL))

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    env = environment()
    try:
        concurrent = run_concurrent(options, log)
        sequential = asyncio.run(run_sequential(options, log))
    except TraceError as exc:
        raise BenchmarkError(str(exc)) from exc
    checks = evaluate(sequential, concurrent)
    text = markdown(sequential, concurrent, checks, env, settings.quick)
    stem = "traces-quick" if settings.quick else "traces"
    report = {
        "benchmark": "traces",
        "quick": settings.quick,
        "attribution": ATTRIBUTION,
        "options": asdict(options),
        "environment": env,
        "sequential": [asdict(s) for s in sequential],
        "concurrent": [asdict(c) for c in concurrent],
        **target_fields(checks),
    }
    write_results(settings.results_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    name="traces",
    help="real editing traces replayed through three huddle lsp and the hub, and through "
    "pycrdt replicas (concurrent traces)",
    add_arguments=add_arguments,
    run=run,
)
