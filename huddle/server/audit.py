"""The audit log: one JSON line per model request, in the hub's data directory.

It says who asked what of which model, and which files went into the prompt, so a team can
account for everything that left for a backend. Prompt and answer text are recorded only when
``LlmConfig.audit_content`` is set.

A completion's outcome (accepted, partly, ignored) comes later, from the editor: it is appended
as a record of its own (``kind: outcome``, the completion's ``id``), so the log stays append-only
and a completion is on record the moment it leaves; :meth:`AuditLog.completions` reads each
completion with its outcome."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("huddle.audit")

AUDIT_FILE = "audit.jsonl"


class AuditRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time: float
    room: str
    user: str
    kind: Literal["completion", "summary", "outcome"]
    outcome: Literal["ok", "cancelled", "failed"] = "ok"
    files: list[str] = []
    id: str | None = None  # a completion's id: its outcome record names it
    acceptance: Literal["accepted", "partly", "ignored"] | None = None
    accepted_chars: int | None = None
    source: Literal["text", "editor"] | None = None  # where the outcome was read
    backend: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False
    error: str | None = None
    prompt: str | None = None
    completion: str | None = None


class AuditLog:
    def __init__(self, data_dir: Path, *, include_content: bool = False) -> None:
        self.path = data_dir / AUDIT_FILE
        self.include_content = include_content
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> AuditRecord:
        """Append one record (a line is written whole: no torn records between writers)."""
        if not self.include_content:
            fields.pop("prompt", None)
            fields.pop("completion", None)
        entry = AuditRecord(time=time.time(), **fields)
        line = entry.model_dump_json(exclude_none=True) + "\n"
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(line)
        except OSError as exc:  # the request was served; losing its audit line is logged
            log.error("cannot write the audit log %s: %s", self.path, exc)
        return entry

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def completions(self) -> list[dict[str, Any]]:
        """The completion records, each with its outcome's fields (``acceptance``,
        ``accepted_chars``, ``source``) once one was recorded."""
        records = self.read()
        outcomes = {r["id"]: r for r in records if r["kind"] == "outcome" and "id" in r}
        merged = []
        for record in records:
            if record["kind"] != "completion":
                continue
            outcome = outcomes.get(record.get("id", ""))
            if outcome is not None:
                for key in ("acceptance", "accepted_chars", "source"):
                    if key in outcome:
                        record[key] = outcome[key]
            merged.append(record)
        return merged
