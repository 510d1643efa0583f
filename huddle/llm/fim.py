"""Fill-in-the-middle templates, built client-side because vLLM's ``/v1/completions`` rejects
``suffix``. Each template knows its sentinel tokens and stop strings; models with repo-level
tokens (Qwen2.5-Coder, StarCoder2) also get the room's other files in front of the current one.

The BOS token is not written: vLLM and llama.cpp add it when they tokenize the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from huddle.llm.config import TemplateName


@dataclass(frozen=True, slots=True)
class FimTemplate:
    name: TemplateName
    fim: str | None
    """``{prefix}`` and ``{suffix}`` placeholders; ``None`` completes the plain prefix."""
    stop: tuple[str, ...] = ()
    repo: str | None = None
    """Repository header, ``{repo}`` placeholder (models with repo-level tokens)."""
    file: str | None = None
    """One context file, ``{path}`` and ``{text}`` placeholders."""
    current: str | None = None
    """The current file in the repo layout: ``{path}``, ``{prefix}``, ``{suffix}``."""

    @property
    def has_repo_tokens(self) -> bool:
        return self.file is not None and self.current is not None

    def uses_repo_layout(self, repo: str, files: Sequence[tuple[str, str]]) -> bool:
        return self.has_repo_tokens and bool(repo or files)

    def render(
        self,
        *,
        prefix: str,
        suffix: str = "",
        path: str = "",
        repo: str = "",
        files: Sequence[tuple[str, str]] = (),
    ) -> str:
        """The prompt text. ``files`` are (path, text) pairs, already in their final order."""
        if self.uses_repo_layout(repo, files):
            assert self.file is not None and self.current is not None
            head = self.repo.format(repo=repo) if repo and self.repo is not None else ""
            body = "".join(self.file_entry(p, text) for p, text in files)
            return head + body + self.current.format(path=path, prefix=prefix, suffix=suffix)
        if self.fim is None:
            return prefix
        return self.fim.format(prefix=prefix, suffix=suffix)

    def file_entry(self, path: str, text: str) -> str:
        if self.file is None:
            return ""
        if text and not text.endswith("\n"):
            text += "\n"
        return self.file.format(path=path, text=text)


QWEN_CODER = FimTemplate(
    name="qwen2.5-coder",
    fim="<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    stop=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_start|>",
        "<|im_end|>",
    ),
    repo="<|repo_name|>{repo}\n",
    file="<|file_sep|>{path}\n{text}",
    current="<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
)

# StarCoder2 was trained on repo-level FIM: the path goes inside the FIM prefix.
STARCODER2 = FimTemplate(
    name="starcoder2",
    fim="<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    stop=(
        "<|endoftext|>",
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        "<fim_pad>",
        "<file_sep>",
        "<repo_name>",
    ),
    repo="<repo_name>{repo}",
    file="<file_sep>{path}\n{text}",
    current="<file_sep><fim_prefix>{path}\n{prefix}<fim_suffix>{suffix}<fim_middle>",
)

DEEPSEEK_CODER = FimTemplate(
    name="deepseek-coder",
    fim="<\uff5cfim\u2581begin\uff5c>{prefix}<\uff5cfim\u2581hole\uff5c>{suffix}<\uff5cfim\u2581end\uff5c>",
    stop=(
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "<\uff5cfim\u2581begin\uff5c>",
        "<\uff5cfim\u2581hole\uff5c>",
        "<\uff5cfim\u2581end\uff5c>",
        "<|EOT|>",
    ),
)

CODELLAMA = FimTemplate(
    name="codellama",
    fim="<PRE> {prefix} <SUF>{suffix} <MID>",
    stop=("<EOT>", "</s>", "<PRE>", "<SUF>", "<MID>"),
)

# Mistral's FIM order (mistral-common encode_fim): suffix first, then prefix.
CODESTRAL = FimTemplate(
    name="codestral",
    fim="[SUFFIX]{suffix}[PREFIX]{prefix}",
    stop=("</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"),
)

PLAIN = FimTemplate(name="plain", fim=None)

TEMPLATES: dict[TemplateName, FimTemplate] = {
    t.name: t for t in (QWEN_CODER, STARCODER2, DEEPSEEK_CODER, CODELLAMA, CODESTRAL, PLAIN)
}


def recognise(model: str) -> FimTemplate:
    """The template for a model name such as ``Qwen/Qwen2.5-Coder-7B`` or a GGUF file name;
    ``PLAIN`` for models without FIM tokens."""
    name = model.lower().replace("_", "-")
    if "codestral" in name:
        return CODESTRAL
    if "starcoder" in name:
        return STARCODER2
    if "deepseek" in name and "coder" in name:
        return DEEPSEEK_CODER
    if "codellama" in name or "code-llama" in name:
        return CODELLAMA
    if "qwen" in name and "coder" in name and "codeqwen" not in name:
        return QWEN_CODER
    return PLAIN


def template_for(setting: TemplateName | Literal["auto"], model: str) -> FimTemplate:
    """The configured template, or the recognised one when the setting is ``auto``."""
    if setting == "auto":
        return recognise(model)
    return TEMPLATES[setting]
