"""The hub's view of a room's awareness: who is here, and which connection owns which client.

Each state is held as its encoded entry (what goes on the wire), so the bytes a room's presence
holds are counted exactly and a joiner's frame is a join of them, never a re-encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from huddle.collab import wire
from huddle.collab.wire import AwarenessEntry
from huddle.server.config import Limits
from huddle.server.errors import CloseCode, ConnectionRejected

log = logging.getLogger("huddle.presence")


@dataclass(slots=True)
class _State:
    clock: int
    owner: object
    encoded: bytes  # the entry as encoded on the wire; len() is what it costs
    json_at: int = field(init=False)  # where the state's JSON starts in ``encoded``

    def __post_init__(self) -> None:
        self.json_at = wire.state_json_at(self.encoded)


@dataclass(slots=True)
class _Owner:
    clients: int = 0
    size: int = 0


class Presence:
    """Awareness states by client id, bounded in count per connection and in bytes per state,
    per connection and per room (``Limits.max_awareness_*``). A state's bytes are its encoded
    entry: the state's JSON plus its client id, clock and length prefix (at most 20 bytes)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._clients: dict[int, _State] = {}
        self._owners: dict[object, _Owner] = {}
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """What the room's presence holds: the length of a joiner's awareness update."""
        return self._bytes

    def held(self, client_id: int, clock: int, state_json: bytes) -> bool:
        """Whether the hub holds ``client_id``'s state at ``clock`` as exactly ``state_json``:
        an entry that changes nothing (``wire.decode_awareness`` leaves it out unparsed)."""
        known = self._clients.get(client_id)
        return (
            known is not None
            and known.clock == clock
            and len(known.encoded) - known.json_at == len(state_json)
            and known.encoded.endswith(state_json)
        )

    def apply(self, owner: object, user: str, entries: list[AwarenessEntry]) -> bytes | None:
        """Accept the entries that are newer than what the hub holds and that ``owner`` may set;
        returns the awareness update to relay to the room, if any.

        A connection owns the client ids it introduced; it cannot overwrite or remove another
        connection's presence. Each state is published under ``user`` (the token's user), in
        ``state["user"]["name"]``, whatever name the client wrote there: presence cannot be
        forged. A state over the per-state or per-connection byte limit closes the connection
        (``TOO_LARGE``: only a broken or hostile client sends one); one that would take the room
        over its limit is dropped and the connection kept, as its sender may not be the cause.
        """
        limits = self._limits
        accepted: list[bytes] = []
        for entry in entries:
            known = self._clients.get(entry.client_id)
            if known is not None and (known.owner is not owner or not _newer(entry, known)):
                continue
            if entry.state is None:
                accepted += self._removed(entry, known)
                continue
            mine = self._owners.get(owner) or _Owner()
            if known is None and mine.clients >= limits.max_awareness_clients:
                continue
            stamped = AwarenessEntry(entry.client_id, entry.clock, _stamped(entry.state, user))
            try:
                encoded = wire.encode_awareness_entry(stamped)
            except wire.WireError as exc:  # the token's user name itself cannot be encoded
                log.warning("dropped the presence of %r: %s", user, exc)
                continue
            size, before = len(encoded), len(known.encoded) if known is not None else 0
            if size > limits.max_awareness_state_bytes:
                raise ConnectionRejected(
                    CloseCode.TOO_LARGE,
                    f"awareness state of {size} bytes (limit {limits.max_awareness_state_bytes})",
                )
            if mine.size - before + size > limits.max_awareness_connection_bytes:
                raise ConnectionRejected(
                    CloseCode.TOO_LARGE,
                    f"awareness states of {mine.size - before + size} bytes on one connection"
                    f" (limit {limits.max_awareness_connection_bytes})",
                )
            if self._bytes - before + size > limits.max_awareness_room_bytes:
                log.warning(
                    "dropped a presence update of %r: the room's presence is at its limit of %d"
                    " bytes",
                    user,
                    limits.max_awareness_room_bytes,
                )
                continue
            if known is not None:
                self._forget(entry.client_id)
            self._hold(entry.client_id, _State(entry.clock, owner, encoded))
            accepted.append(encoded)
        return wire.join_awareness(accepted) if accepted else None

    def _forget(self, client_id: int) -> _State:
        state = self._clients.pop(client_id)
        mine = self._owners[state.owner]
        mine.clients -= 1
        mine.size -= len(state.encoded)
        self._bytes -= len(state.encoded)
        if mine.clients == 0:
            del self._owners[state.owner]
        return state

    def encode_all(self, owned: Callable[[object], bool] | None = None) -> bytes | None:
        """Every state (or those whose owner is ``owned``) as one awareness update:
        ``size_bytes`` long plus its count (a varuint)."""
        encoded = [s.encoded for s in self._clients.values() if owned is None or owned(s.owner)]
        return wire.join_awareness(encoded) if encoded else None

    def apply_remote(
        self, owner: object, entries: list[AwarenessEntry], *, local: Callable[[object], bool]
    ) -> bytes | None:
        """Entries another node's peers set (``owner`` stands for that node). That node stamped
        the names and applied the per-connection limits; here the clock rule and the room's byte
        limit hold, and a state owned by one of this node's own connections is never touched
        (a client that moved here from that node owns its id here now)."""
        accepted: list[bytes] = []
        for entry in entries:
            known = self._clients.get(entry.client_id)
            if known is not None and (local(known.owner) or not _newer(entry, known)):
                continue
            if entry.state is None:
                accepted += self._removed(entry, known)
                continue
            encoded = wire.encode_awareness_entry(entry)
            before = len(known.encoded) if known is not None else 0
            if self._bytes - before + len(encoded) > self._limits.max_awareness_room_bytes:
                continue
            if known is not None:
                self._forget(entry.client_id)
            self._hold(entry.client_id, _State(entry.clock, owner, encoded))
            accepted.append(encoded)
        return wire.join_awareness(accepted) if accepted else None

    def _removed(self, entry: AwarenessEntry, known: _State | None) -> list[bytes]:
        """Forget a state its client removed; the entry to relay (none if it was not here)."""
        if known is None:
            return []
        self._forget(entry.client_id)
        return [wire.encode_awareness_entry(entry)]

    def _hold(self, client_id: int, state: _State) -> None:
        self._clients[client_id] = state
        mine = self._owners.setdefault(state.owner, _Owner())
        mine.clients += 1
        mine.size += len(state.encoded)
        self._bytes += len(state.encoded)

    def drop(self, owner: object) -> bytes | None:
        """Forget ``owner``'s clients; returns the removal update to relay, if any."""
        gone = [cid for cid, s in self._clients.items() if s.owner is owner]
        removals = [AwarenessEntry(cid, self._forget(cid).clock + 1, None) for cid in gone]
        return wire.encode_awareness(removals) if removals else None


def _stamped(state: dict[str, Any], user: str) -> dict[str, Any]:
    """``state`` with ``user.name`` set to ``user``; the other fields of ``user`` (a color) kept."""
    claimed = state.get("user")
    fields = dict(claimed) if isinstance(claimed, dict) else {}
    fields["name"] = user
    return {**state, "user": fields}


def _newer(entry: AwarenessEntry, known: _State) -> bool:
    """y-protocols' rule: a higher clock wins; at an equal clock only a removal of a live state."""
    if entry.clock != known.clock:
        return entry.clock > known.clock
    return entry.state is None
