"""Room tokens: HS256 JWTs signed with a key the hub creates on first run.

Revocation is by key: ``huddle keys rotate`` (or deleting ``hub.key``) replaces the key, after
which every token signed with the old one is refused; a running hub notices the change on the
next admission or within ``HubConfig.key_check_seconds`` and closes the connections it admitted
with the old key. Names are checked where tokens are minted and again where they are verified:
a name reaches logs, the journal, prompts and other people's editors.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from huddle.server.errors import AuthError, CloseCode

log = logging.getLogger("huddle.auth")

KEY_FILE = "hub.key"
ISSUER = "huddle"
MAX_USER_NAME = 200
DELEGATE = "/"  # "ann/bob": bob, invited by ann (an invite names its minter)


class Role(StrEnum):
    EDIT = "edit"
    READ = "read"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user name, or None when it can.

    Letters, digits, punctuation and symbols of any script, and plain spaces inside. Control
    characters (a line break forges a log line), format characters (bidi overrides and
    zero-width characters disguise one name as another) and other separators are refused."""
    if not name:
        return "a user name cannot be empty"
    if len(name) > MAX_USER_NAME:
        return f"a user name has at most {MAX_USER_NAME} characters"
    if name != name.strip(" "):
        return "a user name cannot start or end with a space"
    for char in name:
        if char != " " and unicodedata.category(char)[0] in "CZ":
            return f"a user name cannot contain {char!r} (U+{ord(char):04X})"
    return None


class Grant(BaseModel):
    """What a verified token allows."""

    model_config = ConfigDict(frozen=True)

    room: str
    user: str
    role: Role
    expires_at: datetime
    invited_by: str | None = None  # the member whose invite minted it; None: `huddle invite`
    key_id: str = ""  # the signing key that verified it: rotating the key revokes the grant

    @field_validator("user", "invited_by")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        if name is not None and (problem := name_problem(name)) is not None:
            raise ValueError(problem)
        return name

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


def rotate_key(data_dir: Path) -> bytes:
    """Replace the signing key atomically: a reader sees the old key or the new one, whole."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    temp = data_dir / f".{KEY_FILE}.{secrets.token_hex(8)}"
    key = secrets.token_bytes(32)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return key


def _file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class TokenSigner:
    def __init__(self, key: bytes, data_dir: Path | None = None) -> None:
        self._key = key
        self._key_id = self.derive("key-id")[:8].hex()
        self._data_dir = data_dir
        self._identity: tuple[int, int, int, int] | None = None
        if data_dir is not None:
            self._identity = _file_identity((data_dir / KEY_FILE).stat())

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> TokenSigner:
        return cls(load_or_create_key(data_dir), data_dir)

    @property
    def key_id(self) -> str:
        """A public name for the current key (which key signed a grant; never the key)."""
        return self._key_id

    def refresh(self) -> bool:
        """Re-read the key file when it changed on disk (a stat: cheap enough for every
        admission); True when the key is now another one. A deleted file is replaced by a new
        key, as on first run: deleting ``hub.key`` revokes every token."""
        if self._data_dir is None:
            return False
        path = self._data_dir / KEY_FILE
        with contextlib.suppress(FileNotFoundError):
            if _file_identity(path.stat()) == self._identity:
                return False
        try:
            load_or_create_key(self._data_dir)  # a new key if the file was deleted
            with path.open("rb") as handle:  # the identity and the bytes of one file
                identity = _file_identity(os.fstat(handle.fileno()))
                key = handle.read()
        except (AuthError, OSError) as exc:  # keep serving with the key we have; say so
            log.error("cannot re-read the signing key %s: %s", path, exc)
            return False
        if len(key) < 32:
            log.error("signing key %s is corrupt: keeping the previous key", path)
            return False
        self._identity = identity
        if hmac.compare_digest(key, self._key):
            return False  # touched or copied over with the same key: nothing is revoked
        self._key = key
        self._key_id = self.derive("key-id")[:8].hex()
        return True

    def use_key(self, key: bytes) -> bool:
        """Take ``key`` (a cluster's, read from its database); True when it is another one."""
        if hmac.compare_digest(key, self._key):
            return False
        self._key = key
        self._key_id = self.derive("key-id")[:8].hex()
        return True

    def derive(self, purpose: str) -> bytes:
        """A secret for another purpose (e.g. cache salts), independent of the signing key."""
        return hmac.new(self._key, b"huddle/derive/" + purpose.encode(), hashlib.sha256).digest()

    def issue(
        self,
        room: str,
        user: str,
        role: Role,
        ttl: timedelta,
        *,
        not_after: datetime | None = None,
        by: str | None = None,
    ) -> str:
        """A token for ``user``; it expires after ``ttl`` or at ``not_after``, whichever is
        first. ``by`` names the member whose invite minted it."""
        for name in (user, by):
            if name is not None and (problem := name_problem(name)) is not None:
                raise ValueError(problem)
        now = datetime.now(UTC)
        expires = now + ttl if not_after is None else min(now + ttl, not_after)
        claims: dict[str, str | int] = {
            "iss": ISSUER,
            "jti": secrets.token_urlsafe(12),
            "room": room,
            "sub": user,
            "role": role.value,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),  # rounded down: never past ``not_after``
        }
        if by is not None:
            claims["by"] = by
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
                    "invited_by": claims.get("by"),
                    "key_id": self.key_id,
                }
            )
        except ValidationError:
            raise AuthError(CloseCode.UNAUTHORIZED, "token claims are malformed") from None
        if grant.room != room:
            raise AuthError(CloseCode.FORBIDDEN, "token is for another room")
        return grant
