"""Where ``huddle lsp`` connects. First match wins, field by field: LSP initializationOptions,
``HUDDLE_*`` environment variables, ``huddle.toml`` in the workspace root. No hub: solo mode."""

from __future__ import annotations

import getpass
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from huddle.lsp.errors import SettingsError

SETTINGS_FILE = "huddle.toml"
ENV = {
    "hub": "HUDDLE_HUB_URL",
    "token": "HUDDLE_TOKEN",
    "room": "HUDDLE_ROOM",
    "user": "HUDDLE_USER",
    "completion_scope": "HUDDLE_COMPLETION_SCOPE",
    "apply_edit_timeout_s": "HUDDLE_APPLY_EDIT_TIMEOUT_S",
    "edit_retry_backoff_s": "HUDDLE_EDIT_RETRY_BACKOFF_S",
}


class LspSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hub: str | None = Field(None, pattern=r"^wss?://")
    token: str | None = None
    room: str | None = Field(None, min_length=1, max_length=200)
    user: str | None = Field(None, min_length=1, max_length=64)
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    completion_scope: Literal["auto", "line", "block"] | None = Field(
        None, description="AI completions stop at the end of the line, the block, or auto"
    )
    apply_edit_timeout_s: float | None = Field(
        None, gt=0, le=600, description="how long to wait for the editor to answer an edit"
    )
    edit_retry_backoff_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="after the editor rejects an edit, how long to wait at most for its next "
        "change before sending again (doubled with each rejection in a row, up to 8 s)",
    )

    @property
    def solo(self) -> bool:
        return self.hub is None

    def __repr__(self) -> str:  # never print the token
        return f"LspSettings(hub={self.hub!r}, room={self.room!r}, user={self.user!r})"

    __str__ = __repr__


def _validated(source: str, values: dict[str, Any]) -> dict[str, Any]:
    try:
        return LspSettings.model_validate(values).model_dump(exclude_none=True)
    except ValidationError as exc:
        fields = ", ".join(
            ".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid Huddle settings in {source}: {fields}") from None


def resolve(
    init_options: object, root: Path | None, environ: dict[str, str] | None = None
) -> LspSettings:
    """Merge the three sources; a malformed source raises ``SettingsError`` naming the field."""
    environ = dict(os.environ) if environ is None else environ
    merged: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if init_options is not None:
        if not isinstance(init_options, dict):
            raise SettingsError("invalid Huddle settings in initializationOptions: not an object")
        layers.append(("initializationOptions", init_options))
    layers.append(("the environment", {k: environ[v] for k, v in ENV.items() if environ.get(v)}))
    if root is not None and (root / SETTINGS_FILE).is_file():
        try:
            data = tomllib.loads((root / SETTINGS_FILE).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"invalid {SETTINGS_FILE}: {exc}") from None
        layers.append((SETTINGS_FILE, data.get("huddle", data)))
    for source, values in layers:
        for key, value in _validated(source, values).items():
            merged.setdefault(key, value)
    merged.setdefault("user", getpass.getuser())
    if root is not None:
        merged.setdefault("room", root.name or "workspace")
    return LspSettings.model_validate(merged)
