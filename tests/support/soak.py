"""A soak: many simulated users (real ``huddle lsp`` processes driven by a scripted LSP client,
and stock Node Yjs clients) typing into a few shared files through a real ``huddle serve``
subprocess, asking for completions at a human rate. Completions come from a replay server
shaped like vLLM (tests.support.replay), so the soak measures Huddle, not a model on a busy CPU.

Every typed piece is a unique token ``⟦<user><n><tail>⟧``; users insert only between tokens
and delete only whole tokens of their own, so the end state is exactly known: the tokens
typed minus those deleted, each once, in every replica.

    python -m tests.support.soak --minutes 10 --users 20 --files 5   # the long form: a report

The tests (tests/test_soak.py, tests/test_faults.py) run a short form of the same thing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pycrdt import Doc

from huddle.collab.schema import file_texts
from huddle.lsp.hub_client import HubClient
from huddle.server.store import Database
from tests.support.lsp_editor import Editor
from tests.support.peers import HubProcess, NodeClient, eventually, free_port, token
from tests.support.replay import FakeBackend, streaming

ROOM = "soak/room"
TOKEN = re.compile(r"⟦([a-z]+)\d+[^⟧]*⟧")
TAILS = ["", "é", "中", "😀", "👩‍💻", "\r\n", "\n", " "]
STYLES = [("vscode", "utf-16"), ("neovim", "utf-8"), ("vscode", "utf-32"), ("neovim", "utf-16")]
COMPLETION = ("value", " + 1")  # what the replay backend streams
BAD_LOG = re.compile(r"\bERROR\b|Traceback|CRITICAL")
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|\{")
# A failed completion: pygls logs the handler's exception with its traceback at ERROR.
FAILED_COMPLETION = "RequestFailed: Huddle AI:"


# The long form's rate per user: a word-sized token a second, without a pause, for the whole
# soak (a fast typist's burst, far above a working day's average). Twice that saturates the
# 2 cores this runs on, all 20 users' language servers included, and then measures the queue.
LONG_EDITS_PER_S = 1.0


@dataclass
class SoakConfig:
    users: int = 6
    files: int = 3
    seconds: float = 60.0
    node_every: int = 3  # every third user is a Node Yjs client, the others editors via LSP
    edits_per_s: float = 2.0  # per user: a word-sized token typed or deleted
    completions_per_min: float = 6.0  # per LSP user
    seed: int = 1

    @classmethod
    def from_env(cls, **short: Any) -> SoakConfig:
        """The short form unless HUDDLE_SOAK_MINUTES asks for the long one (20 users, 5 files)."""
        minutes = os.environ.get("HUDDLE_SOAK_MINUTES")
        if not minutes:
            return cls(**short)
        return cls(
            users=int(os.environ.get("HUDDLE_SOAK_USERS", "20")),
            files=int(os.environ.get("HUDDLE_SOAK_FILES", "5")),
            seconds=float(minutes) * 60,
            edits_per_s=float(os.environ.get("HUDDLE_SOAK_EDITS_PER_S", LONG_EDITS_PER_S)),
        )


@dataclass
class Ledger:
    typed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)


@dataclass
class CompletionStats:
    ok: int = 0
    empty: int = 0
    failed: list[str] = field(default_factory=list)
    hung: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "ok": self.ok,
            "empty": self.empty,
            "failed": len(self.failed),
            "hung": self.hung,
            "p50_s": round(lat[len(lat) // 2], 3) if lat else None,
            "max_s": round(lat[-1], 3) if lat else None,
            "errors": sorted(set(self.failed))[:5],
        }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tokens(text: str) -> list[str]:
    return [m.group(0) for m in TOKEN.finditer(text)]


def tag(i: int, node: bool) -> str:
    """Letters only (the token pattern's user part): u a, u b, ..., n a, ..."""
    prefix = "n" if node else "u"
    return prefix + "".join(chr(97 + int(d)) for d in str(i))


@dataclass
class LspUser:
    name: str
    editor: Editor
    log: Path
    rng: random.Random
    ledger: Ledger = field(default_factory=Ledger)
    stats: CompletionStats = field(default_factory=CompletionStats)

    def edit(self, path: str) -> None:
        """Insert a fresh token between two tokens, or delete one of mine."""
        text = self.editor.text(path)
        found = list(TOKEN.finditer(text))
        mine = [m for m in found if m.group(1) == self.name]
        if mine and self.rng.random() < 0.4:
            victim = self.rng.choice(mine)
            self.editor.replace(path, victim.start(), victim.end(), "")
            self.ledger.deleted.add(victim.group(0))
            return
        bounds = [0, len(text)] + [m.start() for m in found]
        piece = f"⟦{self.name}{len(self.ledger.typed)}{self.rng.choice(TAILS)}⟧"
        self.editor.type(path, self.rng.choice(bounds), piece)
        self.ledger.typed.add(piece)

    def completion_offset(self, path: str) -> int:
        text = self.editor.text(path)
        ends = [m.end() for m in TOKEN.finditer(text) if m.group(1) == self.name]
        return self.rng.choice(ends) if ends else len(text)


@dataclass
class NodeUser:
    name: str
    client: NodeClient
    rng: random.Random
    ledger: Ledger = field(default_factory=Ledger)

    async def edit(self, path: str) -> None:
        # Index 0 is a boundary between tokens whatever arrived since this client last
        # looked; any other index read over the pipe could be stale by the time it is used.
        piece = f"⟦{self.name}{len(self.ledger.typed)}{self.rng.choice(TAILS)}⟧"
        await self.client.request("insert", file=path, index=0, text=piece)
        self.ledger.typed.add(piece)


class Soak:
    """Owns the replay backend, the hub subprocess, every user and the checks; async with."""

    def __init__(self, workdir: Path, config: SoakConfig, *, compact_every: int = 200) -> None:
        self.workdir = workdir
        self.config = config
        self.data_dir = workdir / "hub"
        self.port = free_port()
        self.paths = [f"src/mod{i}.py" for i in range(config.files)]
        self.lsp_users: list[LspUser] = []
        self.node_users: list[NodeUser] = []
        self.rss: dict[str, dict[str, int]] = {}
        self.hub_restarts = 0
        self.ran_s = 0.0  # how long the load ran, all runs together
        self._hub_env = {"HUDDLE_HUB__STORE__COMPACT_EVERY": str(compact_every)}
        self._stack = AsyncExitStack()
        self._log_tasks: list[asyncio.Task[None]] = []
        self.backend = FakeBackend(streaming(*COMPLETION, delay=0.02))
        self.hub: HubProcess

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Soak:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self.backend)
            self.hub = self._new_hub()
            await self.hub.start()
            self._stack.push_async_callback(self._stop_hub)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        for task in self._log_tasks:
            task.cancel()
        await asyncio.gather(*self._log_tasks, return_exceptions=True)

    def _new_hub(self) -> HubProcess:
        args = ["--log-level", "warning", "--llm-url", self.backend.url, "--llm-model", "soak"]
        return HubProcess(self.data_dir, self.port, *args, env=self._hub_env)

    async def _stop_hub(self) -> None:
        if self.hub.proc is not None and self.hub.proc.returncode is None:
            await self.hub.kill(signal.SIGTERM)

    async def check_store(self, final: dict[str, str]) -> None:
        """Stop the hub (SIGTERM): its store holds exactly the final texts."""
        await self._stop_hub()
        stored = stored_texts(self.data_dir)
        assert {p: stored.get(p) for p in self.paths} == final, "the store differs from the peers"

    async def kill_hub(self) -> None:
        """SIGKILL the hub; a peer's view taken now must all be in the store (or deleted)."""
        await self.hub.kill()
        views = [await self.observer.files(), file_texts(self.auditor.doc)]
        stored = stored_texts(self.data_dir)
        deleted = set().union(*(u.ledger.deleted for u in self.users()))
        for path, text in [item for view in views for item in view.items()]:
            stored_tokens = tokens(stored.get(path, ""))
            assert len(stored_tokens) == len(set(stored_tokens)), f"{path}: doubled in the store"
            lost = set(tokens(text)) - set(stored_tokens) - deleted
            assert not lost, f"{path}: {len(lost)} tokens a peer saw are not stored: {lost}"

    async def restart_hub(self) -> None:
        self.hub = self._new_hub()
        await self.hub.start()
        self.hub_restarts += 1

    async def join(self, url: str | None = None) -> None:
        """Start every user against ``url`` (the hub, or a proxy in front of it) and open the
        files: the first editor seeds them, the others join the room's copy."""
        url = url or self.hub.url
        cfg = self.config
        root = self.workdir / "ws"
        root.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.auditor = await self._stack.enter_async_context(
            HubClient(
                self.hub.url, ROOM, self.token("auditor", "read"), min_backoff=0.05, max_backoff=1
            )
        )
        self.observer = await self._stack.enter_async_context(
            NodeClient(url, ROOM, self.token("observer", "read"))
        )
        for i in range(cfg.users):
            node = cfg.node_every > 0 and i % cfg.node_every == cfg.node_every - 1
            name = tag(i, node)
            rng = random.Random(f"{cfg.seed}-{name}")
            if node:
                client = NodeClient(url, ROOM, self.token(name))
                self.node_users.append(NodeUser(name, client, rng))
                continue
            style, encoding = STYLES[len(self.lsp_users) % len(STYLES)]
            options = {"hub": url, "room": ROOM, "user": name, "token": self.token(name)}
            editor = Editor(
                root, style=style, encoding=encoding, init_options=options, keep_notifications=20
            )
            self.lsp_users.append(LspUser(name, editor, logs / f"lsp-{name}.log", rng))
        # Start the language servers side by side: each is a Python process of its own.
        await asyncio.gather(*(self._start_editor(u) for u in self.lsp_users))
        for node_user in self.node_users:
            await self._stack.enter_async_context(node_user.client)
        first = self.lsp_users[0].editor
        seed = {p: f"# {p}: soak\n" for p in self.paths}
        for path, text in seed.items():
            first.open(path, text)
        await eventually(
            lambda: all(file_texts(self.auditor.doc).get(p) == t for p, t in seed.items()),
            timeout=30,
            what="the first editor seeds the files",
        )
        for user in self.lsp_users[1:]:
            for path, text in seed.items():
                user.editor.open(path, text)
        for node_client in [u.client for u in self.node_users] + [self.observer]:
            await node_client.wait_event("synced", timeout=30)

        async def node_has_files() -> bool:
            for c in [u.client for u in self.node_users]:
                if set(await c.files()) != set(self.paths):
                    return False
            return True

        await eventually(node_has_files, timeout=30, what="Node clients have every file")
        await eventually(
            lambda: all(u.editor.text(p) == seed[p] for u in self.lsp_users for p in self.paths),
            timeout=30,
            what="every editor has the seeded files",
        )
        self.sample_rss("start")

    async def _start_editor(self, user: LspUser) -> None:
        await user.editor.__aenter__()
        self._stack.push_async_callback(user.editor.__aexit__, None, None, None)
        self._log_tasks.append(asyncio.create_task(capture_stderr(user.editor, user.log)))

    def token(self, user: str, role: str = "edit") -> str:
        return token(self.data_dir, ROOM, user, role)

    def users(self) -> list[LspUser | NodeUser]:
        return [*self.lsp_users, *self.node_users]

    # -- the load ------------------------------------------------------------------------

    async def run(
        self, seconds: float, during: Callable[[float], Coroutine[Any, Any, None]] | None = None
    ) -> None:
        """Everyone types (and the editors ask for completions) for ``seconds``; ``during``
        runs alongside with the deadline (faults, RSS at the middle)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        tasks = [asyncio.create_task(self._typist(u, stop)) for u in self.users()]
        tasks += [asyncio.create_task(self._asker(u, stop)) for u in self.lsp_users]

        async def middle() -> None:
            await asyncio.sleep(seconds / 2)
            self.sample_rss("middle")

        extra = [asyncio.create_task(middle())]
        if during is not None:
            extra.append(asyncio.create_task(during(deadline)))
        try:
            await asyncio.sleep(seconds)  # the soak's length, not a synchronisation
            await asyncio.gather(*extra)
        finally:
            stop.set()
            self.ran_s += seconds
            for task in extra:
                task.cancel()
            results = await asyncio.gather(*tasks, *extra, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _typist(self, user: LspUser | NodeUser, stop: asyncio.Event) -> None:
        """Edits at a human's rate: a Poisson process on the clock (an open loop), so an edit
        that took long to make does not slow the ones after it."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += user.rng.expovariate(self.config.edits_per_s)
            if await paused(stop, max(0.0, due - loop.time())):
                return
            path = user.rng.choice(self.paths)
            if isinstance(user, LspUser):
                user.edit(path)
            else:
                await user.edit(path)

    async def _asker(self, user: LspUser, stop: asyncio.Event) -> None:
        rate = self.config.completions_per_min / 60
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        while not await paused(stop, user.rng.expovariate(rate)):
            path = user.rng.choice(self.paths)
            started = loop.time()
            asked = user.editor.ask_inline(path, user.completion_offset(path))
            try:
                # Shielded: a cancelled request whose answer comes later makes pytest-lsp
                # treat the answer as a server error and terminate the language server.
                result = await asyncio.wait_for(asyncio.shield(asked), 30)
                text = _inline_text(result)
            except TimeoutError:
                user.stats.hung += 1
            except Exception as exc:  # counted: a fault test expects some, a soak none
                user.stats.failed.append(f"{type(exc).__name__}: {exc}")
            else:
                user.stats.latencies.append(loop.time() - started)
                if text:
                    user.stats.ok += 1
                else:
                    user.stats.empty += 1

    # -- the checks ----------------------------------------------------------------------

    def exited(self) -> dict[str, int | None]:
        """Processes that should be running and are not, with their exit status."""
        procs: dict[str, Any] = {"hub": self.hub.proc}
        procs |= {f"lsp-{u.name}": u.editor.client._server for u in self.lsp_users}
        procs |= {f"node-{u.name}": u.client.proc for u in self.node_users}
        return {
            name: proc.returncode
            for name, proc in procs.items()
            if proc is None or proc.returncode is not None
        }

    async def settle(self, timeout: float = 60) -> dict[str, str]:
        """Until every editor, every Node client and the hub hold the same text; then check
        that it is exactly what was typed minus what was deleted. Returns the final texts."""
        assert not self.exited(), f"processes exited during the soak: {self.exited()}"
        for user in self.lsp_users:
            await user.editor.flush()
        node_clients = [u.client for u in self.node_users] + [self.observer]
        mismatch: list[str] = []

        async def converged() -> bool:
            mismatch.clear()
            hub = {p: t for p, t in file_texts(self.auditor.doc).items() if p in self.paths}
            if set(hub) != set(self.paths):
                mismatch.append("hub lacks files")
                return False
            for user in self.lsp_users:
                for path in self.paths:
                    if user.editor.text(path) != hub[path]:
                        mismatch.append(f"{user.name}:{path}")
            for client in node_clients:
                seen = await client.files()
                if {p: seen.get(p) for p in self.paths} != hub:
                    mismatch.append(f"node {client.args[1:2]}")
            return not mismatch

        try:
            await eventually(converged, timeout=timeout, what="every replica to converge")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still different: {mismatch[:10]}") from None
        final = {p: file_texts(self.auditor.doc)[p] for p in self.paths}

        # A fresh connection gets the same from the hub itself.
        async with HubClient(self.hub.url, ROOM, self.token("checker", "read")) as checker:
            await asyncio.wait_for(checker.synced.wait(), 15)
            fresh = file_texts(checker.doc)
        assert {p: fresh.get(p) for p in self.paths} == final, "a fresh sync differs"
        self.check_ledger(final)
        self.sample_rss("end")
        return final

    def check_ledger(self, final: dict[str, str]) -> None:
        present = [t for text in final.values() for t in tokens(text)]
        doubled = [t for t, n in Counter(present).items() if n > 1]
        assert not doubled, f"duplicated text: {sorted(doubled)[:10]}"
        alive = set().union(*(u.ledger.typed - u.ledger.deleted for u in self.users()))
        lost = alive - set(present)
        back = set(present) - alive
        assert not lost, f"{len(lost)} typed tokens are lost: {sorted(lost)[:10]}"
        assert not back, f"{len(back)} deleted or unknown tokens are present: {sorted(back)[:10]}"

    async def repairs(self) -> dict[str, int]:
        """The language servers' safety-net counters: a repair means a divergence was found."""
        out: dict[str, int] = {}
        for user in self.lsp_users:
            command = lsp.ExecuteCommandParams(command="huddle.status")
            status: Any = await user.editor.client.workspace_execute_command_async(command)
            out[user.name] = int(status["repairs"])
        return out

    def pids(self) -> dict[str, int]:
        """The live processes: the hub (unless it is down just now) and the language servers."""
        pids: dict[str, int] = {}
        if self.hub.proc is not None and self.hub.proc.returncode is None:
            pids["hub"] = self.hub.proc.pid
        for user in self.lsp_users:
            server = user.editor.client._server
            assert server is not None
            pids[f"lsp-{user.name}"] = server.pid
        return pids

    def sample_rss(self, phase: str) -> None:
        sample: dict[str, int] = {}
        for name, pid in self.pids().items():
            with contextlib.suppress(FileNotFoundError):  # it died: settle() says so
                sample[name] = rss_kib(pid)
        self.rss[phase] = sample

    def bad_log_lines(self, allow: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Log records with ERROR / CRITICAL / a traceback in the hub's log and the language
        servers', but those that contain one of ``allow`` (an expected failure, say)."""
        logs = {"hub": self.hub.stderr_path} | {f"lsp-{u.name}": u.log for u in self.lsp_users}
        found: dict[str, list[str]] = {}
        for name, path in logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            bad = [
                f"{record[0]} ... {record[-1]}" if len(record) > 1 else record[0]
                for record in log_records(text)
                if any(BAD_LOG.search(line) for line in record)
                and not any(a in line for a in allow for line in record)
            ]
            if bad:
                found[name] = bad[:10]
        return found

    def totals(self) -> dict[str, Any]:
        stats = CompletionStats()
        for user in self.lsp_users:
            stats.ok += user.stats.ok
            stats.empty += user.stats.empty
            stats.failed += user.stats.failed
            stats.hung += user.stats.hung
            stats.latencies += user.stats.latencies
        typed = sum(len(u.ledger.typed) for u in self.users())
        deleted = sum(len(u.ledger.deleted) for u in self.users())
        return {
            "typed": typed,
            "deleted": deleted,
            # What the users were to do, and what they did: a driver (or a machine) too busy
            # to keep up shows as the second falling short of the first.
            "edits_per_s": {
                "offered": round(self.config.users * self.config.edits_per_s, 1),
                "achieved": round((typed + deleted) / self.ran_s, 1) if self.ran_s else None,
                "achieved_by_node_users": (
                    round(sum(len(u.ledger.typed) for u in self.node_users) / self.ran_s, 1)
                    if self.ran_s
                    else None
                ),
            },
            "completions": stats.summary(),
            "backend_requests": len(self.backend.requests),
            "hub_restarts": self.hub_restarts,
        }

    def rss_table(self) -> dict[str, dict[str, float]]:
        """MiB per phase for the hub and the largest language server."""
        table: dict[str, dict[str, float]] = {}
        for phase, sample in self.rss.items():
            lsp = [v for k, v in sample.items() if k.startswith("lsp-")]
            table[phase] = {
                "hub_mib": round(sample.get("hub", math.nan) / 1024, 1),
                "lsp_max_mib": round(max(lsp) / 1024, 1) if lsp else math.nan,
            }
        return table

    def check_memory(self, factor: float = 1.5, slack_mib: float = 64) -> None:
        """End vs middle: every process under ``middle * factor + slack`` (a generous bound
        that a leak per edit or per completion crosses in a long run)."""
        middle, end = self.rss["middle"], self.rss["end"]
        for name, at_end in end.items():
            if name not in middle:
                continue  # a hub restarted after the middle sample
            bound = middle[name] * factor + slack_mib * 1024
            assert at_end <= bound, (
                f"{name} grew from {middle[name] // 1024} MiB (middle) to "
                f"{at_end // 1024} MiB (end); rss: {self.rss_table()}"
            )


def stored_texts(data_dir: Path) -> dict[str, str]:
    """The room as the hub's store holds it, read straight from SQLite."""
    db = Database.in_dir(data_dir)
    try:
        record = db.load_room(ROOM, create=False)
    finally:
        db.close()
    if record is None:
        return {}
    doc: Doc[Any] = Doc()
    for update in ([record.snapshot] if record.snapshot else []) + record.log:
        doc.apply_update(update)
    return file_texts(doc)


def _inline_text(result: Any) -> str | None:
    if result is None:
        return None
    items = result.items if isinstance(result, lsp.InlineCompletionList) else result
    text = items[0].insert_text if items else None
    return text if isinstance(text, str) else None


async def paused(stop: asyncio.Event, seconds: float) -> bool:
    """Load pacing that ends early when the soak stops; True once it has stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def log_records(text: str) -> list[list[str]]:
    """Lines grouped into records: a record starts with a timestamp, tracebacks follow it."""
    records: list[list[str]] = []
    for line in text.splitlines():
        if not records or RECORD_START.match(line):
            records.append([line])
        else:
            records[-1].append(line)
    return records


async def capture_stderr(editor: Editor, path: Path) -> None:
    """The language server's stderr into ``path`` (pytest-lsp forwards it to ours by default,
    where it mixes with every other server's)."""
    client: Any = editor.client
    forwarder = client._stderr_forwarder
    if forwarder is not None:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
    server = client._server
    assert server is not None and server.stderr is not None
    with path.open("ab") as out:
        while line := await server.stderr.readline():
            out.write(line)
            out.flush()


# -- the long form as a script ------------------------------------------------------------


async def soak_report(config: SoakConfig, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    async with Soak(workdir, config) as soak:
        await soak.join()
        setup_s = time.monotonic() - started
        await soak.run(config.seconds)
        final = await soak.settle(timeout=120)
        report = {
            "config": asdict(config),
            "setup_s": round(setup_s, 1),
            "rss": soak.rss_table(),
            "rss_kib": soak.rss,
            "final_chars": {p: len(t) for p, t in final.items()},
            "repairs": await soak.repairs(),
            **soak.totals(),
        }
        soak.check_memory()
    report["bad_log_lines"] = soak.bad_log_lines()
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--edits-per-s", type=float, default=LONG_EDITS_PER_S)
    parser.add_argument("--completions-per-min", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the hub's data and logs here")
    args = parser.parse_args()
    config = SoakConfig(
        users=args.users,
        files=args.files,
        seconds=args.minutes * 60,
        edits_per_s=args.edits_per_s,
        completions_per_min=args.completions_per_min,
        seed=args.seed,
    )
    with contextlib.ExitStack() as stack:
        workdir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        report = asyncio.run(soak_report(config, workdir))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if not report["bad_log_lines"] and not any(report["repairs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
