"""Paths that teammates report (presence's ``file``) checked before they become local URIs.

A teammate's presence is theirs to write: ``"../../../../root/.bashrc"`` or ``"/etc/passwd"``
must never make ``huddle lsp`` ask the editor to open a file outside the shared workspace.
"""

from __future__ import annotations

import re

MAX_PATH_CHARS = 4096  # PATH_MAX: no file of a workspace has a longer path
# A control character (NUL among them) or a backslash: never in a room path, which is POSIX
# (Windows separators or escapes could climb out of the root on another editor's side).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_DRIVE = re.compile(r"^[A-Za-z]:")  # C:foo, C:/foo: a drive, not a relative path


def room_path(value: object) -> str | None:
    """``value`` if it is a workspace-relative POSIX path in the room's form (``src/a.py``),
    else None: no absolute path, no ``.`` or ``..`` segment, no empty segment, no backslash,
    no drive letter, no control character. Lexical only; the caller still checks that the
    path, symlinks resolved, stays inside the workspace root."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS:
        return None
    if value.startswith("/") or _FORBIDDEN.search(value) or _DRIVE.match(value):
        return None
    if any(part in ("", ".", "..") for part in value.split("/")):
        return None
    return value
