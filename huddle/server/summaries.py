"""Summaries answered by the hub: a file or a selection, "catch me up" on teammates' changes,
and a whole session as a pull-request description.

The structured part (which files changed, who changed them, how many lines) is computed by the
hub from its history and is exact; the model only writes the prose. Inputs larger than the
model's context are summarised piece by piece (map), then the pieces together (reduce), with
progress that counts the model calls actually made. Private files never reach the model.

What one request may cost is bounded (``LlmConfig``): the history it replays
(``summary_max_history_*``: over it, the period is cut to its most recent part), the text it
compares (``summary_max_text_chars``, ``summary_max_files``: the most recently changed files
first) and the model calls it makes (``summary_max_calls``: the most recent changes that fit).
Whatever was left out is said in the result (``truncated``) rather than failing the request:
the user asked for an overview, and the newest part of it is the part they are likely to miss.
Admission: one member has at most ``max_summaries_per_user`` summaries running or waiting in a
room (another is refused as ``busy``), a room runs ``max_summaries_per_room`` at once (others
wait their turn, fairly), and the hub rebuilds history for at most ``max_summary_rebuilds`` at
once. A cancelled or finished summary keeps nothing: the rebuilt documents go with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pycrdt import Text

from huddle.collab import schema
from huddle.collab.privacy import is_secret
from huddle.llm.prompt import approx_tokens
from huddle.protocol import (
    FileSummary,
    HubNotification,
    PartialText,
    RpcError,
    SummarizeParams,
    SummarizeResult,
    SummaryKind,
    SummaryProgress,
)
from huddle.server import rpc
from huddle.server.ai import (
    AiService,
    FairLimiter,
    ModelRequest,
    OnPrompt,
    StreamContext,
    private_paths,
    resolve_cursor,
)
from huddle.server.context import RoomContext
from huddle.server.history import (
    ChangeSet,
    FileChange,
    HistoryGap,
    ReplayLimits,
    TooMuchHistory,
    changes_between,
)

if TYPE_CHECKING:
    from huddle.llm.gateway import LlmGateway
    from huddle.server.room import Room

log = logging.getLogger("huddle.summaries")

MAX_YIELDS = 20  # a summary steps aside for completions at most this often, then runs
_MAX_WARNED = 4096  # (room, path) pairs already logged as private files in a room


_INSTRUCTIONS: dict[str, str] = {
    "file": "Explain what the following code does, for a teammate who has not read it. "
    "Answer in a few short markdown bullet points.",
    "changes": "Summarise the following changes to the team's code: what changed and why it "
    "matters, naming who made each change. Answer in short markdown bullet points.",
    "session": "Write a pull-request description for the following changes: a one-line "
    "title, then what changed and why it matters, naming who made each change.",
    "reduce": "Combine these partial summaries into one, keeping every author's name. Answer "
    "in short markdown bullet points.",
}
_ANSWER = "\n\nAnswer:\n"
_LINES = re.compile(r"[^\n]*\n|[^\n]+")


@dataclass(frozen=True, slots=True)
class Section:
    """One piece of input: a file, a selection, or one file's diff with its authors."""

    title: str
    body: str
    path: str

    def render(self) -> str:
        return f"### {self.title}\n```\n{self.body}\n```\n"


@dataclass(frozen=True, slots=True)
class _Piece:
    """One model call's input, and the files it shows."""

    text: str
    paths: tuple[str, ...]


class Summaries:
    def __init__(self, ai: AiService) -> None:
        self.ai = ai
        self._asking: collections.Counter[tuple[str, str]] = collections.Counter()
        self._rooms: dict[str, FairLimiter] = {}
        self._rebuilds = asyncio.Semaphore(ai.config.max_summary_rebuilds)
        self._warned: set[tuple[str, str]] = set()

    async def summarize(
        self, ctx: RoomContext, params: SummarizeParams, call: rpc.Call
    ) -> SummarizeResult:
        async with self._admitted(ctx.room.name, ctx.grant.user, call):
            return await self._summarize(ctx, call, params)

    @contextlib.asynccontextmanager
    async def _admitted(self, room: str, user: str, call: rpc.Call) -> AsyncIterator[None]:
        """At most ``max_summaries_per_user`` of one member's summaries in a room, running or
        waiting (a member has no use for more at once, and each one is work for the hub);
        ``max_summaries_per_room`` run at once, the others wait, fairly between members."""
        config = self.ai.config
        key = (room, user)
        if self._asking[key] >= config.max_summaries_per_user:
            raise RpcError(
                "busy",
                "you already have a summary running in this room: wait for it to finish or "
                "cancel it",
            )
        self._asking[key] += 1
        limiter = self._rooms.get(room)
        if limiter is None:
            limiter = FairLimiter(config.max_summaries_per_room, config.max_summaries_per_user)
            self._rooms[room] = limiter
        try:
            if sum(limiter.running.values()) >= limiter.total:
                _notify(call, "waiting for another summary of this room to finish")
            async with limiter.slot(user):
                yield
        finally:
            self._asking[key] -= 1
            if self._asking[key] <= 0:
                del self._asking[key]
            if not limiter.running and not limiter.waiting and self._rooms.get(room) is limiter:
                del self._rooms[room]

    async def _summarize(
        self, ctx: RoomContext, call: rpc.Call, params: SummarizeParams
    ) -> SummarizeResult:
        room, user = ctx.room, ctx.grant.user
        now = time.time()
        files: list[FileSummary] = []
        notes: list[str] = []
        since = until = None
        if params.kind in ("file", "selection"):
            sections, instructions = [self._code(room, params)], "file"
        else:
            if params.kind == "catch_up":
                last = await ctx.store.last_seen(room.name, user)
                since = params.since if params.since is not None else (last or 0.0)
            elif params.since is None:
                raise RpcError("invalid_params", "a session summary needs `since`")
            else:
                since = params.since
            until = params.until if params.until is not None else now
            if until <= since:
                raise RpcError("invalid_params", "`until` must be after `since`")
            found = await self._changes(ctx, room, user, since, until, params.kind, call)
            if found.shortened:
                asked = f"since {_when(since)}" if since else "of the room"
                notes.append(
                    f"The history {asked} is too long to read back: this covers the changes "
                    f"from {_when(found.since)} on."
                )
            if found.omitted:
                notes.append(
                    f"{found.omitted} changed file(s) with older changes are left out: there "
                    "were more changes than a summary reads."
                )
            since = found.since
            files = [_file_entry(c) for c in found.changes]
            # newest first: what is left out, if anything, is the oldest
            ordered = sorted(found.changes, key=lambda c: (-c.changed_at, c.path))
            sections = [_diff_section(c) for c in ordered]
            del found, ordered  # the texts before and after: only the diffs are needed now
            instructions = "changes" if params.kind == "catch_up" else "session"
        summary = ""
        if sections:
            summary = await self._map_reduce(room, user, call, instructions, sections, notes)
        if params.kind == "catch_up" and params.since is None:
            await ctx.store.set_last_seen(room.name, user, until or now)
        truncated = " ".join(notes) or None
        return SummarizeResult(
            kind=params.kind,
            since=since,
            until=until,
            files=files,
            summary=summary,
            truncated=truncated,
            markdown=_markdown(params.kind, since, until, files, summary, truncated),
        )

    # -- inputs ---------------------------------------------------------------------------

    def _code(self, room: Room, params: SummarizeParams) -> Section:
        if params.path is None:
            raise RpcError("invalid_params", "which file? (`path`)")
        text = schema.files(room.doc).get(params.path)
        if not isinstance(text, Text):
            raise RpcError("not_found", "no such file in the room")
        if private_paths(room).private(params.path):
            raise RpcError("forbidden", "this file is private: it never goes to a model")
        content = str(text)
        if params.kind == "selection":
            if params.start is None or params.end is None:
                raise RpcError("invalid_params", "a selection needs `start` and `end`")
            start = resolve_cursor(room, text, content, params.start)
            end = resolve_cursor(room, text, content, params.end)
            if start is None or end is None:
                raise RpcError("invalid_params", "the selection does not resolve")
            start, end = min(start, end), max(start, end)
            if start == end:
                raise RpcError("invalid_params", "the selection is empty")
            first = content.count("\n", 0, start) + 1
            last = first + content.count("\n", start, end)
            return Section(f"{params.path}, lines {first}-{last}", content[start:end], params.path)
        return Section(params.path, content, params.path)

    async def _changes(
        self,
        ctx: RoomContext,
        room: Room,
        user: str,
        since: float,
        until: float,
        kind: str,
        call: rpc.Call,
    ) -> ChangeSet:
        config = self.ai.config
        rules = private_paths(room)
        private: list[str] = []

        def skip(path: str, authors: frozenset[str]) -> bool:  # runs in a worker thread
            if rules.private(path):
                private.append(path)
                return True
            # catching up is on what teammates changed: files only I touched are not news
            return kind == "catch_up" and not any(a != user for a in authors)

        limits = ReplayLimits(
            max_updates=config.summary_max_history_updates,
            max_bytes=config.summary_max_history_bytes,
            max_text_chars=config.summary_max_text_chars,
            max_files=config.summary_max_files,
        )
        if self._rebuilds.locked():
            _notify(call, "waiting for the hub to read other summaries' history")
        async with self._rebuilds:
            _notify(call, "reading the room's history")
            try:
                found = await changes_between(
                    ctx.store, room.name, since, until, limits=limits, skip=skip
                )
            except HistoryGap as exc:
                raise RpcError("history_gap", str(exc)) from None
            except TooMuchHistory as exc:
                raise RpcError("too_large", str(exc)) from None
        self._note_private(room.name, private)
        return found

    def _note_private(self, room: str, paths: list[str]) -> None:
        """Say once per room and path that the room holds a secret: some client put it there
        (``huddle lsp`` never shares one), and every member of the room has received it."""
        for path in paths:
            if (room, path) in self._warned or not is_secret(path):
                continue
            if len(self._warned) >= _MAX_WARNED:
                self._warned.clear()
            self._warned.add((room, path))
            log.warning(
                "room %r holds %r, which looks like a secret: a client put it in the room, so "
                "every member received it; it never goes to a model",
                room,
                path,
            )

    # -- the model ------------------------------------------------------------------------

    async def _map_reduce(
        self,
        room: Room,
        user: str,
        call: rpc.Call,
        instructions: str,
        sections: list[Section],
        notes: list[str],
    ) -> str:
        """At most ``summary_max_calls`` model calls: the map takes as many pieces as leave
        calls to combine their answers; the rest of the input is left out (and noted)."""
        gateway = await self.ai.start()
        config = self.ai.config
        budget = _budget(gateway, room.name, instructions)
        reduce_budget = _budget(gateway, room.name, "reduce")
        # an answer may run to summary_max_tokens (about 4 characters each)
        per_group = max(2, reduce_budget // (config.summary_max_tokens * 4 + 16))
        most = _most_pieces(config.summary_max_calls, per_group)
        pieces, read = _pack(((s.path, s.render()) for s in sections), budget, most)
        if read < len(sections):
            notes.append(
                "The file is longer than a summary reads: only its beginning was read."
                if instructions == "file"
                else f"Only part of the changes fit the {config.summary_max_calls} model calls "
                f"a summary may make: {len(sections) - read} of {len(sections)} changed "
                "file(s), the least recently changed, were read only in part or not at all."
            )
        del sections
        maximum = config.summary_max_calls
        progress = _Progress(call, len(pieces) + (1 if len(pieces) > 1 else 0))
        if len(pieces) == 1:
            return await self._ask(room, user, call, instructions, pieces[0], progress)
        everything = tuple(dict.fromkeys(p for piece in pieces for p in piece.paths))
        parts = []
        for number, piece in enumerate(pieces, start=1):
            progress.message(f"summarising part {number} of {len(pieces)}")
            parts.append(await self._ask(room, user, None, instructions, piece, progress))
        used = len(pieces)
        while True:  # reduce, in rounds if the partial summaries are still too long together
            joined = [("", f"Part {i}:\n{p.strip()}\n") for i, p in enumerate(parts, start=1)]
            groups, _ = _pack(joined, reduce_budget)
            if len(groups) > 1 and (len(groups) >= len(parts) or used + len(groups) >= maximum):
                # no calls left for another round, or it would not shrink: shorten each part
                # so that all fit one last prompt
                notes.append("The partial summaries were shortened to combine them.")
                groups = [_squeeze([text for _, text in joined], reduce_budget)]
            if len(groups) == 1:
                progress.message("combining the parts")
                final = _Piece(groups[0].text, everything)
                return await self._ask(room, user, call, "reduce", final, progress)
            progress.grow(len(groups))
            used += len(groups)
            parts = [
                await self._ask(room, user, None, "reduce", _Piece(g.text, everything), progress)
                for g in groups
            ]

    async def _ask(
        self,
        room: Room,
        user: str,
        call: rpc.Call | None,
        instructions: str,
        piece: _Piece,
        progress: _Progress,
    ) -> str:
        """One model call; streams partials when ``call`` is given (the final call)."""
        prompt = f"{_INSTRUCTIONS[instructions]}\n\n{piece.text}{_ANSWER}"
        streamed = ""

        def on_text(text: str) -> bool:
            nonlocal streamed
            streamed += text
            if call is not None:
                call.notify(HubNotification.SUMMARY_PARTIAL, PartialText(text=streamed))
            return False

        limit = self.ai.config.summary_max_tokens
        written = ""
        for resumed in range(MAX_YIELDS + 1):
            # On the embedded model a summary steps aside while a completion runs, then goes
            # on from what it wrote (llama.cpp's prompt cache makes the restart cheap).
            def open_stream(
                gateway: LlmGateway,
                on_prompt: OnPrompt,
                asked: str = prompt + written,
                budget: int = max(1, limit - approx_tokens(written)),
            ) -> StreamContext:
                return gateway.generate(
                    room.name, asked, purpose="summary", max_tokens=budget, on_prompt=on_prompt
                )

            run = await self.ai.run(
                ModelRequest(
                    room,
                    user,
                    "summary",
                    open_stream,
                    on_text,
                    files=piece.paths,
                    may_yield=resumed < MAX_YIELDS,
                )
            )
            written += run.text
            if not run.preempted:
                break
        progress.step()
        return written.strip()


def _notify(call: rpc.Call, message: str) -> None:
    """Progress before the first model call (waiting, reading history)."""
    call.notify(
        HubNotification.SUMMARY_PROGRESS,
        SummaryProgress(done=0, total=1, percentage=0, message=message),
    )


def _budget(gateway: LlmGateway, room: str, instructions: str) -> int:
    """Characters of input one call may carry after its instructions."""
    return max(128, gateway.prompt_budget_chars(room) - len(_INSTRUCTIONS[instructions]) - 64)


def _most_pieces(max_calls: int, per_group: int) -> int:
    """The most map pieces whose answers can still be combined within ``max_calls``, when one
    combining call takes ``per_group`` answers."""
    for pieces in range(max_calls, 1, -1):
        if pieces + _reduce_calls(pieces, per_group) <= max_calls:
            return pieces
    return 1


def _reduce_calls(pieces: int, per_group: int) -> int:
    calls = 0
    while pieces > per_group:
        pieces = math.ceil(pieces / per_group)
        calls += pieces
    return calls + 1


def _squeeze(parts: list[str], budget: int) -> _Piece:
    share = max(16, budget // max(1, len(parts)))
    return _Piece("".join(p if len(p) <= share else p[: share - 2] + "…\n" for p in parts), ())


class _Progress:
    """``summary/progress`` notifications: model calls done out of those planned."""

    def __init__(self, call: rpc.Call, total: int) -> None:
        self._call = call
        self.total = max(1, total)
        self.done = 0
        self._text = "asking the model"
        self._send()

    def message(self, text: str) -> None:
        self._text = text
        self._send()

    def grow(self, more: int) -> None:
        self.total += more
        self._send()

    def step(self) -> None:
        self.done += 1
        self._send()

    def _send(self) -> None:
        percentage = min(100, int(100 * self.done / self.total))
        self._call.notify(
            HubNotification.SUMMARY_PROGRESS,
            SummaryProgress(
                done=self.done, total=self.total, percentage=percentage, message=self._text
            ),
        )


def _pack(
    blocks: Iterable[tuple[str, str]], budget: int, most: int | None = None
) -> tuple[list[_Piece], int]:
    """``(path, text)`` blocks joined, in order, into pieces of at most ``budget`` characters
    (a block longer than that is cut at line boundaries, a line longer than that anywhere), at
    most ``most`` of them; and how many blocks went wholly into them. Lazy: blocks past the
    last piece are not looked at (nor, from a generator, made)."""
    pieces: list[_Piece] = []
    current = ""
    paths: list[str] = []
    read = 0
    for path, block in blocks:
        for part in _split(block, budget):
            if current and len(current) + len(part) > budget:
                pieces.append(_Piece(current, tuple(paths)))
                current, paths = "", []
                if most is not None and len(pieces) >= most:
                    return pieces, read
            current += part
            if path and (not paths or paths[-1] != path):
                paths.append(path)
        read += 1
    if current:
        pieces.append(_Piece(current, tuple(paths)))
    return pieces, read


def _split(block: str, budget: int) -> Iterator[str]:
    if len(block) <= budget:
        yield block
        return
    current = ""
    for match in _LINES.finditer(block):
        line = match.group()
        while len(line) > budget:
            if current:
                yield current
                current = ""
            yield line[:budget]
            line = line[budget:]
        if len(current) + len(line) > budget:
            yield current
            current = ""
        current += line
    if current:
        yield current


def _file_entry(change: FileChange) -> FileSummary:
    return FileSummary(
        path=change.path,
        authors=list(change.authors),
        added=change.added_lines,
        removed=change.removed_lines,
        created=change.before is None,
        deleted=change.after is None,
    )


def _diff_section(change: FileChange) -> Section:
    what = "new file" if change.before is None else "deleted" if change.after is None else "changed"
    title = (
        f"{change.path} ({what} by {', '.join(change.authors) or 'unknown'}; "
        f"+{change.added_lines} -{change.removed_lines})"
    )
    return Section(title, change.diff.rstrip("\n"), change.path)


def _when(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _markdown(
    kind: SummaryKind,
    since: float | None,
    until: float | None,
    files: list[FileSummary],
    summary: str,
    truncated: str | None,
) -> str:
    note = [f"> Note: {truncated}", ""] if truncated else []
    if kind in ("file", "selection"):
        return "\n".join([*note, summary]) if note else summary
    heading = "Catching up" if kind == "catch_up" else "Session"
    # A first catch-up reads from the room's start (time 0), not from 1970.
    start = _when(since) if since else "the room's start"
    lines = [f"## {heading}: {start} to {_when(until)}", "", *note]
    if not files:
        lines.append("Nothing changed." if kind == "session" else "No changes by teammates.")
        return "\n".join(lines) + "\n"
    authors = sorted({a for f in files for a in f.authors})
    lines += [f"{len(files)} file(s) changed by {', '.join(authors)}.", ""]
    lines += ["| file | by | added | removed |", "| --- | --- | ---: | ---: |"]
    for f in files:
        created = " (new)" if f.created else " (deleted)" if f.deleted else ""
        lines.append(f"| `{f.path}`{created} | {', '.join(f.authors)} | {f.added} | {f.removed} |")
    lines += ["", summary.strip(), ""]
    return "\n".join(lines)
