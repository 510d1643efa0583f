"""Where ``huddle lsp`` connects. First match wins, field by field: LSP initializationOptions,
``HUDDLE_*`` environment variables, ``huddle.toml`` in the workspace root. No hub: solo mode.

``hub`` is one address or several (the nodes of a cluster, tried in turn): a list in
initializationOptions and ``huddle.toml``, comma-separated in ``HUDDLE_HUB_URL``."""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
HUB_ADDRESS = re.compile(r"wss?://[^\s,]+")


class LspSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hub: str | tuple[str, ...] | None = Field(
        None, description="the hub's address, or a list of them (a cluster's nodes)"
    )
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

    @field_validator("hub")
    @classmethod
    def _addresses(cls, hub: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if hub is None:
            return None
        addresses = tuple(a.strip() for a in ((hub,) if isinstance(hub, str) else hub))
        for address in addresses:
            if not HUB_ADDRESS.fullmatch(address):
                raise ValueError(
                    f"{address[:200]!r} is not one ws:// or wss:// address (several: a list)"
                )
        if not addresses:
            raise ValueError("an empty list (leave the setting out for solo mode)")
        return addresses[0] if isinstance(hub, str) else addresses

    @property
    def hubs(self) -> tuple[str, ...]:
        """Every address to try, in order; empty in solo mode."""
        return (self.hub,) if isinstance(self.hub, str) else self.hub or ()

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
    from_env: dict[str, Any] = {k: environ[v] for k, v in ENV.items() if environ.get(v)}
    if "," in from_env.get("hub", ""):
        from_env["hub"] = [a for a in from_env["hub"].split(",") if a.strip()]
    layers.append(("the environment", from_env))
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
