"""Errors of the hub, and the websocket close codes they map to at the edge."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Private-range close codes. 44xx: retrying cannot help (y-websocket stops reconnecting on
    4400-4499); 45xx: transient, reconnect with backoff. The last two digits echo HTTP."""

    BAD_MESSAGE = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TOO_LARGE = 4413
    SLOW_CONSUMER = 4508
    RATE_LIMITED = 4529
    SERVER_BUSY = 4503
    STORE_UNAVAILABLE = 4504  # the database was unreachable for too long: nothing was relayed

    @property
    def permanent(self) -> bool:
        return 4400 <= self.value < 4500


class ServerError(Exception):
    """Base of every error raised by ``huddle.server``."""


class ConnectionRejected(ServerError):
    """A connection must be closed; ``code`` and ``reason`` go to the client."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{code.name}: {reason}")
        self.code = code
        self.reason = reason


class AuthError(ConnectionRejected):
    """A token that does not grant access to the room."""


class StoreError(ServerError):
    """The persistent store failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (a restart, a network cut): worth retrying."""
