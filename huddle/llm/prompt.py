"""Prompt layout that lets vLLM's prefix cache serve a whole team.

vLLM caches full 16-token blocks keyed by everything before them, so a prompt is laid out from
the most shared and stable part to the most volatile: the room's other files sorted by path and
cut at fixed line boundaries, then the current file, whose start is also cut at fixed line
boundaries, and the cursor last. Nothing volatile (times, user names, cursor-relative cuts)
comes before the current file. Budgets are in tokens, estimated as characters / 4 unless a
tokenizer is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from huddle.llm.config import LlmConfig
from huddle.llm.fim import FimTemplate
from huddle.llm.shaping import healed

TokenCounter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    return (len(text) + 3) // 4


class ContextFile(BaseModel):
    """Another file of the room, recently edited by someone in the team."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    text: str


class CodeContext(BaseModel):
    """What a completion is asked for: the text around the cursor and the room's other files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="workspace-relative POSIX path of the current file")
    prefix: str = Field(description="text before the cursor")
    suffix: str = Field("", description="text after the cursor")
    files: list[ContextFile] = Field(default_factory=list)
    repo_name: str = ""


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    path: str = Field(description="the current file")
    stop: list[str]
    template: str
    estimated_tokens: int
    context_paths: list[str]


class SharedContext:
    """The room's other files as every teammate's prompt shows them: one snapshot per room,
    retaken at most every ``refresh_s`` seconds.

    With live texts, a teammate's keystroke in a context file changes every other prompt from
    that point on, and vLLM's prefix cache misses from there. A snapshot keeps the shared part
    byte-identical for the whole team between refreshes (measured: 57% of prompt tokens from
    the cache with live files, 85% with a 15 s snapshot); the file being edited is always live.
    """

    def __init__(self, refresh_s: float, max_files: int) -> None:
        self.refresh_s = refresh_s
        self.max_files = max_files
        self.taken_at: float | None = None
        self._files: list[ContextFile] = []

    def files(
        self, now: float, current: str, recent: Callable[[], list[tuple[str, str]]]
    ) -> list[ContextFile]:
        """The snapshot's files but ``current``. ``recent`` gives (path, text) of the room's
        recently edited files, most recent first; it is called only to retake the snapshot."""
        if self.taken_at is None or now - self.taken_at >= self.refresh_s:
            self.taken_at = now
            taken = recent()[: self.max_files + 1]  # one spare for the asker's own file
            self._files = [ContextFile(path=p, text=t) for p, t in taken]
        return [f for f in self._files if f.path != current][: self.max_files]


@dataclass(frozen=True, slots=True)
class PromptBudget:
    tokens: int
    context_share: float = 0.5
    suffix_share: float = 0.25
    line_quantum: int = 32
    max_context_files: int = 16

    @classmethod
    def from_config(cls, config: LlmConfig, tokens: int | None = None) -> PromptBudget:
        return cls(
            tokens=tokens if tokens is not None else config.context_tokens,
            context_share=config.context_share,
            suffix_share=config.suffix_share,
            line_quantum=config.line_quantum,
            max_context_files=config.max_context_files,
        )


def build_prompt(
    template: FimTemplate,
    context: CodeContext,
    budget: PromptBudget,
    count: TokenCounter = approx_tokens,
) -> Prompt:
    files: list[tuple[str, str]] = []
    used = 0
    if template.has_repo_tokens:
        context_budget = int(budget.tokens * budget.context_share)
        by_path = {f.path: f.text for f in context.files if f.path != context.path}
        for path in sorted(by_path)[: budget.max_context_files]:
            header = count(template.file_entry(path, ""))
            text = _head(by_path[path], context_budget - used - header, budget.line_quantum, count)
            if text is None:
                continue
            files.append((path, text))
            used += count(template.file_entry(path, text))
    overhead = count(
        template.render(prefix="", suffix="", path=context.path, repo=context.repo_name, files=[])
    )
    current_budget = max(0, budget.tokens - used - overhead)
    suffix = _start(context.suffix, int(current_budget * budget.suffix_share), count)
    if template.fim is None:
        suffix = ""  # plain-prefix models never see the suffix
    # The editor's indentation on an empty line, less the space the model writes with its word.
    before = context.prefix[: len(context.prefix) - len(healed(_last_line(context.prefix)))]
    prefix = _tail(before, current_budget - count(suffix), budget.line_quantum, count)
    text = template.render(
        prefix=prefix, suffix=suffix, path=context.path, repo=context.repo_name, files=files
    )
    return Prompt(
        text=text,
        path=context.path,
        stop=list(template.stop),
        template=template.name,
        estimated_tokens=count(text),
        context_paths=[path for path, _ in files],
    )


def _last_line(text: str) -> str:
    return text[text.rfind("\n") + 1 :]


def _head(text: str, budget: int, quantum: int, count: TokenCounter) -> str | None:
    """The start of a context file: all of it, or its first k*quantum lines (largest k that
    fits), so the cut does not move while the file is edited below it. None if nothing fits."""
    if budget <= 0:
        return None
    if count(text) <= budget:
        return text
    lines = text.splitlines(keepends=True)
    best = _largest(len(lines) // quantum, lambda k: count("".join(lines[: k * quantum])) <= budget)
    return "".join(lines[: best * quantum]) if best > 0 else None


def _tail(prefix: str, budget: int, quantum: int, count: TokenCounter) -> str:
    """The end of the text before the cursor. Whole blocks of ``quantum`` lines are dropped
    from the top of the file, so the kept start only moves when a block boundary is crossed."""
    if budget <= 0:
        return ""
    if count(prefix) <= budget:
        return prefix
    lines = prefix.splitlines(keepends=True)
    blocks = (len(lines) - 1) // quantum  # never drop the cursor's own line as a block
    drop = _smallest(blocks, lambda k: count("".join(lines[k * quantum :])) <= budget)
    if drop is not None:
        return "".join(lines[drop * quantum :])
    # Even the last lines are too long: keep as many characters as fit, cut mid-line.
    last = "".join(lines[blocks * quantum :])
    keep = _largest(len(last), lambda n: count(last[len(last) - n :]) <= budget)
    return last[len(last) - keep :]


def _start(suffix: str, budget: int, count: TokenCounter) -> str:
    """The start of the text after the cursor, in whole lines (the cursor's line first)."""
    if budget <= 0 or not suffix:
        return ""
    if count(suffix) <= budget:
        return suffix
    lines = suffix.splitlines(keepends=True)
    n = _largest(len(lines), lambda k: count("".join(lines[:k])) <= budget)
    if n > 0:
        return "".join(lines[:n])
    first = lines[0]
    keep = _largest(len(first), lambda k: count(first[:k]) <= budget)
    return first[:keep]


def _largest(upper: int, fits: Callable[[int], bool]) -> int:
    """Largest k in [0, upper] with fits(k), for a monotone (true then false) predicate;
    0 if none above 0 fits."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest(upper: int, fits: Callable[[int], bool]) -> int | None:
    """Smallest k in [0, upper] with fits(k) for a monotone (false then true) predicate."""
    if not fits(upper):
        return None
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
