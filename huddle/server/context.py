"""What a hub request handler is given: the room the request came in on, the caller's grant and
the store. Handlers get only this, not the hub, so ``ai`` and ``summaries`` need nothing from
``hub`` (which builds them) and can be tested with a room and a store alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from huddle.server.auth import Grant

if TYPE_CHECKING:
    from huddle.server.room import Room
    from huddle.server.store import Store


@dataclass(frozen=True, slots=True)
class RoomContext:
    room: Room
    grant: Grant
    store: Store
