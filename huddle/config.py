"""The one configuration model. Sources, first match wins: CLI flags, ``HUDDLE_*`` environment
variables (nested with ``__``, e.g. ``HUDDLE_HUB__LIMITS__MAX_ROOMS=50``), defaults."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from huddle.server.config import HubConfig


class HuddleConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HUDDLE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    hub: HubConfig = HubConfig()
