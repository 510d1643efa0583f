"""The hub's configuration: one nested model, every field defaulted and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huddle.llm.config import LlmConfig


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("huddle", appauthor=False))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_document_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_rooms: int = Field(1000, ge=1)
    max_connections_per_room: int = Field(200, ge=1)
    messages_per_second: float = Field(500.0, gt=0)
    message_burst: int = Field(2000, ge=1)
    max_send_buffer_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_pending_updates: int = Field(10_000, ge=1)
    max_awareness_clients: int = Field(64, ge=1)
    # huddle lsp's own state is about 300 bytes (a name, a color, a path, two cursors): the
    # byte limits leave room for long paths and names and for other Yjs clients' fields.
    max_awareness_state_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="longest awareness state (its JSON, plus about 20 bytes of ids); "
        "a longer one closes the connection (4413)",
    )
    max_awareness_connection_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="awareness bytes one connection may hold, all its clients together; "
        "more closes the connection (4413)",
    )
    max_awareness_room_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="awareness bytes a room holds (the size of a joiner's awareness frame); "
        "a state that would pass it is dropped",
    )
    max_awareness_depth: int = Field(
        32,
        ge=1,
        le=512,  # wire.MAX_JSON_DEPTH: what huddle lsp accepts, below Python's recursion limit
        description="deepest nesting of arrays and objects in an awareness state; "
        "deeper closes the connection (4400)",
    )
    max_requests_per_connection: int = Field(8, ge=1)
    # Yrs decodes values recursively (a 40,000-deep array crashed the hub) and str() of a
    # 20,000-deep chain of Y.Map overflows the stack: the room's files nest 1 deep.
    max_nesting_depth: int = Field(
        32,
        ge=2,
        le=1024,
        description="deepest nesting of shared types (counted across updates) and of values "
        "(arrays, objects) in the document; an update that goes deeper closes the "
        "connection (4400) and is not stored",
    )
    # A reader has one update to send per connection (its sync reply) and every one is
    # dropped; each costs a merge with the doc's delete set.
    reader_updates_per_second: float = Field(
        1.0, gt=0, description="updates a read-only connection may send, on average"
    )
    reader_update_burst: int = Field(
        16,
        ge=1,
        description="updates a read-only connection may send at once; past the "
        "rate they are dropped unread (nothing is stored from a reader anyway)",
    )


class StoreConfig(_Strict):
    compact_every: int = Field(1000, ge=1, description="stored updates between snapshots")
    durability: Literal["normal", "full"] = Field(
        "normal",
        description="normal survives a killed hub; full also survives power loss (fsync)",
    )
    history_days: float = Field(
        30.0, gt=0, description="how far back history (journal and history points) is kept"
    )
    history_every_s: float = Field(
        600.0, ge=0, description="fewest seconds between two history points (whole copies)"
    )
    max_batch: int = Field(512, ge=1, description="updates committed together at most")
    url: str | None = Field(
        None,
        description="postgresql://... : rooms live in PostgreSQL, and every hub started with "
        "the same URL serves them together (a cluster); unset: SQLite in the data directory",
        pattern=r"^postgres(ql)?://",
    )
    outage_seconds: float = Field(
        15.0,
        ge=0,
        description="how long commits wait for an unreachable database before their senders "
        "are closed (4504)",
    )


class HubConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    public_url: str | None = Field(None, description="ws(s)://host:port used in invite links")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    room_idle_seconds: float = Field(30.0, ge=0)
    ping_interval: float | None = Field(20.0, gt=0)
    key_check_seconds: float = Field(
        2.0,
        gt=0,
        description="how often a running hub looks for a rotated or deleted hub.key; then it "
        "closes (4401) the connections it admitted with the old key",
    )
    limits: Limits = Limits()
    store: StoreConfig = StoreConfig()
    llm: LlmConfig = Field(
        LlmConfig(), description="the AI gateway; no backends: the embedded model"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HubConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        return self

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"

    def url(self, port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.scheme}://{host}:{port if port is not None else self.port}"
