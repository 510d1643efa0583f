"""Typed messages of the OpenAI-compatible ``/v1/completions`` API as vLLM and llama.cpp's
server speak it. Requests are strict; responses ignore fields we do not use (llama.cpp adds
``timings``, vLLM ``stop_reason``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include_usage: bool = True


class CompletionRequest(BaseModel):
    """Body of ``POST /v1/completions``. ``None`` fields are not sent: vLLM rejects
    ``priority`` unless started with ``--scheduling-policy priority``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    prompt: str
    max_tokens: int = Field(ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    stream: bool = True
    stream_options: StreamOptions = StreamOptions()
    cache_salt: str | None = None
    priority: int | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PromptTokensDetails(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    cached_tokens: int | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int | None:
        details = self.prompt_tokens_details
        return details.cached_tokens if details is not None else None


class CompletionChoice(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int = 0
    text: str = ""
    finish_reason: str | None = None


class CompletionChunk(BaseModel):
    """One ``data:`` event of the stream. vLLM ends with a usage-only chunk (empty
    ``choices``) when ``stream_options.include_usage`` is set; llama.cpp puts ``usage`` on the
    finish chunk and may send an empty first chunk."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = Field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(choice.text for choice in self.choices)

    @property
    def finish_reason(self) -> str | None:
        for choice in self.choices:
            if choice.finish_reason is not None:
                return choice.finish_reason
        return None


class Completion(BaseModel):
    """A whole stream, collected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    finish_reason: str | None
    usage: Usage | None
    model: str
    backend_url: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    message: str = ""
    type: str | None = None
    code: int | str | None = None


class ErrorResponse(BaseModel):
    """Error bodies: ``{"error": {...}}`` (OpenAI, newer vLLM, llama.cpp) or the flat
    ``{"object": "error", "message": ...}`` of older vLLM."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    error: ErrorDetail | str | None = None
    object: str | None = None
    message: str | None = None
    type: str | None = None
    code: int | str | None = None

    @property
    def detail(self) -> ErrorDetail:
        if isinstance(self.error, ErrorDetail):
            return self.error
        if isinstance(self.error, str):
            return ErrorDetail(message=self.error, type=self.type, code=self.code)
        return ErrorDetail(message=self.message or "", type=self.type, code=self.code)


def is_error_payload(raw: object) -> bool:
    """An error object where a chunk was expected (vLLM and llama.cpp mid-stream errors)."""
    return isinstance(raw, dict) and ("error" in raw or raw.get("object") == "error")


class TokenizeResponse(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tokens: list[int]


class LlamaCppTokenizeRequest(BaseModel):
    """Body of llama.cpp's ``POST /tokenize``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str
    add_special: bool = False


class VllmTokenizeRequest(BaseModel):
    """Body of vLLM's ``POST /tokenize``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    prompt: str
    add_special_tokens: bool = False
