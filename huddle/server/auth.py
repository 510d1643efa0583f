"""Room tokens: HS256 JWTs signed with a key the hub creates on first run."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from huddle.server.errors import AuthError, CloseCode

KEY_FILE = "hub.key"
ISSUER = "huddle"


class Role(StrEnum):
    EDIT = "edit"
    READ = "read"


class Grant(BaseModel):
    """What a verified token allows."""

    model_config = ConfigDict(frozen=True)

    room: str
    user: str
    role: Role
    expires_at: datetime

    @property
    def can_edit(self) -> bool:
        return self.role is Role.EDIT


def load_or_create_key(data_dir: Path) -> bytes:
    """The signing key, created with mode 0600 on first use (atomically, race-free)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise AuthError(CloseCode.SERVER_BUSY, f"signing key {path} is corrupt") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> TokenSigner:
        return cls(load_or_create_key(data_dir))

    def derive(self, purpose: str) -> bytes:
        """A secret for another purpose (e.g. cache salts), independent of the signing key."""
        return hmac.new(self._key, b"huddle/derive/" + purpose.encode(), hashlib.sha256).digest()

    def issue(self, room: str, user: str, role: Role, ttl: timedelta) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "room": room,
            "sub": user,
            "role": role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str | None, room: str) -> Grant:
        if not token:
            raise AuthError(CloseCode.UNAUTHORIZED, "missing token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(CloseCode.UNAUTHORIZED, "token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError(CloseCode.UNAUTHORIZED, "token signature is invalid") from None
        except jwt.InvalidTokenError:
            raise AuthError(CloseCode.UNAUTHORIZED, "token is malformed") from None
        try:
            grant = Grant.model_validate(
                {
                    "room": claims.get("room"),
                    "user": claims.get("sub"),
                    "role": claims.get("role"),
                    "expires_at": datetime.fromtimestamp(claims["exp"], UTC),
                }
            )
        except ValidationError:
            raise AuthError(CloseCode.UNAUTHORIZED, "token claims are malformed") from None
        if grant.room != room:
            raise AuthError(CloseCode.FORBIDDEN, "token is for another room")
        return grant
