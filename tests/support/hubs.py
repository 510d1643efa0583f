"""The one way tests build a hub: on 127.0.0.1, on a free port, over a data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huddle.server.config import HubConfig
from huddle.server.hub import Hub


def local_hub(data_dir: Path, **config: Any) -> Hub:
    """``async with local_hub(data_dir, llm=...) as hub:``; ``config``: other HubConfig fields."""
    return Hub(HubConfig(host="127.0.0.1", port=0, data_dir=data_dir, **config))
