"""The hub's AI gateway: code completions built from the room's own copy of the files.

``huddle lsp`` asks over its hub connection (request ``complete``), so the hub's copy already
holds the asker's latest keystrokes: the request carries the asker's state vector and the hub
waits, at most ``catch_up_s``, until it has applied them. The cursor travels as a Yjs relative
position, so teammates' concurrent edits cannot shift it.

Per room, a fair limiter shares the backend: at most ``max_concurrent_per_user`` requests of
one user run at once, and a freed slot goes to the waiting user with the fewest running.
The newest request of a user for a document wins: the older one is cancelled, which closes its
upstream stream so the backend frees its KV blocks. Read-only members may ask too.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import itertools
import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pycrdt import Text

from huddle.collab import schema, wire
from huddle.collab.privacy import IGNORE_FILE, PathRules
from huddle.collab.sticky import StickyResolver, code_points
from huddle.llm.client import CompletionStream
from huddle.llm.config import BackendConfig, LlmConfig
from huddle.llm.errors import EmbeddedEngineError, LlmError, NoBackendAvailable
from huddle.llm.gateway import LlmGateway
from huddle.llm.prompt import CodeContext, Prompt, SharedContext, approx_tokens
from huddle.llm.protocol import Usage
from huddle.llm.shaping import Shaper, auto_scope
from huddle.protocol import (
    CompleteParams,
    CompleteResult,
    CompletionOutcomeParams,
    CompletionOutcomeResult,
    CompletionScope,
    HubMethod,
    HubNotification,
    PartialText,
    RpcError,
)
from huddle.server import rpc
from huddle.server.acceptance import Acceptance, new_id
from huddle.server.audit import AuditLog
from huddle.server.context import RoomContext
from huddle.server.metrics import HubMetrics

if TYPE_CHECKING:
    from huddle.server.room import Room

log = logging.getLogger("huddle.ai")


@dataclass
class ModelRun:
    """What one model request produced."""

    text: str = ""
    chunks: int = 0
    files: tuple[str, ...] = ()
    backend: str | None = None
    model: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    preempted: bool = False  # a summary that stepped aside for a completion; resume it


StreamContext = AbstractAsyncContextManager[CompletionStream]
OnPrompt = Callable[[BackendConfig, Any], None]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model request, for completions and summaries alike: who asks in which room, how to
    open the stream on the chosen gateway, and what to do with each piece of text (return True
    to stop)."""

    room: Room
    user: str
    kind: Literal["completion", "summary"]
    open_stream: Callable[[LlmGateway, OnPrompt], StreamContext]
    on_text: Callable[[str], bool]
    files: tuple[str, ...] = ()  # what a summary's prompt holds, for the audit log
    may_yield: bool = True  # a summary may step aside for completions (False: resumed enough)
    completion_id: str | None = None  # for the audit log: the completion's outcome names it


class RoomActivity:
    """Completions in flight in one room, so summaries on a backend without priority
    scheduling (the embedded CPU model) can step aside while one runs. Kept while a
    completion or a summary of the room holds it: a summary waiting to resume must watch the
    same object as the next completion."""

    def __init__(self) -> None:
        self.completions = 0
        self.summaries = 0
        self.started = asyncio.Event()  # set when a completion starts, then replaced
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_end = -math.inf  # loop time the last completion ended

    def begin(self) -> None:
        self.completions += 1
        self.idle.clear()
        self.started.set()
        self.started = asyncio.Event()

    def end(self) -> None:
        self.completions -= 1
        if self.completions == 0:
            self.last_end = asyncio.get_running_loop().time()
            self.idle.set()

    async def quiet(self, resume_s: float, max_pause_s: float) -> asyncio.Event:
        """Wait until no completion runs and none has for ``resume_s`` (that part for at most
        ``max_pause_s`` in all); return the event the next completion to start sets."""
        loop = asyncio.get_running_loop()
        patience = loop.time() + max_pause_s
        while True:
            while self.completions:  # idle may have been cleared again before this woke
                await self.idle.wait()
            started = self.started
            left = min(self.last_end + resume_s, patience) - loop.time()
            if left <= 0:
                return started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), left)
                continue  # another completion started: wait for it, then a quiet moment
            return started


@dataclass
class FairLimiter:
    """Slots for one room's requests: ``total`` at once, ``per_user`` for any one user; a
    freed slot goes to the waiting user with the fewest running, first come first served
    among equals."""

    total: int
    per_user: int
    running: collections.Counter[str] = field(default_factory=collections.Counter)
    _waiting: list[tuple[int, str, asyncio.Future[None]]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    @contextlib.asynccontextmanager
    async def slot(self, user: str) -> AsyncIterator[None]:
        if self._free(user):  # waiters that could run have been granted already
            self._take(user)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (next(self._order), user, future)
            self._waiting.append(entry)
            try:
                await future
            except asyncio.CancelledError:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                elif future.done() and not future.cancelled():
                    self._release(user)  # granted as we were cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release(user)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _free(self, user: str) -> bool:
        return sum(self.running.values()) < self.total and self.running[user] < self.per_user

    def _take(self, user: str) -> None:
        self.running[user] += 1

    def _release(self, user: str) -> None:
        self.running[user] -= 1
        if self.running[user] <= 0:
            del self.running[user]
        self._waiting = [w for w in self._waiting if not w[2].done()]  # cancelled meanwhile
        while self._waiting:
            eligible = [w for w in self._waiting if self._free(w[1])]
            if not eligible:
                return
            chosen = min(eligible, key=lambda w: (self.running[w[1]], w[0]))
            self._waiting.remove(chosen)
            self._take(chosen[1])
            chosen[2].set_result(None)


class ClusterSlots(Protocol):
    """A cluster's slots (``huddle.server.cluster.ClusterLocks``): the same fair-share limits
    across every node, so a room's users cannot multiply them by spreading over nodes."""

    def slot(
        self, room_id: int, kind: str, user: str, total: int, per_user: int
    ) -> AbstractAsyncContextManager[None]: ...


class AiService:
    """Owned by the hub. The LLM gateway (and with it the embedded model) starts on first use
    unless ``start()`` is called at startup."""

    def __init__(
        self, config: LlmConfig, secret: bytes, metrics: HubMetrics, audit: AuditLog
    ) -> None:
        self.config = config
        self.audit = audit
        self._metrics = metrics
        self.acceptance = Acceptance(metrics, config.acceptance_label_pairs)
        self._summary_limiters: dict[str, FairLimiter] = {}
        self.cluster_slots: ClusterSlots | None = None  # set by a hub in a cluster
        self._activity: dict[str, RoomActivity] = {}
        self._shared: weakref.WeakKeyDictionary[Room, SharedContext] = weakref.WeakKeyDictionary()
        self._secret = secret
        self._gateway: LlmGateway | None = None
        self._stack = AsyncExitStack()  # the gateway, once started
        self._starting = asyncio.Lock()
        self._limiters: dict[str, FairLimiter] = {}
        self._latest: dict[tuple[str, str, str], asyncio.Task[Any]] = {}

    async def start(self) -> LlmGateway:
        async with self._starting:
            if self._gateway is None:
                try:
                    gateway = await self._stack.enter_async_context(
                        LlmGateway(self.config, self._secret)
                    )
                except EmbeddedEngineError as exc:
                    log.error("the embedded model cannot start: %s", exc)
                    raise RpcError("ai_unavailable", f"the model cannot start: {exc}") from None
                self._gateway = gateway
            return self._gateway

    async def aclose(self) -> None:
        for task in list(self._latest.values()):
            task.cancel()
        self._gateway = None
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()

    @property
    def gateway(self) -> LlmGateway | None:
        return self._gateway

    # -- the ``complete`` request ---------------------------------------------------------

    async def complete(
        self, ctx: RoomContext, params: CompleteParams, call: rpc.Call
    ) -> CompleteResult:
        room, user = ctx.room, ctx.grant.user
        key = (room.name, user, params.path)
        me = asyncio.current_task()
        assert me is not None
        older = self._latest.get(key)
        if older is not None and older is not me:
            older.cancel()  # newest request wins
        self._latest[key] = me
        outcome = "failed"
        try:
            result = await self._complete(room, user, params, ctx.grant.can_edit, call)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except RpcError as exc:
            outcome = "failed" if exc.code.startswith("ai_") else "refused"
            raise
        finally:
            self._metrics.ai_requests.labels(HubMethod.COMPLETE, outcome).inc()
            if self._latest.get(key) is me:
                del self._latest[key]

    async def _complete(
        self, room: Room, user: str, params: CompleteParams, can_edit: bool, call: rpc.Call
    ) -> CompleteResult:
        if can_edit and params.state:
            await self._catch_up(room, params.state)
        context, shaper = self._context(room, user, params)
        shown = ""
        completion_id = new_id()

        def on_text(text: str) -> bool:
            nonlocal shown
            done = shaper.feed(text)
            if shaper.visible != shown:
                shown = shaper.visible
                call.notify(HubNotification.COMPLETE_PARTIAL, PartialText(text=shown))
            return done

        def open_stream(gateway: LlmGateway, on_prompt: OnPrompt) -> StreamContext:
            return gateway.complete(
                room.name, context, max_tokens=params.max_tokens, on_prompt=on_prompt
            )

        run = await self.run(
            ModelRequest(
                room, user, "completion", open_stream, on_text, completion_id=completion_id
            )
        )
        usage = run.usage
        text = shaper.final()
        if text:
            self.acceptance.shown(room.name, user, completion_id, text, shaper.scope)
        return CompleteResult(
            text=text,
            id=completion_id if text else None,
            finish_reason="stop" if shaper.done else run.finish_reason,
            model=run.model,
            scope=shaper.scope,
            prompt_tokens=usage.prompt_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    async def completion_outcome(
        self, ctx: RoomContext, params: CompletionOutcomeParams, call: rpc.Call
    ) -> CompletionOutcomeResult:
        """What became of a completion the caller was shown (``huddle lsp`` reports it)."""
        room, user = ctx.room.name, ctx.grant.user
        counted = self.acceptance.outcome(
            room, user, params.id, params.outcome, params.accepted_chars
        )
        if counted is not None:
            self.audit.record(
                room=room,
                user=user,
                kind="outcome",
                id=params.id,
                acceptance=counted,
                accepted_chars=params.accepted_chars,
                source=params.source,
            )
        return CompletionOutcomeResult(
            recorded=counted is not None, acceptance=self.acceptance.stats(room, user)
        )

    # -- one model request, for completions and summaries alike -------------------------------

    async def run(self, request: ModelRequest) -> ModelRun:
        """Stream one model request under the room's fair limiter for its kind, feeding
        ``on_text`` until it returns True or the stream ends; audited and measured.

        On a backend without priority scheduling (the embedded llama.cpp model), a summary
        waits while completions of its room run and stops (``preempted``) when one starts;
        the caller resumes it. vLLM with ``priority`` schedules that itself."""
        gateway = await self.start()
        room, kind = request.room, request.kind
        activity = self._activity.setdefault(room.name, RoomActivity())
        yields = kind == "summary" and request.may_yield and self._yields(gateway, room.name)
        if kind == "completion":
            activity.begin()
        else:
            activity.summaries += 1
        try:
            # The summary watches, from the moment the room is quiet, for the next completion
            # to start: also while it waits for its turn and opens its stream (llama.cpp answers
            # only once it has processed the prompt).
            config = self.config
            stop = (
                await activity.quiet(config.summary_resume_s, config.summary_max_pause_s)
                if yields
                else None
            )
            return await self._run(gateway, request, stop)
        finally:
            if kind == "completion":
                activity.end()
            else:
                activity.summaries -= 1
            if not activity.completions and not activity.summaries:
                self._activity.pop(room.name, None)

    @staticmethod
    def _yields(gateway: LlmGateway, room: str) -> bool:
        return gateway.router.candidates(room)[0].kind == "llamacpp"

    async def _run(
        self, gateway: LlmGateway, request: ModelRequest, stop: asyncio.Event | None
    ) -> ModelRun:
        room, user, kind = request.room, request.user, request.kind
        limiters = self._limiters if kind == "completion" else self._summary_limiters
        limiter = limiters.setdefault(room.name, self._new_limiter(kind))
        run = ModelRun(files=request.files)
        prompt: Prompt | str | None = None

        def on_prompt(backend: BackendConfig, built: Prompt | str) -> None:
            nonlocal prompt
            prompt = built
            run.backend = backend.url

        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome: Literal["ok", "cancelled", "failed"] = "failed"
        error: str | None = None

        async def stream_all() -> None:
            async with (
                limiter.slot(user),
                self._cluster_slot(room, kind, user, limiter),
                request.open_stream(gateway, on_prompt) as stream,
            ):
                async for chunk in stream:
                    if not chunk.text:
                        continue
                    if not run.text:
                        self._metrics.ai_first_token.observe(loop.time() - started)
                    run.text += chunk.text
                    run.chunks += 1
                    if request.on_text(chunk.text):
                        break
                run.usage = stream.usage
                run.finish_reason = stream.finish_reason
                run.model = stream.model

        try:
            if stop is None:
                await stream_all()
            else:
                run.preempted = await _unless(stream_all(), stop.wait())
            outcome = "ok"
            return run
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except NoBackendAvailable as exc:
            error = str(exc)
            raise RpcError("ai_unavailable", error) from None
        except LlmError as exc:
            error = str(exc)
            raise RpcError("ai_failed", error) from None
        finally:
            if not limiter.running and not limiter.waiting:
                limiters.pop(room.name, None)
            self._audit(room, user, kind, prompt, run, outcome, error, request.completion_id)

    def _cluster_slot(
        self, room: Room, kind: str, user: str, limiter: FairLimiter
    ) -> AbstractAsyncContextManager[None]:
        if self.cluster_slots is None:
            return contextlib.nullcontext()
        return self.cluster_slots.slot(room.room_id, kind, user, limiter.total, limiter.per_user)

    def _new_limiter(self, kind: str) -> FairLimiter:
        if kind == "completion":
            return FairLimiter(
                self.config.max_concurrent_per_room, self.config.max_concurrent_per_user
            )
        return FairLimiter(self.config.max_summaries_per_room, 1)

    def _audit(
        self,
        room: Room,
        user: str,
        kind: Literal["completion", "summary"],
        prompt: Prompt | str | None,
        run: ModelRun,
        outcome: Literal["ok", "cancelled", "failed"],
        error: str | None,
        completion_id: str | None,
    ) -> None:
        if prompt is None:
            return  # nothing was sent to a model
        if isinstance(prompt, Prompt):
            text, files = prompt.text, [*prompt.context_paths, prompt.path]
            estimate = prompt.estimated_tokens
        else:
            text, files, estimate = prompt, list(run.files), approx_tokens(prompt)
        usage = run.usage
        self.audit.record(
            room=room.name,
            user=user,
            kind=kind,
            id=completion_id,
            outcome=outcome,
            files=files,
            backend=run.backend,
            model=run.model,
            prompt_tokens=usage.prompt_tokens if usage else estimate,
            completion_tokens=usage.completion_tokens if usage else run.chunks,
            tokens_estimated=usage is None,
            error=error,
            prompt=text,
            completion=run.text,
        )

    async def _catch_up(self, room: Room, state: str) -> None:
        try:
            wanted = wire.decode_state_vector(base64.b64decode(state, validate=True))
        except (ValueError, wire.WireError):
            raise RpcError("invalid_params", "state is not a base64 state vector") from None
        known = wire.decode_state_vector(room.doc.get_state())
        for client_id, clock in wanted.items():
            if known.get(client_id, 0) < clock and not await room.caught_up(
                client_id, clock, within=self.config.catch_up_s
            ):
                log.info("room %s: completing without edits the hub has not got yet", room.name)
                return

    def _context(self, room: Room, user: str, params: CompleteParams) -> tuple[CodeContext, Shaper]:
        files = schema.files(room.doc)
        text = files.get(params.path)
        if not isinstance(text, Text):
            raise RpcError("not_found", "no such file in the room")
        rules = private_paths(room)
        if rules.private(params.path):
            raise RpcError("forbidden", "this file is private: it never goes to a model")
        content = str(text)
        offset = 0 if params.cursor is None else resolve_cursor(room, text, content, params.cursor)
        if offset is None and params.offset is not None:
            log.debug("room %s: the cursor's anchor has not arrived; using its offset", room.name)
            offset = min(params.offset, len(content))
        if offset is None:
            raise RpcError("invalid_params", "the cursor does not resolve in this file")

        def recent() -> list[tuple[str, str]]:
            # Text values only: a stock Yjs client can put anything under `files`, and str()
            # of a deeply nested Y.Map overflows the native stack (a segfault).
            texts = [
                (p, value)
                for p in room.edited
                if isinstance(value := files.get(p), Text) and not rules.private(p)
            ]
            texts.sort(key=lambda item: room.edited[item[0]], reverse=True)
            return [(p, str(text)) for p, text in texts]

        shared = self._shared.get(room)
        if shared is None:
            shared = SharedContext(self.config.context_refresh_s, self.config.max_context_files)
            self._shared[room] = shared
        now = asyncio.get_running_loop().time()
        context = CodeContext(
            path=params.path,
            prefix=content[:offset],
            suffix=content[offset:],
            files=shared.files(now, params.path, recent),
            repo_name=room.name,
        )
        line_start = content.rfind("\n", 0, offset) + 1
        line_before = content[line_start:offset]
        scope: CompletionScope = params.scope
        if scope == "auto":  # the hub's choice: line or block, adapted to the user
            scope = self.acceptance.choose(room.name, user, auto_scope(line_before))
        shaper = Shaper(
            scope,
            line_before,
            content[offset:],
            max_lines=self.config.max_completion_lines,
            text_before_cursor=content[:line_start],
        )
        return context, shaper


async def _unless(work: Coroutine[Any, Any, None], event: Coroutine[Any, Any, Any]) -> bool:
    """Run ``work`` unless ``event`` happens first; True if it was stopped by the event."""
    worker, watcher = asyncio.ensure_future(work), asyncio.ensure_future(event)
    try:
        await asyncio.wait({worker, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not worker.done():
            worker.cancel()
        await asyncio.gather(worker, watcher, return_exceptions=True)
    if worker.cancelled():
        return True
    worker.result()  # an error of the stream is the caller's
    return False


def private_paths(room: Room) -> PathRules:
    """The built-in secret patterns plus the room's own `.huddleignore`, if it shares one: a
    file that matches never goes to a model, whoever put it in the room."""
    ignore = schema.files(room.doc).get(IGNORE_FILE)
    return _rules(str(ignore) if isinstance(ignore, Text) else None)


@functools.lru_cache(maxsize=64)
def _rules(ignore_file: str | None) -> PathRules:
    return PathRules.from_ignore_file(ignore_file)


def resolve_cursor(room: Room, text: Text, content: str, cursor: dict[str, Any]) -> int | None:
    """A Yjs relative position to a code-point offset into ``content``; None if it does not
    resolve."""
    units = StickyResolver(room.doc).units(text, cursor)
    return None if units is None else code_points(content, units)
