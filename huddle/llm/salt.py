"""Per-room ``cache_salt``: vLLM only shares cached prefix blocks between requests with the
same salt, so a team shares its cache and no other team can probe it (a cache hit is
observable through latency)."""

from __future__ import annotations

import hashlib
import hmac

_LABEL = b"huddle/llm/cache-salt/v1\x00"


def room_cache_salt(secret: bytes, room: str) -> str:
    """HMAC-SHA256 of the room name under the hub's secret: stable for a room across restarts
    and replicas, unguessable without the secret."""
    if not secret:
        raise ValueError("the cache-salt secret is empty")
    return hmac.new(secret, _LABEL + room.encode("utf-8"), hashlib.sha256).hexdigest()
