"""The hub's view of a room's awareness: who is here, and which connection owns which client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huddle.collab.wire import AwarenessEntry, encode_awareness


@dataclass(slots=True)
class _State:
    clock: int
    state: dict[str, Any] | None
    owner: object


class Presence:
    def __init__(self) -> None:
        self._clients: dict[int, _State] = {}

    def apply(
        self, owner: object, entries: list[AwarenessEntry], limit: int
    ) -> list[AwarenessEntry]:
        """Accept the entries that are newer than what the hub holds and that ``owner`` may set.

        A connection owns the client ids it introduced; it cannot overwrite or remove another
        connection's presence. Returns the accepted entries (to relay to the room).
        """
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            known = self._clients.get(entry.client_id)
            if known is None:
                if entry.state is None:
                    continue
                owned = sum(1 for s in self._clients.values() if s.owner is owner)
                if owned >= limit:
                    continue
            elif known.owner is not owner or not _newer(entry, known):
                continue
            if entry.state is None:
                self._clients.pop(entry.client_id, None)
            else:
                self._clients[entry.client_id] = _State(entry.clock, entry.state, owner)
            accepted.append(entry)
        return accepted

    def encode_all(self) -> bytes | None:
        entries = [AwarenessEntry(cid, s.clock, s.state) for cid, s in self._clients.items()]
        return encode_awareness(entries) if entries else None

    def drop(self, owner: object) -> bytes | None:
        """Forget ``owner``'s clients; returns the removal update to relay, if any."""
        gone = [cid for cid, s in self._clients.items() if s.owner is owner]
        removals = [AwarenessEntry(cid, self._clients.pop(cid).clock + 1, None) for cid in gone]
        return encode_awareness(removals) if removals else None


def _newer(entry: AwarenessEntry, known: _State) -> bool:
    """y-protocols' rule: a higher clock wins; at an equal clock only a removal of a live state."""
    if entry.clock != known.clock:
        return entry.clock > known.clock
    return entry.state is None and known.state is not None
