"""LLM gateway: streaming client for OpenAI-compatible backends (vLLM, llama.cpp), FIM
templates and cache-friendly prompts, per-room cache salts, replica routing with failover,
and the embedded llama.cpp default. Imports nothing else from ``huddle``."""

from huddle.llm.client import BackendClient, CompletionStream
from huddle.llm.config import BackendConfig, EmbeddedConfig, LlmConfig, LlmTimeouts, TemplateName
from huddle.llm.embedded import EmbeddedEngine, smollm2_gguf
from huddle.llm.errors import (
    BackendError,
    BackendHTTPError,
    BackendOverloaded,
    BackendProtocolError,
    BackendStreamError,
    BackendTimeout,
    BackendUnavailable,
    EmbeddedEngineError,
    LlmError,
    NoBackendAvailable,
)
from huddle.llm.fim import TEMPLATES, FimTemplate, recognise, template_for
from huddle.llm.gateway import LlmGateway, Purpose
from huddle.llm.prompt import (
    CodeContext,
    ContextFile,
    Prompt,
    PromptBudget,
    SharedContext,
    approx_tokens,
    build_prompt,
)
from huddle.llm.protocol import (
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    Usage,
)
from huddle.llm.router import Router
from huddle.llm.salt import room_cache_salt

__all__ = [
    "TEMPLATES",
    "BackendClient",
    "BackendConfig",
    "BackendError",
    "BackendHTTPError",
    "BackendOverloaded",
    "BackendProtocolError",
    "BackendStreamError",
    "BackendTimeout",
    "BackendUnavailable",
    "CodeContext",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionRequest",
    "CompletionStream",
    "ContextFile",
    "EmbeddedConfig",
    "EmbeddedEngine",
    "EmbeddedEngineError",
    "FimTemplate",
    "LlmConfig",
    "LlmError",
    "LlmGateway",
    "LlmTimeouts",
    "NoBackendAvailable",
    "Prompt",
    "PromptBudget",
    "Purpose",
    "Router",
    "SharedContext",
    "TemplateName",
    "Usage",
    "approx_tokens",
    "build_prompt",
    "recognise",
    "room_cache_salt",
    "smollm2_gguf",
    "template_for",
]
