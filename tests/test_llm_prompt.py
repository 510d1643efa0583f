"""FIM templates (exact prompts and stop tokens per model family, recognition from the model
name) and the cache-friendly prompt layout with its token budget."""

from __future__ import annotations

import re

import pytest

from huddle.llm import (
    TEMPLATES,
    BackendConfig,
    CodeContext,
    ContextFile,
    LlmConfig,
    PromptBudget,
    approx_tokens,
    build_prompt,
    recognise,
    template_for,
)
from huddle.llm.fim import PLAIN, QWEN_CODER, STARCODER2

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
BIG = PromptBudget(tokens=100_000)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "qwen2.5-coder",
            "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>",
        ),
        (
            "starcoder2",
            "<fim_prefix>def add(a, b):\n    <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>",
        ),
        (
            "deepseek-coder",
            "<\uff5cfim\u2581begin\uff5c>def add(a, b):\n    "
            "<\uff5cfim\u2581hole\uff5c>\n\nprint(add(1, 2))\n<\uff5cfim\u2581end\uff5c>",
        ),
        ("codellama", "<PRE> def add(a, b):\n     <SUF>\n\nprint(add(1, 2))\n <MID>"),
        ("codestral", "[SUFFIX]\n\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n    "),
        ("plain", "def add(a, b):\n    "),
    ],
)
def test_file_level_prompt_per_family(name: str, expected: str) -> None:
    template = TEMPLATES[name]  # type: ignore[index]
    assert template.render(prefix=PREFIX, suffix=SUFFIX) == expected
    prompt = build_prompt(template, CodeContext(path="m.py", prefix=PREFIX, suffix=SUFFIX), BIG)
    # The indentation's last space is left for the model to write with its word (healing).
    assert prompt.text == template.render(prefix=PREFIX.removesuffix(" "), suffix=SUFFIX)
    assert prompt.template == name


# A sentinel: <...> (DeepSeek writes a full-width bar, U+FF5C, inside) or [UPPER].
SENTINEL = re.compile(r"<[^<>{}\s]+>|\[[A-Z]+\]")


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_the_model_stops_at_every_sentinel_its_prompt_is_written_with(name: str) -> None:
    """A completion must never run into the next FIM field or file: every sentinel the
    template writes (prefix, suffix, middle, file and repo markers) stops generation, and the
    stop strings reach the request as the template has them."""
    template = TEMPLATES[name]  # type: ignore[index]
    written = "".join(filter(None, (template.fim, template.repo, template.file, template.current)))
    sentinels = set(SENTINEL.findall(written))
    assert sentinels <= set(template.stop), sentinels - set(template.stop)
    if sentinels:  # an end-of-text marker too, beyond the sentinels it writes
        assert set(template.stop) - sentinels, f"{name} has no end-of-text stop"
    context = CodeContext(path="m.py", prefix=PREFIX, suffix=SUFFIX)
    assert build_prompt(template, context, BIG).stop == list(template.stop)


FILES = [
    ContextFile(path="src/util.py", text="def helper():\n    return 1\n"),
    ContextFile(path="README.md", text="# Demo"),  # no final newline: one is added
    ContextFile(path="m.py", text="stale copy of the current file"),  # never repeated
]


def test_qwen_repo_level_prompt() -> None:
    context = CodeContext(path="m.py", prefix=PREFIX, suffix=SUFFIX, files=FILES, repo_name="demo")
    assert build_prompt(QWEN_CODER, context, BIG).text == (
        "<|repo_name|>demo\n"
        "<|file_sep|>README.md\n# Demo\n"
        "<|file_sep|>src/util.py\ndef helper():\n    return 1\n"
        "<|file_sep|>m.py\n"
        "<|fim_prefix|>def add(a, b):\n   <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
    )


def test_starcoder2_repo_level_prompt() -> None:
    context = CodeContext(path="m.py", prefix=PREFIX, suffix=SUFFIX, files=FILES, repo_name="demo")
    prompt = build_prompt(STARCODER2, context, BIG)
    assert prompt.text == (
        "<repo_name>demo"
        "<file_sep>README.md\n# Demo\n"
        "<file_sep>src/util.py\ndef helper():\n    return 1\n"
        "<file_sep><fim_prefix>m.py\ndef add(a, b):\n   <fim_suffix>\n\nprint(add(1, 2))\n"
        "<fim_middle>"
    )
    assert prompt.context_paths == ["README.md", "src/util.py"]


def test_models_without_repo_tokens_get_only_the_current_file() -> None:
    context = CodeContext(path="m.py", prefix=PREFIX, suffix=SUFFIX, files=FILES, repo_name="demo")
    for name in ("deepseek-coder", "codellama", "codestral", "plain"):
        prompt = build_prompt(TEMPLATES[name], context, BIG)  # type: ignore[index]
        assert prompt.context_paths == [] and "helper" not in prompt.text


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("Qwen/Qwen2.5-Coder-7B", "qwen2.5-coder"),
        ("qwen2.5-coder-1.5b-instruct-q8_0.gguf", "qwen2.5-coder"),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen2.5-coder"),
        ("Qwen/Qwen2.5-7B-Instruct", "plain"),
        ("bigcode/starcoder2-15b", "starcoder2"),
        ("TechxGenus/starcoder2-7b-AWQ", "starcoder2"),
        ("deepseek-ai/deepseek-coder-6.7b-base", "deepseek-coder"),
        ("deepseek-ai/DeepSeek-Coder-V2-Lite-Base", "deepseek-coder"),
        ("deepseek-ai/DeepSeek-V3", "plain"),
        ("codellama/CodeLlama-7b-hf", "codellama"),
        ("TheBloke/CodeLlama-13B-AWQ", "codellama"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "plain"),
        ("meta-llama/Llama-3.1-8B", "plain"),
    ],
)
def test_template_recognised_from_model_name(model: str, name: str) -> None:
    assert recognise(model).name == name
    assert template_for("auto", model).name == name


def test_configured_template_overrides_recognition() -> None:
    backend = BackendConfig(url="http://h:8000", model="my-finetune", fim_template="starcoder2")
    assert template_for(backend.fim_template, backend.model) is STARCODER2
    assert template_for("auto", "my-finetune") is PLAIN


def test_backend_url_is_normalised_and_validated() -> None:
    assert BackendConfig(url="http://h:8000/v1/", model="m").url == "http://h:8000"
    with pytest.raises(ValueError, match="url"):
        BackendConfig(url="ftp://h", model="m")
    with pytest.raises(ValueError, match="listed twice"):
        LlmConfig(backends=[BackendConfig(url="http://h", model="m")] * 2)


# --- layout and budget ----------------------------------------------------------------------


def numbered(n: int, tag: str) -> str:
    return "".join(f"{tag} line {i:04d}\n" for i in range(n))  # 12 characters: 3 tokens a line


def test_context_files_are_cut_at_fixed_line_boundaries() -> None:
    budget = PromptBudget(tokens=2000, context_share=0.5, line_quantum=32)
    files = [
        ContextFile(path="b.py", text=numbered(1000, "b")),
        ContextFile(path="a.py", text="x = 1\n"),
    ]
    context = CodeContext(path="m.py", prefix="", files=files)
    prompt = build_prompt(QWEN_CODER, context, budget)
    assert prompt.context_paths == ["a.py", "b.py"]
    kept = prompt.text.split("<|file_sep|>b.py\n")[1].split("<|file_sep|>")[0]
    lines = kept.splitlines()
    assert len(lines) % 32 == 0 and 900 < approx_tokens(kept) <= 1000
    assert lines == numbered(len(lines), "b").splitlines()
    # Editing b.py below the cut does not move it.
    edited = [
        ContextFile(path="b.py", text=numbered(1000, "b") + "new\n"),
        ContextFile(path="a.py", text="x = 1\n"),
    ]
    again = build_prompt(QWEN_CODER, context.model_copy(update={"files": edited}), budget)
    assert again.text == prompt.text


def test_typing_keeps_the_prompt_start_stable() -> None:
    """Everything before the cursor's block stays byte-identical while a user types, so the
    prefix cache keeps serving the room's files and the top of the current file."""
    budget = PromptBudget(tokens=3000, line_quantum=32)
    files = [ContextFile(path=f"lib/{c}.py", text=numbered(200, c)) for c in "xyz"]
    body = numbered(2000, "m")
    prompts = []
    for typed in ("", "r", "re", "ret", "retu", "return"):
        context = CodeContext(path="m.py", prefix=body + typed, files=files, repo_name="r")
        prompt = build_prompt(QWEN_CODER, context, budget)
        assert prompt.estimated_tokens <= budget.tokens
        prompts.append(prompt.text)
    head = prompts[0].removesuffix("<|fim_suffix|><|fim_middle|>")
    for later in prompts[1:]:
        assert later.startswith(head)
    # The current file's start was cut at a multiple of 32 lines from the top of the file.
    current = head.split("<|file_sep|>m.py\n<|fim_prefix|>")[1]
    first = int(current.split(" line ")[1][:4])
    assert first % 32 == 0 and first > 0


def test_suffix_is_bounded_and_whole_lines() -> None:
    budget = PromptBudget(tokens=400, context_share=0.0, suffix_share=0.25)
    context = CodeContext(path="m.py", prefix="x = ", suffix="1\n" + numbered(500, "s"))
    prompt = build_prompt(QWEN_CODER, context, budget)
    suffix = prompt.text.split("<|fim_suffix|>")[1].removesuffix("<|fim_middle|>")
    assert suffix.startswith("1\ns line 0000\n") and suffix.endswith("\n")
    assert 0 < len(suffix) / 4 <= 100
    assert prompt.estimated_tokens <= 400


def test_plain_template_drops_the_suffix_and_keeps_the_cursor_end() -> None:
    budget = PromptBudget(tokens=200)
    context = CodeContext(path="m.py", prefix=numbered(500, "p") + "def f(", suffix="):\n")
    prompt = build_prompt(PLAIN, context, budget)
    assert prompt.text.endswith("p line 0499\ndef f(") and "):" not in prompt.text
    assert prompt.estimated_tokens <= 200


def test_a_single_huge_line_is_cut_by_characters() -> None:
    context = CodeContext(path="m.py", prefix="x" * 10_000)
    prompt = build_prompt(PLAIN, context, PromptBudget(tokens=100))
    assert prompt.text == "x" * 400


def test_a_real_tokenizer_can_replace_the_estimate() -> None:
    def words(text: str) -> int:
        return len(text.split())

    context = CodeContext(path="m.py", prefix="a b c d e f g h i j\n" * 10)
    prompt = build_prompt(PLAIN, context, PromptBudget(tokens=25, line_quantum=1), words)
    assert words(prompt.text) <= 25 and prompt.text.endswith("a b c d e f g h i j\n")
    assert prompt.text.count("\n") == 2


def test_prompt_budget_comes_from_config() -> None:
    config = LlmConfig(context_tokens=1234, line_quantum=8, context_share=0.3)
    assert PromptBudget.from_config(config) == PromptBudget(
        tokens=1234, context_share=0.3, suffix_share=0.25, line_quantum=8, max_context_files=16
    )
    assert PromptBudget.from_config(config, 99).tokens == 99


def test_shared_context_is_one_snapshot_for_the_whole_room_until_it_is_retaken() -> None:
    from huddle.llm import SharedContext

    live = {"a.py": "a = 1\n", "b.py": "b = 1\n", "c.py": "c = 1\n"}
    calls = 0

    def recent() -> list[tuple[str, str]]:
        nonlocal calls
        calls += 1
        return list(live.items())

    shared = SharedContext(refresh_s=15, max_files=2)
    ann = shared.files(0.0, "a.py", recent)
    assert [(f.path, f.text) for f in ann] == [("b.py", "b = 1\n"), ("c.py", "c = 1\n")]
    live["b.py"] = "b = 2\n"  # a teammate types in b.py
    bob = shared.files(10.0, "b.py", recent)
    assert [(f.path, f.text) for f in bob] == [("a.py", "a = 1\n"), ("c.py", "c = 1\n")]
    assert shared.files(14.9, "a.py", recent) == ann  # same bytes for everyone until refresh
    assert calls == 1
    assert [f.text for f in shared.files(15.0, "a.py", recent)] == ["b = 2\n", "c = 1\n"]
    assert calls == 2
