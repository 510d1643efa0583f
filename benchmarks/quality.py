"""Completion quality: HumanEval infilling through the whole path, editor to model and back.

Tasks: OpenAI's HumanEval infilling (MIT), single-line (1,033) and multi-line (5,815), from the copy
in ``tests/data/human-eval-infilling`` (``$HUDDLE_HUMANEVAL_INFILLING_DIR`` for another). Each task
is played as an editor would: a scripted LSP editor (``tests/support/lsp_editor.py``) opens the
task's prefix and suffix as one file through a real ``huddle lsp`` connected to a real hub (a
``huddle serve`` subprocess), puts the cursor in the hole (column 0 of the line after the prefix, as
the benchmark defines it), asks ``textDocument/inlineCompletion``, inserts the answer and runs the
task's tests on the result (:mod:`benchmarks.quality_sandbox`: a subprocess per task with time and
resource limits, no network). One ``huddle lsp`` session plays 500 tasks of a backend in one room,
opening and closing a file per task. pass@1 (greedy: temperature 0) and exact match (the completed
file's lines of code are the canonical file's) per backend and rule.

Backends, side by side in one run:

- *oracle* (:mod:`benchmarks.quality_oracle`): a loopback server that streams the canonical
  middle, then the rest of the file and more, a few characters per chunk, as a model that does
  not know where to stop. Huddle's result measures its stopping and trimming alone. The naive
  rules are applied to the very same streams: *first line* (up to and including the first line
  break) and *untrimmed* (everything streamed). The *ceiling* is the share of tasks whose middle
  fits the completion budget at all (``max_tokens`` chunks and ``max_completion_lines`` lines).
- *embedded*: the embedded model (llama.cpp serving SmolLM2-135M, started here exactly as the hub
  starts it and handed to the hub as its backend) through Huddle, against the same model given
  the benchmark's raw prompt directly (the task's prefix; the model has no FIM tokens) with the
  naive rules. Slow on a CPU: a seeded subset (``--quality-limit``).
- *url* (``--quality-backend URL``): any OpenAI-compatible server, e.g. vLLM serving a FIM model,
  through Huddle and raw (the raw prompt is the model's FIM template around the task's prefix
  and suffix).

Huddle's configuration is its default but for three fields: temperature 0 (pass@1 is greedy),
``max_context_files`` 0 (the room holds every other task: other files would only add unrelated
text, or for multi-line tasks another hole's answer) and ``max_tokens`` where
``--quality-max-tokens`` says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from benchmarks import ROOT, Benchmark, BenchmarkError, Settings
from benchmarks.common import (
    Check,
    name_list,
    positive_int,
    target_fields,
    targets_lines,
    write_results,
)
from benchmarks.keystroke import environment, running_hub
from benchmarks.quality_oracle import MODEL as ORACLE_MODEL
from benchmarks.quality_oracle import Oracle, OracleTask, planned
from benchmarks.quality_sandbox import Outcome, SandboxError, check_available, program
from benchmarks.quality_sandbox import run as run_program
from huddle.llm import (
    BackendClient,
    BackendConfig,
    CompletionRequest,
    EmbeddedConfig,
    EmbeddedEngine,
    LlmConfig,
    LlmError,
    template_for,
)

Kind = Literal["single", "multi"]
KINDS: tuple[Kind, ...] = ("single", "multi")
DATA_ENV = "HUDDLE_HUMANEVAL_INFILLING_DIR"
DATA_DIR = Path("tests") / "data" / "human-eval-infilling"  # relative to the repository
FILES: dict[Kind, str] = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}
ROOM = "bench/quality"
USER = "quality"
# Tasks per room: the hub adds a state-vector entry per file created (a fresh client id each
# time), and past about 4,900 files the asker's state outgrows a completion request's 64 KiB
# limit (the completion then fails); a room per 500 tasks keeps far below it.
ROOM_TASKS = 500
CURSORS = {
    "hole": "at column 0 of the line after the prefix, as the benchmark defines the hole",
    "indented": "on a line opened in the hole, after the indentation an editor puts there",
}
ATTRIBUTION = (
    "HumanEval infilling (Bavarian et al., 2022, 'Efficient Training of Language Models to "
    "Fill in the Middle'), from OpenAI's human-eval-infilling, MIT license."
)


@dataclass(frozen=True, slots=True)
class Task:
    kind: Kind
    task_id: str
    prompt: str  # the text before the hole
    suffix: str  # the text after it
    middle: str  # the canonical answer
    test: str
    entry_point: str

    @property
    def path(self) -> str:
        """The file the editor opens for the task (one per task, so none is reopened)."""
        return "humaneval/" + self.task_id.replace("/", "_") + ".py"

    def oracle(self) -> OracleTask:
        return OracleTask(self.task_id, self.prompt, self.suffix, self.middle, self.test)


def data_dir() -> Path:
    override = os.environ.get(DATA_ENV)
    return Path(override) if override else (ROOT / DATA_DIR).resolve()


def load(kind: Kind) -> list[Task]:
    """Every task of one set, in the file's order; a clear error when the data is absent."""
    path = data_dir() / FILES[kind]
    if not path.is_file():
        raise BenchmarkError(
            f"HumanEval infilling data not found: {path} (expected at {DATA_DIR} in the "
            f"repository, or set ${DATA_ENV} to the folder holding {FILES[kind]})"
        )
    tasks = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            tasks.append(
                Task(
                    kind,
                    row["task_id"],
                    row["prompt"],
                    row["suffix"],
                    row["canonical_solution"],
                    row["test"],
                    row["entry_point"],
                )
            )
    return tasks


def indented(task: Task) -> Task:
    """The task as an editor that indents new lines has it: the user opened a line in the
    hole and the editor indented it as the middle's first line is (the cursor at the end of
    that indentation, the line otherwise empty), which the issue's "empty indented line under
    a docstring" is. The completion fills that line (and those below it)."""
    first = task.middle.split("\n", 1)[0]
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    return replace(
        task,
        prompt=task.prompt + indent,
        suffix="\n" + task.suffix,
        middle=task.middle[len(indent) :].removesuffix("\n"),
    )


def sample(tasks: Sequence[Task], limit: int | None, seed: int) -> list[Task]:
    """``limit`` tasks drawn with ``seed``, in the set's order (all of them for None)."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    chosen = set(random.Random(seed).sample(range(len(tasks)), limit))
    return [t for i, t in enumerate(tasks) if i in chosen]


# -- the rules a client could apply to a raw stream ------------------------------------------


def first_line(text: str) -> str:
    """Naive: up to and including the first line break (the hole is whole lines)."""
    end = text.find("\n")
    return text if end < 0 else text[: end + 1]


def untrimmed(text: str) -> str:
    """Naive: everything the model streamed."""
    return text


NAIVE: dict[str, Callable[[str], str]] = {"first line": first_line, "untrimmed": untrimmed}


# -- playing tasks through the editor --------------------------------------------------------


def _editor_class() -> type[Any]:
    # Imported here so that ``python -m benchmarks`` loads without the test dependencies.
    from tests.support.lsp_editor import Editor

    return Editor


def hub_env(config: LlmConfig) -> dict[str, str]:
    """The hub subprocess's environment: ``config`` as its LLM settings, secrets included."""
    llm = config.model_dump(mode="json")
    for dumped, backend in zip(llm["backends"], config.backends, strict=True):
        dumped["api_key"] = backend.api_key.get_secret_value() if backend.api_key else None
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HUDDLE_LOG_LEVEL": "warning",
        "HUDDLE_HUB__LLM": json.dumps(llm),
    }


@dataclass(frozen=True, slots=True)
class RunningHub:
    url: str
    data_dir: Path
    workdir: Path

    @contextlib.asynccontextmanager
    async def editor(self, room: str) -> AsyncIterator[Any]:
        """A scripted editor joined to ``room`` through its own ``huddle lsp``."""
        from tests.support.peers import token

        root = self.workdir / room.replace("/", "-")
        root.mkdir(parents=True)
        options = {
            "hub": self.url,
            "room": room,
            "user": USER,
            "token": token(self.data_dir, room, USER),
        }
        editor = _editor_class()(
            root, init_options=options, env={"HUDDLE_LOG_LEVEL": "warning"}, keep_notifications=2
        )
        async with editor:
            await editor.wait_status("connected", timeout=60)
            yield editor


@contextlib.asynccontextmanager
async def huddle(config: LlmConfig, workdir: Path, name: str) -> AsyncIterator[RunningHub]:
    """A ``huddle serve`` subprocess using ``config``."""
    data = workdir / f"hub-{name}"
    async with running_hub(data, hub_env(config), ()) as (url, _proc):
        yield RunningHub(url, data, workdir / f"ws-{name}")


async def ask_huddle(editor: Any, task: Task) -> str:
    """Open the task's file, ask for the completion in the hole, close it: the answer ("" for
    no suggestion)."""
    from lsprotocol import types as lsp

    from huddle.protocol import Command
    from tests.support.peers import eventually

    editor.open(task.path, task.prompt + task.suffix)

    async def shared() -> bool:
        status = await editor.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=Command.STATUS)
        )
        return task.path in (status.get("shared") or [])

    await eventually(shared, timeout=60, what=f"{task.path} shared by the editor")
    try:
        text = await asyncio.wait_for(editor.inline(task.path, len(task.prompt)), 300)
    finally:
        editor.close(task.path)
        editor.buffers.pop(editor.uri(task.path), None)  # bounded memory over thousands
    return text or ""


# -- judging ------------------------------------------------------------------------------


def same_code(task: Task, answer: str) -> bool:
    """Exact match: the completed file has the canonical file's lines of code (blank lines and
    trailing spaces aside: on an empty line the completion rightly fills that line, where the
    canonical middle adds its own line break before it)."""

    def code(text: str) -> list[str]:
        return [line.rstrip() for line in text.split("\n") if line.strip()]

    return code(task.prompt + answer + task.suffix) == code(task.prompt + task.middle + task.suffix)


@dataclass
class Score:
    tasks: int = 0
    passed: int = 0
    exact: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome, exact: bool) -> None:
        self.tasks += 1
        self.passed += outcome.passed
        self.exact += exact
        self.reasons[outcome.reason] = self.reasons.get(outcome.reason, 0) + 1

    @property
    def pass_at_1(self) -> float | None:
        return self.passed / self.tasks if self.tasks else None

    @property
    def exact_match(self) -> float | None:
        return self.exact / self.tasks if self.tasks else None

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "pass_at_1": self.pass_at_1, "exact_match": self.exact_match}


class Judge:
    """Runs the tests of (task, answer) pairs, a few at once, each pair once; an exact answer
    is the canonical solution, which passes by the data set's construction (checked on a
    sample in ``tests/test_quality.py``), so it is not run again."""

    def __init__(self, timeout_s: float, parallel: int) -> None:
        self.timeout_s = timeout_s
        self._gate = asyncio.Semaphore(parallel)
        self._runs: dict[tuple[str, str], asyncio.Task[Outcome]] = {}
        self.executed = 0

    def outcome(self, task: Task, answer: str) -> asyncio.Task[Outcome]:
        key = (task.task_id, answer)
        if key not in self._runs:
            self._runs[key] = asyncio.ensure_future(self._judge(task, answer))
        return self._runs[key]

    async def _judge(self, task: Task, answer: str) -> Outcome:
        if answer == task.middle:
            return Outcome(True, "passed")
        async with self._gate:
            self.executed += 1
            source = program(task.prompt, answer, task.suffix, task.test, task.entry_point)
            return await run_program(source, self.timeout_s)


@dataclass
class Failure:
    task_id: str
    rule: str
    reason: str
    expected: str
    got: str
    detail: str


@dataclass
class BackendResult:
    """One backend's scores: rule -> set -> Score."""

    backend: str
    model: str
    template: str
    scores: dict[str, dict[str, Score]]
    seconds: float
    failures: list[Failure]  # Huddle's, a sample for reading
    lost_to_raw: dict[str, list[str]] = field(default_factory=dict)  # set -> task ids
    ceiling: dict[str, float] = field(default_factory=dict)
    unknown_prompts: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "template": self.template,
            "seconds": round(self.seconds, 1),
            "scores": {
                rule: {kind: score.summary() for kind, score in kinds.items()}
                for rule, kinds in self.scores.items()
            },
            "ceiling": self.ceiling,
            "lost_to_raw": self.lost_to_raw,
            "unknown_prompts": self.unknown_prompts,
            "huddle_failures_sample": [asdict(f) for f in self.failures],
        }


async def play(
    hub: RunningHub,
    tasks: Sequence[Task],
    judge: Judge,
    raw: Callable[[Task], Any],
    rules: dict[str, Callable[[str], str]],
    log: Callable[[str], None],
    label: str,
    keep_failures: int = 40,
) -> tuple[dict[str, dict[str, Score]], list[Failure], dict[str, list[str]]]:
    """Every task through Huddle (rule ``huddle``) and, for each naive rule, ``raw(task)``'s
    text (awaited) cut by that rule; the tests run while the next tasks are played. Every
    ``ROOM_TASKS`` tasks go to a new room through a new ``huddle lsp`` session."""
    pending: list[tuple[Task, str, str, asyncio.Task[Outcome]]] = []
    started = time.monotonic()
    for first in range(0, len(tasks), ROOM_TASKS):
        async with hub.editor(f"{ROOM}-{label}-{first // ROOM_TASKS}") as editor:
            for number, task in enumerate(tasks[first : first + ROOM_TASKS], start=first + 1):
                answer = await ask_huddle(editor, task)
                pending.append((task, "huddle", answer, judge.outcome(task, answer)))
                stream = await raw(task)
                for name, cut_by in rules.items():
                    cut = cut_by(stream)
                    pending.append((task, name, cut, judge.outcome(task, cut)))
                if number % 100 == 0 or number == len(tasks):
                    rate = number / (time.monotonic() - started)
                    log(f"[quality] {label}: {number}/{len(tasks)} tasks ({rate:.1f}/s)")
    scores: dict[str, dict[str, Score]] = {}
    failures: list[Failure] = []
    passed_by: dict[tuple[str, str], set[str]] = {}
    for task, rule, answer, judged in pending:
        outcome = await judged
        exact = same_code(task, answer)
        scores.setdefault(rule, {}).setdefault(task.kind, Score()).add(outcome, exact)
        if outcome.passed:
            passed_by.setdefault((rule, task.kind), set()).add(task.task_id)
        elif rule == "huddle" and len(failures) < keep_failures:
            failures.append(
                Failure(task.task_id, rule, outcome.reason, task.middle, answer, outcome.detail)
            )
    lost: dict[str, list[str]] = {}
    for kind in {t.kind for t in tasks}:
        raw_won = set().union(*(passed_by.get((r, kind), set()) for r in rules))
        lost[kind] = sorted(raw_won - passed_by.get(("huddle", kind), set()))
    return scores, failures, lost


def ceiling(tasks: Sequence[Task], max_tokens: int, max_lines: int) -> dict[str, float]:
    """Per set, the share of tasks whose middle the oracle can stream within ``max_tokens``
    chunks and the block rule can hold within ``max_lines`` lines."""
    result: dict[str, float] = {}
    for kind in KINDS:
        chosen = [t for t in tasks if t.kind == kind]
        if chosen:
            fits = sum(
                planned(t.oracle(), max_tokens).startswith(t.middle)
                and t.middle.count("\n") <= max_lines
                for t in chosen
            )
            result[kind] = fits / len(chosen)
    return result


# -- the backends -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QualityOptions:
    sets: tuple[Kind, ...] = KINDS
    backends: tuple[str, ...] = ("oracle", "embedded")
    oracle_limit: int | None = None  # tasks per set; None: all
    limit: int = 60  # tasks per set for the model backends
    seed: int = 17
    max_tokens: int | None = None  # Huddle's default
    timeout_s: float = 10.0
    url: str | None = None
    model: str | None = None
    template: str = "auto"
    cursor: Literal["hole", "indented"] = "hole"


FULL = QualityOptions()
QUICK = QualityOptions(oracle_limit=100, limit=8)


def base_config(options: QualityOptions) -> LlmConfig:
    """Huddle's defaults but for the fields the module docstring names."""
    config = LlmConfig(temperature=0.0, max_context_files=0)
    if options.max_tokens is not None:
        config = config.model_copy(update={"max_tokens": options.max_tokens})
    return config


def hub_config(backend: BackendConfig, options: QualityOptions) -> LlmConfig:
    return base_config(options).model_copy(update={"backends": [backend]})


def chosen(options: QualityOptions, limit: int | None) -> list[Task]:
    tasks: list[Task] = []
    for kind in options.sets:
        tasks += sample(load(kind), limit, options.seed)
    return [indented(t) for t in tasks] if options.cursor == "indented" else tasks


async def run_oracle(
    tasks: Sequence[Task],
    options: QualityOptions,
    workdir: Path,
    judge: Judge,
    log: Callable[[str], None],
) -> BackendResult:
    async with Oracle(t.oracle() for t in tasks) as oracle:
        backend = BackendConfig(url=oracle.url, model=ORACLE_MODEL, fim_template="qwen2.5-coder")
        config = hub_config(backend, options)
        started = time.monotonic()

        async def raw(task: Task) -> str:
            return planned(task.oracle(), config.max_tokens)

        async with huddle(config, workdir, "oracle") as hub:
            scores, failures, _ = await play(hub, tasks, judge, raw, NAIVE, log, "oracle")
        return BackendResult(
            "oracle",
            ORACLE_MODEL,
            "qwen2.5-coder",
            scores,
            time.monotonic() - started,
            failures,
            ceiling=ceiling(tasks, config.max_tokens, config.max_completion_lines),
            unknown_prompts=oracle.unknown,
        )


async def run_model(
    name: str,
    backend: BackendConfig,
    options: QualityOptions,
    workdir: Path,
    judge: Judge,
    log: Callable[[str], None],
) -> BackendResult:
    """A real model through Huddle and given the benchmark's raw prompt directly."""
    tasks = chosen(options, options.limit)
    config = hub_config(backend, options)
    template = template_for(backend.fim_template, backend.model)
    started = time.monotonic()
    async with BackendClient(backend, config) as direct:

        async def raw(task: Task) -> str:
            request = CompletionRequest(
                model=backend.model,
                prompt=template.render(prefix=task.prompt, suffix=task.suffix),
                max_tokens=config.max_tokens,
                temperature=0.0,
                stop=list(template.stop),
            )
            try:
                return (await direct.complete(request)).text
            except LlmError as exc:
                raise BenchmarkError(f"{name}: the raw request failed: {exc}") from exc

        async with huddle(config, workdir, name) as hub:
            scores, failures, lost = await play(hub, tasks, judge, raw, NAIVE, log, name)
    return BackendResult(
        name,
        backend.model,
        template.name,
        _rename_raw(scores),
        time.monotonic() - started,
        failures,
        lost_to_raw=lost,
    )


def _rename_raw(scores: dict[str, dict[str, Score]]) -> dict[str, dict[str, Score]]:
    return {(rule if rule == "huddle" else f"raw, {rule}"): s for rule, s in scores.items()}


async def url_backend(options: QualityOptions) -> BackendConfig:
    """The ``--quality-backend`` server, its model named or asked of ``/v1/models``."""
    import httpx

    assert options.url is not None
    model = options.model
    if model is None:
        root = options.url.rstrip("/").removesuffix("/v1")
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
                listed = (await http.get(f"{root}/v1/models")).json()
            model = str(listed["data"][0]["id"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise BenchmarkError(
                f"cannot list the models of {options.url} ({exc}): pass --quality-model"
            ) from None
    api_key = os.environ.get("HUDDLE_QUALITY_API_KEY")
    return BackendConfig.model_validate(
        {
            "url": options.url,
            "model": model,
            "fim_template": options.template,
            "api_key": api_key,
        }
    )


@dataclass
class QualityRun:
    results: list[BackendResult]
    executed: int
    max_tokens: int
    max_lines: int
    embedded_startup_s: float | None = None


async def run_all(options: QualityOptions, log: Callable[[str], None]) -> QualityRun:
    try:
        await asyncio.to_thread(check_available)
    except SandboxError as exc:
        raise BenchmarkError(str(exc)) from None
    judge = Judge(options.timeout_s, max(1, (os.cpu_count() or 2)))
    results: list[BackendResult] = []
    startup: float | None = None
    with tempfile.TemporaryDirectory(prefix="huddle-quality-") as tmp:
        workdir = Path(tmp)
        if "oracle" in options.backends:
            log("[quality] oracle ...")
            tasks = chosen(options, options.oracle_limit)
            results.append(await run_oracle(tasks, options, workdir, judge, log))
        if "embedded" in options.backends:
            log("[quality] starting the embedded model (llama.cpp, SmolLM2-135M) ...")
            async with EmbeddedEngine(EmbeddedConfig(verbosity=1)) as engine:
                startup = engine.startup_seconds
                backend = engine.backend(base_config(options))
                results.append(await run_model("embedded", backend, options, workdir, judge, log))
        if options.url is not None:
            backend = await url_backend(options)
            log(f"[quality] {backend.model} at {backend.url} ...")
            results.append(await run_model("url", backend, options, workdir, judge, log))
    config = base_config(options)
    return QualityRun(
        results, judge.executed, config.max_tokens, config.max_completion_lines, startup
    )


# -- verdict and report --------------------------------------------------------------------


def evaluate(run: QualityRun) -> list[Check]:
    """The issue's targets: the oracle's single-line pass@1 at 99% or more; its multi-line at
    the ceiling (stopping and trimming lose nothing the budget lets through); a model through
    Huddle loses no task that its raw prompt wins."""
    checks: list[Check] = []
    for result in run.results:
        huddle = result.scores.get("huddle", {})
        if result.backend == "oracle":
            single = huddle.get("single")
            if single is not None and single.pass_at_1 is not None:
                checks.append(
                    Check(
                        "oracle single-line pass@1 >= 99%",
                        single.pass_at_1 >= 0.99,
                        f"{percent(single.pass_at_1)} of {single.tasks}",
                    )
                )
            multi = huddle.get("multi")
            if multi is not None and multi.pass_at_1 is not None and "multi" in result.ceiling:
                ceiling = result.ceiling["multi"]
                checks.append(
                    Check(
                        "oracle multi-line pass@1 at the budget's ceiling",
                        multi.pass_at_1 >= ceiling,
                        f"{percent(multi.pass_at_1)} of {multi.tasks}, ceiling {percent(ceiling)}",
                    )
                )
        else:
            lost = sum(len(ids) for ids in result.lost_to_raw.values())
            checks.append(
                Check(
                    f"{result.backend}: no task the raw prompt passes is lost through Huddle",
                    lost == 0,
                    f"{lost} lost",
                )
            )
    return checks


# -- report ---------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown(
    run: QualityRun, checks: list[Check], options: QualityOptions, env: dict[str, Any]
) -> str:
    lines = [
        "# Completion quality (HumanEval infilling through huddle lsp and the hub)",
        "",
        f"Cursor: {CURSORS[options.cursor]}.",
        "",
        f"{env['date']}, commit {env['commit']}, {env['cpus']} CPUs ({env['cpu_model']}).",
        "",
        "| backend | rule | single-line pass@1 | exact | tasks "
        "| multi-line pass@1 | exact | tasks |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in run.results:
        for rule, kinds in result.scores.items():
            cells = []
            for kind in KINDS:
                score = kinds.get(kind)
                cells += (
                    [percent(score.pass_at_1), percent(score.exact_match), str(score.tasks)]
                    if score
                    else ["-", "-", "-"]
                )
            lines.append(f"| {result.backend} ({result.model}) | {rule} | {' | '.join(cells)} |")
        if result.ceiling:
            cells = [percent(result.ceiling.get(k)) for k in KINDS]
            lines.append(
                f"| {result.backend} | ceiling (middle within the budget) | {cells[0]} | | | "
                f"{cells[1]} | | |"
            )
    lines += [
        "",
        "*huddle*: what the editor got from `huddle lsp`; *first line* (up to and including the "
        "first line break) and *untrimmed* (all of it): naive rules on the oracle's very stream, "
        "or on the model's answer to the benchmark's raw prompt (*raw*) sent straight to it. "
        "*ceiling*: tasks whose middle fits the completion budget at all (the oracle's chunks "
        f"within `max_tokens` = {run.max_tokens}, lines within `max_completion_lines` = "
        f"{run.max_lines}). Exact: the completed file's lines of code are the canonical file's.",
        "",
    ]
    for result in run.results:
        if result.lost_to_raw:
            lost = ", ".join(f"{k}: {len(v)}" for k, v in sorted(result.lost_to_raw.items()))
            lines.append(
                f"- {result.backend}: tasks the raw prompt passes and Huddle fails: {lost}"
            )
        lines.append(f"- {result.backend}: {result.seconds:.0f} s")
    lines += ["", *targets_lines(checks)]
    lines += [
        f"- tests executed: {run.executed} (exact answers are the canonical solution, not rerun)",
        f"- options: {json.dumps(asdict(options))}",
        "",
        ATTRIBUTION,
        "",
    ]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--quality-sets", type=name_list(KINDS), metavar="single,multi")
    group.add_argument(
        "--quality-backends",
        type=name_list(("oracle", "embedded")),
        metavar="oracle,embedded",
        help="built-in backends to run (default both; --quality-backend adds a server)",
    )
    group.add_argument(
        "--quality-limit",
        type=positive_int,
        metavar="N",
        help=f"tasks per set for model backends (default {FULL.limit}, quick {QUICK.limit})",
    )
    group.add_argument(
        "--quality-oracle-limit",
        type=positive_int,
        metavar="N",
        help=f"tasks per set for the oracle (default all, quick {QUICK.oracle_limit})",
    )
    group.add_argument("--quality-seed", type=int, metavar="N", help=f"default {FULL.seed}")
    group.add_argument(
        "--quality-cursor",
        choices=("hole", "indented"),
        help="hole: column 0 of the line after the prefix (the benchmark's definition, "
        "default); indented: on an opened line, after the indentation an editor puts there "
        "(results in quality-indented.*)",
    )
    group.add_argument(
        "--quality-max-tokens", type=positive_int, metavar="N", help="Huddle's max_tokens"
    )
    group.add_argument("--quality-timeout", type=float, metavar="S", help="per task's tests")
    group.add_argument(
        "--quality-backend",
        metavar="URL",
        help="an OpenAI-compatible server (vLLM with a FIM model), API key from "
        "$HUDDLE_QUALITY_API_KEY",
    )
    group.add_argument("--quality-model", metavar="NAME", help="default: its /v1/models")
    group.add_argument(
        "--quality-template", metavar="NAME", help="FIM template (default auto, from the model)"
    )


def options_from(settings: Settings, args: argparse.Namespace) -> QualityOptions:
    options = QUICK if settings.quick else FULL
    overrides: dict[str, Any] = {}
    for flag, attr in (
        ("sets", "sets"),
        ("backends", "backends"),
        ("limit", "limit"),
        ("oracle_limit", "oracle_limit"),
        ("seed", "seed"),
        ("max_tokens", "max_tokens"),
        ("timeout", "timeout_s"),
        ("backend", "url"),
        ("model", "model"),
        ("template", "template"),
        ("cursor", "cursor"),
    ):
        value = getattr(args, f"quality_{flag}", None)
        if value is not None:
            overrides[attr] = value
    return replace(options, **overrides)


def run(settings: Settings, args: argparse.Namespace) -> str:
    options = options_from(settings, args)
    env = environment()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    result = asyncio.run(run_all(options, log))
    checks = evaluate(result)
    text = markdown(result, checks, options, env)
    stem = "quality" + ("-indented" if options.cursor == "indented" else "")
    stem += "-quick" if settings.quick else ""
    report = {
        "benchmark": "quality",
        "quick": settings.quick,
        "options": asdict(options),
        "environment": env,
        "duration_s": round(time.monotonic() - started, 1),
        "embedded_startup_s": result.embedded_startup_s,
        "tests_executed": result.executed,
        "backends": [r.summary() for r in result.results],
        "attribution": ATTRIBUTION,
        **target_fields(checks),
    }
    write_results(settings.results_dir, stem, report, text)
    return text


BENCHMARK = Benchmark(
    name="quality",
    help="completion quality: HumanEval infilling pass@1 through huddle lsp and the hub",
    add_arguments=add_arguments,
    run=run,
)
