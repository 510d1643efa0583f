"""The one exception base of ``huddle.llm`` and its family. The hub maps these to protocol
codes at its edge; nothing here knows about the hub."""

from __future__ import annotations

from typing import Literal


class LlmError(Exception):
    """Base of every error raised by ``huddle.llm``."""


class BackendError(LlmError):
    """Something went wrong talking to one backend (``url`` names it)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.message = message


class BackendUnavailable(BackendError):
    """The backend cannot take the request now (refused, unreachable, 502/503/504).
    Nothing was generated, so the router may try another replica."""


class BackendHTTPError(BackendError):
    """The backend answered with a non-2xx status; ``message`` is the body's message."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(url, f"HTTP {status}: {message}")
        self.status = status
        self.detail = message


class BackendOverloaded(BackendHTTPError, BackendUnavailable):
    """HTTP 502, 503 or 504: the backend is up but cannot serve (loading, overloaded)."""


class BackendStreamError(BackendError):
    """The backend reported an error in the middle of a stream."""

    def __init__(self, url: str, message: str, code: int | str | None = None) -> None:
        super().__init__(url, f"error in stream: {message}")
        self.detail = message
        self.code = code


class BackendTimeout(BackendError):
    """No first token, or no next chunk, within the configured time."""

    def __init__(
        self, url: str, phase: Literal["first_token", "between_chunks"], seconds: float
    ) -> None:
        what = "first token" if phase == "first_token" else "next chunk"
        super().__init__(url, f"no {what} within {seconds:g}s")
        self.phase = phase
        self.seconds = seconds


class BackendProtocolError(BackendError):
    """The backend broke the streaming protocol (bad JSON, oversized event, no ``[DONE]``)."""


class NoBackendAvailable(LlmError):
    """Every configured backend is marked down or failed to connect."""


class EmbeddedEngineError(LlmError):
    """The embedded llama.cpp server could not be started (wheel or model missing, bad model)."""
