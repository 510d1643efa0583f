"""Acceptance: what became of each completion (accepted, partly, ignored), read by a real
``huddle lsp`` from a real LSP client's changes or said by the editor (the item's command),
counted by a real hub in /metrics, the audit log and ``huddle.status``; and the one adaptation
it drives (line scope for a user who keeps accepting only the first line of blocks), measured
with a scripted editor against the over-generating oracle on HumanEval multi-line tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from benchmarks import quality
from benchmarks.quality_oracle import MODEL as ORACLE_MODEL
from benchmarks.quality_oracle import Oracle
from huddle.llm import BackendConfig, LlmConfig
from huddle.protocol import Command, HubMethod
from huddle.server import acceptance
from huddle.server.acceptance import Acceptance
from huddle.server.hub import Hub
from huddle.server.metrics import HubMetrics
from tests.support.hubs import local_hub
from tests.support.lsp_editor import Editor
from tests.support.peers import eventually
from tests.support.replay import FakeBackend, streaming
from tests.test_ai_gateway import connect, params, seeded
from tests.test_lsp_ai import ROOM, opened, options

ANSWER = "price * count"


async def status(editor: Editor) -> dict[str, Any]:
    result = await editor.client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=Command.STATUS)
    )
    assert isinstance(result, dict)
    return result


async def decided(editor: Editor, count: int) -> dict[str, Any]:
    """The user's acceptance as ``huddle.status`` shows it, once ``count`` were decided."""
    seen: dict[str, Any] = {}

    async def enough() -> bool:
        seen.update((await status(editor)).get("acceptance") or {})
        return bool(sum(seen.get(k, 0) for k in ("accepted", "partly", "ignored")) >= count)

    await eventually(enough, what=f"{count} outcomes in huddle.status")
    return seen


def counted(hub: Hub, user: str, outcome: str) -> float:
    labels = {"room": ROOM, "user": user, "outcome": outcome}
    return hub.metrics.registry.get_sample_value("huddle_ai_completions_total", labels) or 0.0


def end_of(editor: Editor, path: str, text: str) -> int:
    return editor.text(path).index(text) + len(text)


@pytest.mark.parametrize("style", ["vscode", "neovim"])
async def test_outcomes_are_read_from_the_editors_changes(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path, style: str
) -> None:
    backend.handler = streaming("price", " * ", "count")
    init = options(ai_hub, data_dir, "ann")
    async with Editor(tmp_path, style=style, init_options=init) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "a = \nb = \nc = \nd = \n")

        # Accepted: the editor inserts all of it (after an edit above that moves it).
        at = end_of(ann, "m.py", "a = ")
        assert await ann.inline("m.py", at) == ANSWER
        ann.type("m.py", 0, "# top\n")
        ann.type("m.py", at + len("# top\n"), ANSWER)
        await ann.flush()
        assert (await decided(ann, 1))["accepted"] == 1

        # Partly: a word of it accepted, then the user's own text.
        at = end_of(ann, "m.py", "b = ")
        assert await ann.inline("m.py", at) == ANSWER
        ann.type("m.py", at, "price")
        ann.type("m.py", at + 5, " + tax")
        await ann.flush()
        assert (await decided(ann, 2))["partly"] == 1

        # Ignored: something else typed there.
        at = end_of(ann, "m.py", "c = ")
        assert await ann.inline("m.py", at) == ANSWER
        ann.type("m.py", at, "0")
        await ann.flush()
        assert (await decided(ann, 3))["ignored"] == 1

        # Ignored: another completion asked for elsewhere, nothing of this one inserted.
        at = end_of(ann, "m.py", "d = ")
        assert await ann.inline("m.py", at) == ANSWER
        assert await ann.inline("m.py", end_of(ann, "m.py", "c = 0")) == ANSWER
        stats = await decided(ann, 4)

    # As the hub counted when the last outcome came: before the fifth was shown.
    assert stats == {
        "shown": 4,
        "accepted": 1,
        "partly": 1,
        "ignored": 2,
        "rate": 0.5,
        "scope": None,
    }
    for outcome, value in (("shown", 5), ("accepted", 1), ("partly", 1), ("ignored", 2)):
        assert counted(ai_hub, "ann", outcome) == value, outcome
    records = ai_hub.audit.completions()
    assert [r.get("acceptance") for r in records] == [
        "accepted",
        "partly",
        "ignored",
        "ignored",
        None,
    ]
    assert records[1]["accepted_chars"] == len("price ")
    assert {r["source"] for r in records[:4]} == {"text"}
    assert len({r["id"] for r in records}) == 5


async def test_the_editor_says_it_accepted_through_the_items_command(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path, tmp_path: Path
) -> None:
    """VS Code runs an inline completion item's command when the user accepts it (Neovim
    0.12 too; Huddle's plugin from its accept key): the outcome is the editor's word."""
    backend.handler = streaming("price", " * ", "count")
    async with Editor(tmp_path, init_options=options(ai_hub, data_dir, "ann")) as ann:
        await ann.wait_status("connected")
        await opened(ann, ai_hub, "m.py", "total = \n")
        result = await ann.ask_inline("m.py", 8)
        assert isinstance(result, lsp.InlineCompletionList)
        command = result.items[0].command
        assert command is not None and command.command == Command.COMPLETION_ACCEPTED
        assert command.arguments is not None
        said = await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        )
        assert said == {"recorded": True}
        ann.type("m.py", 8, ANSWER)  # the editor's insertion: counted once
        again = await ann.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        )
        assert again == {"recorded": False}
        assert (await decided(ann, 1))["accepted"] == 1
    (record,) = ai_hub.audit.completions()
    assert (record["id"], record["acceptance"], record["source"]) == (
        command.arguments[0],
        "accepted",
        "editor",
    )


async def test_only_the_asker_reports_on_a_completion_and_only_once(
    ai_hub: Hub, backend: FakeBackend, data_dir: Path
) -> None:
    backend.handler = streaming("price", " * ", "count")
    ann = await connect(ai_hub, data_dir, "ann")
    bob = await connect(ai_hub, data_dir, "bob")
    try:
        await seeded(ann, "m.py", "total = \n")
        answer = await ann.request(HubMethod.COMPLETE, params(ann, "m.py", 8))
        assert answer["text"] == ANSWER and answer["id"]
        report = {"id": answer["id"], "outcome": "accepted", "accepted_chars": len(ANSWER)}
        theirs = await bob.request(HubMethod.COMPLETION_OUTCOME, report)
        assert theirs["recorded"] is False and theirs["acceptance"]["shown"] == 0
        mine = await ann.request(HubMethod.COMPLETION_OUTCOME, report)
        assert mine["recorded"] is True and mine["acceptance"]["accepted"] == 1
        again = await ann.request(HubMethod.COMPLETION_OUTCOME, report)
        assert again["recorded"] is False and again["acceptance"]["accepted"] == 1
    finally:
        for client in (ann, bob):
            await client.__aexit__(None, None, None)
    assert counted(ai_hub, "bob", "accepted") == 0


def test_line_scope_comes_on_after_first_lines_and_goes_with_hysteresis() -> None:
    """The rule, on the hub's own counter: ON first-line-only outcomes of the last WINDOW
    blocks switch line scope on; it goes only when OFF or fewer of them are left."""
    acc = Acceptance(HubMetrics(), label_budget=10)
    block = "x = 1\n    y = 2\n    return y"
    ids = iter(range(1000))

    def play(outcome: str, chars: int) -> str:
        scope = acc.choose("r", "u", "block")
        completion_id = f"c{next(ids)}"
        acc.shown("r", "u", completion_id, block if scope == "block" else "x = 1", scope)
        acc.outcome("r", "u", completion_id, outcome, chars)  # type: ignore[arg-type]
        return scope

    first_line = len("x = 1\n    ")
    assert [play("partly", first_line) for _ in range(acceptance.ON)] == ["block"] * 4
    assert acc.stats("r", "u").scope == "line"
    # Now lines, but every PROBE_EVERY-th is a block: accepting those whole brings it back.
    scopes = [play("accepted", len(block)) for _ in range(acceptance.PROBE_EVERY * 2)]
    assert scopes.count("block") == 2 and acc.stats("r", "u").scope == "line"
    scopes = [play("accepted", len(block)) for _ in range(acceptance.PROBE_EVERY * 2)]
    assert scopes.count("block") == 2 and acc.stats("r", "u").scope is None
    # Blocks again, and ignoring them is no reason for line scope.
    assert {play("ignored", 0) for _ in range(acceptance.WINDOW)} == {"block"}
    assert acc.stats("r", "u").scope is None
    # A line scope the cursor calls for anyway is left alone.
    assert acc.choose("r", "u", "line") == "line"


def test_metrics_labels_are_bounded() -> None:
    metrics = HubMetrics()
    acc = Acceptance(metrics, label_budget=2)
    for user in ("a", "b", "c", "d"):
        acc.shown("room", user, f"id-{user}", "x", "line")
    samples = {
        (s.labels["room"], s.labels["user"]): s.value
        for metric in metrics.registry.collect()
        if metric.name == "huddle_ai_completions"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert samples == {("room", "a"): 1, ("room", "b"): 1, ("_other", "_other"): 2}


# -- the adaptation, measured ------------------------------------------------------------------

ROUNDS = 14
SEED = 1717


def block_tasks() -> list[quality.Task]:
    """HumanEval multi-line tasks played on an empty indented line (``quality.indented``),
    whose canonical middle has at least three lines at the first one's indentation: the
    oracle's answer is then a block of two lines or more however the block rule cuts it."""
    chosen = []
    for task in quality.sample(quality.load("multi"), 400, SEED):
        task = quality.indented(task)
        lines = task.middle.split("\n")
        indent = len(task.prompt) - len(task.prompt.rstrip(" "))
        same = [ln for ln in lines[1:] if len(ln) - len(ln.lstrip(" ")) == indent and ln.strip()]
        if len(same) >= 2 and len(task.middle) < 120:
            chosen.append(task)
    return chosen[:ROUNDS]


async def play_first_lines(
    editor: Editor, tasks: list[quality.Task], start: int
) -> list[tuple[str, bool]]:
    """Each task's file opened, a completion asked in the hole; of a block only the first
    line accepted (then the user's own line), a single line accepted whole. What was shown,
    and whether it was a block, in order."""
    shown = []
    for number, task in enumerate(tasks, start):
        path = task.path
        editor.open(path, task.prompt + task.suffix)

        async def bound(path: str = path) -> bool:
            return path in ((await status(editor)).get("shared") or [])

        await eventually(bound, timeout=30, what=f"{path} shared")
        text = await editor.inline(path, len(task.prompt))
        assert text, f"no completion for {task.task_id}"
        block = "\n" in text.strip("\n")
        shown.append((text, block))
        at = len(task.prompt)
        if block:
            first = text.split("\n", 1)[0]
            editor.type(path, at, first)
            editor.type(path, at + len(first), "\n" + " " * 4 + "pass  # mine")
        else:
            editor.type(path, at, text)
        await editor.flush()
        await decided(editor, number)
        editor.close(path)
    return shown


@pytest.mark.timeout(180)
async def test_a_user_who_accepts_only_first_lines_gets_lines(
    data_dir: Path, tmp_path: Path
) -> None:
    tasks = block_tasks()
    assert len(tasks) == ROUNDS
    async with Oracle(t.oracle() for t in tasks) as oracle:
        backend = BackendConfig(url=oracle.url, model=ORACLE_MODEL, fim_template="qwen2.5-coder")
        async with local_hub(data_dir, llm=LlmConfig(backends=[backend])) as hub:
            init = options(hub, data_dir, "ann")
            async with Editor(tmp_path / "ann", init_options=init) as ann:
                await ann.wait_status("connected")
                shown = await play_first_lines(ann, tasks[:-1], 1)
                stats = (await status(ann))["acceptance"]
            # The user's own setting wins: asked with completion_scope = block, a block.
            explicit = {**init, "completion_scope": "block"}
            async with Editor(tmp_path / "ann-block", init_options=explicit) as own:
                await own.wait_status("connected")
                (last,) = await play_first_lines(own, tasks[-1:], stats["shown"] + 1)

    blocks = [block for _, block in shown]
    print("\nblocks shown, in order:", "".join("B" if b else "l" for b in blocks))
    assert blocks[: acceptance.ON] == [True] * acceptance.ON  # before: blocks
    after = blocks[acceptance.ON :]
    # after: lines, but for the probe every PROBE_EVERY-th (taken for its first line too)
    probes = [i for i, b in enumerate(after, 1) if b]
    assert probes == [acceptance.PROBE_EVERY], blocks
    assert stats["scope"] == "line"
    assert stats["partly"] == acceptance.ON + 1 and stats["accepted"] == len(after) - 1
    assert last[1], "an explicit block setting still gets blocks"
