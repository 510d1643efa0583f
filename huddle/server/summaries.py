"""Summaries answered by the hub: a file or a selection, "catch me up" on teammates' changes,
and a whole session as a pull-request description.

The structured part (which files changed, who changed them, how many lines) is computed by the
hub from its history and is exact; the model only writes the prose. Inputs larger than the
model's context are summarised piece by piece (map), then the pieces together (reduce), with
progress that counts the model calls actually made. Private files never reach the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pycrdt import Text
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from huddle.collab import schema
from huddle.llm.prompt import approx_tokens
from huddle.server import rpc
from huddle.server.ai import AiService, OnPrompt, StreamContext, private_paths, resolve_cursor
from huddle.server.history import FileChange, HistoryGap, file_changes

if TYPE_CHECKING:
    from huddle.llm.gateway import LlmGateway
    from huddle.server.hub import RpcContext
    from huddle.server.room import Room

MAX_YIELDS = 20  # a summary steps aside for completions at most this often, then runs
PROGRESS = "summary/progress"
PARTIAL = "summary/partial"

Kind = Literal["file", "selection", "catch_up", "session"]

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


class SummaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    path: str | None = Field(None, max_length=1024)
    start: dict[str, Any] | None = None  # Yjs relative positions of a selection
    end: dict[str, Any] | None = None
    since: float | None = Field(None, ge=0, description="seconds since the epoch")
    until: float | None = Field(None, ge=0)


@dataclass(frozen=True, slots=True)
class Section:
    """One piece of input: a file, a selection, or one file's diff with its authors."""

    title: str
    body: str
    path: str

    def render(self) -> str:
        return f"### {self.title}\n```\n{self.body}\n```\n"


class Summaries:
    def __init__(self, ai: AiService) -> None:
        self.ai = ai

    async def summarize(self, ctx: RpcContext, call: rpc.Call) -> dict[str, Any]:
        try:
            params = SummaryParams.model_validate(call.params)
        except ValidationError as exc:
            raise rpc.RpcError("invalid_params", f"{exc.error_count()} invalid fields") from None
        room, user = ctx.room, ctx.peer.grant.user
        now = time.time()
        changes: list[FileChange] = []
        since = until = None
        if params.kind in ("file", "selection"):
            sections, instructions = [self._code(room, params)], "file"
        else:
            if params.kind == "catch_up":
                last = await ctx.hub.store.last_seen(room.name, user)
                since = params.since if params.since is not None else (last or 0.0)
            elif params.since is None:
                raise rpc.RpcError("invalid_params", "a session summary needs `since`")
            else:
                since = params.since
            until = params.until if params.until is not None else now
            if until <= since:
                raise rpc.RpcError("invalid_params", "`until` must be after `since`")
            changes = await self._changes(ctx, room, user, since, until, params.kind)
            sections = [_diff_section(c) for c in changes]
            instructions = "changes" if params.kind == "catch_up" else "session"
        summary = (
            await self._map_reduce(room, user, call, instructions, sections) if sections else ""
        )
        if params.kind == "catch_up" and params.since is None:
            await ctx.hub.store.set_last_seen(room.name, user, until or now)
        files = [
            {
                "path": c.path,
                "authors": list(c.authors),
                "added": c.added_lines,
                "removed": c.removed_lines,
                "created": c.before is None,
                "deleted": c.after is None,
            }
            for c in changes
        ]
        return {
            "kind": params.kind,
            "since": since,
            "until": until,
            "files": files,
            "summary": summary,
            "markdown": _markdown(params.kind, since, until, files, summary),
        }

    # -- inputs ---------------------------------------------------------------------------

    def _code(self, room: Room, params: SummaryParams) -> Section:
        if params.path is None:
            raise rpc.RpcError("invalid_params", "which file? (`path`)")
        text = schema.files(room.doc).get(params.path)
        if not isinstance(text, Text):
            raise rpc.RpcError("not_found", "no such file in the room")
        if private_paths(room).private(params.path):
            raise rpc.RpcError("forbidden", "this file is private: it never goes to a model")
        content = str(text)
        if params.kind == "selection":
            if params.start is None or params.end is None:
                raise rpc.RpcError("invalid_params", "a selection needs `start` and `end`")
            start = resolve_cursor(room, text, content, params.start)
            end = resolve_cursor(room, text, content, params.end)
            if start is None or end is None:
                raise rpc.RpcError("invalid_params", "the selection does not resolve")
            start, end = min(start, end), max(start, end)
            if start == end:
                raise rpc.RpcError("invalid_params", "the selection is empty")
            first = content.count("\n", 0, start) + 1
            last = first + content.count("\n", start, end)
            return Section(f"{params.path}, lines {first}-{last}", content[start:end], params.path)
        return Section(params.path, content, params.path)

    async def _changes(
        self, ctx: RpcContext, room: Room, user: str, since: float, until: float, kind: str
    ) -> list[FileChange]:
        try:
            changes = await file_changes(ctx.hub.store, room.name, since, until)
        except HistoryGap as exc:
            raise rpc.RpcError("history_gap", str(exc)) from None
        rules = private_paths(room)
        kept = [c for c in changes if not rules.private(c.path)]
        if kind == "catch_up":  # what teammates changed: files only I touched are not news
            kept = [c for c in kept if any(a != user for a in c.authors)]
        return kept

    # -- the model ------------------------------------------------------------------------

    async def _map_reduce(
        self, room: Room, user: str, call: rpc.Call, instructions: str, sections: list[Section]
    ) -> str:
        gateway = await self.ai.start()
        budget = gateway.prompt_budget_chars(room.name) - len(_INSTRUCTIONS[instructions]) - 64
        pieces = _pack([s.render() for s in sections], budget)
        total = len(pieces) + (1 if len(pieces) > 1 else 0)
        progress = _Progress(call, total)
        if len(pieces) == 1:
            return await self._ask(room, user, call, instructions, pieces[0], sections, progress)
        parts = []
        for number, piece in enumerate(pieces, start=1):
            progress.message(f"summarising part {number} of {len(pieces)}")
            parts.append(await self._ask(room, user, None, instructions, piece, sections, progress))
        while True:  # reduce, in rounds if the partial summaries are still too long together
            joined = [f"Part {i}:\n{p.strip()}\n" for i, p in enumerate(parts, start=1)]
            groups = _pack(joined, budget)
            if len(groups) == 1:
                progress.message("combining the parts")
                return await self._ask(room, user, call, "reduce", groups[0], sections, progress)
            progress.grow(len(groups))
            parts = [
                await self._ask(room, user, None, "reduce", g, sections, progress) for g in groups
            ]

    async def _ask(
        self,
        room: Room,
        user: str,
        call: rpc.Call | None,
        instructions: str,
        body: str,
        sections: list[Section],
        progress: _Progress,
    ) -> str:
        """One model call; streams partials when ``call`` is given (the final call)."""
        prompt = f"{_INSTRUCTIONS[instructions]}\n\n{body}{_ANSWER}"
        streamed = ""

        def on_text(text: str) -> bool:
            nonlocal streamed
            streamed += text
            if call is not None:
                call.notify(PARTIAL, {"text": streamed})
            return False

        files = tuple(dict.fromkeys(s.path for s in sections if s.path in body))
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
                room,
                user,
                "summary",
                open_stream,
                on_text,
                files=files,
                may_yield=resumed < MAX_YIELDS,
            )
            written += run.text
            if not run.preempted:
                break
        progress.step()
        return written.strip()


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
            PROGRESS,
            {
                "done": self.done,
                "total": self.total,
                "percentage": percentage,
                "message": self._text,
            },
        )


def _pack(blocks: list[str], budget: int) -> list[str]:
    """Blocks joined into pieces of at most ``budget`` characters; a block longer than that is
    cut at line boundaries (and a line longer than that, anywhere)."""
    pieces: list[str] = []
    current = ""
    for block in blocks:
        for part in _split(block, budget):
            if current and len(current) + len(part) > budget:
                pieces.append(current)
                current = ""
            current += part
    if current:
        pieces.append(current)
    return pieces


def _split(block: str, budget: int) -> list[str]:
    if len(block) <= budget:
        return [block]
    parts: list[str] = []
    current = ""
    for line in block.splitlines(keepends=True):
        while len(line) > budget:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:budget])
            line = line[budget:]
        if len(current) + len(line) > budget:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return parts


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
    kind: Kind,
    since: float | None,
    until: float | None,
    files: list[dict[str, Any]],
    summary: str,
) -> str:
    if kind in ("file", "selection"):
        return summary
    heading = "Catching up" if kind == "catch_up" else "Session"
    lines = [f"## {heading}: {_when(since)} to {_when(until)}", ""]
    if not files:
        lines.append("Nothing changed." if kind == "session" else "No changes by teammates.")
        return "\n".join(lines) + "\n"
    authors = sorted({a for f in files for a in f["authors"]})
    lines += [f"{len(files)} file(s) changed by {', '.join(authors)}.", ""]
    lines += ["| file | by | added | removed |", "| --- | --- | ---: | ---: |"]
    for f in files:
        note = " (new)" if f["created"] else " (deleted)" if f["deleted"] else ""
        lines.append(
            f"| `{f['path']}`{note} | {', '.join(f['authors'])} | {f['added']} | {f['removed']} |"
        )
    lines += ["", summary.strip(), ""]
    return "\n".join(lines)
