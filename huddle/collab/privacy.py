"""Paths that must never leave an editor or reach a model: secrets, machine-local state, and
whatever a workspace's `.huddleignore` lists (gitignore syntax).

The built-in secret patterns are a floor, not a default: a `.huddleignore` can make more files
private, never fewer (its `!.env` re-includes nothing the built-in patterns hold). They match
the path as a filesystem would resolve it, whatever the spelling a client chose for the room's
key: any case (`.ENV`), a trailing space or dot (`.env `, `.env.`, which Windows drops), a
backslash as the separator (`config\\.env`), `./` or empty segments, invisible characters,
and compatibility forms such as full-width letters (NFKC).

What this cannot do: the hub relays the room's CRDT document as a whole, so a file that a plain
Yjs client put in the room reaches every member. These rules keep such files out of what
Huddle itself sends (``huddle lsp`` never shares them; the hub never puts them in a prompt, a
summary or the audit log's content); they are not a filter on the document.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from pathspec import GitIgnoreSpec

IGNORE_FILE = ".huddleignore"

# Secrets and machine-local state (gitignore syntax, lowercase: matched against normalised
# paths).
DEFAULT_PATTERNS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.kdbx",
    "id_*",
    ".ssh/",
    ".gnupg/",
    ".aws/",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git/",
    "huddle.toml",
)

_SECRETS = GitIgnoreSpec.from_lines(DEFAULT_PATTERNS)
_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp"))  # controls, zero-width and format characters


def normalise(path: str) -> str:
    """``path`` as a filesystem could resolve it, for matching only: NFKC, case-folded,
    invisible characters removed, ``\\`` as ``/``, and each segment stripped of surrounding
    whitespace and trailing dots (Windows drops them); empty, ``.`` and ``..`` segments
    dropped. Two spellings of one file normalise alike; different files may too, which only
    makes more of them private."""
    text = unicodedata.normalize("NFKC", path).casefold()
    if not text.isascii() or not text.isprintable():
        text = "".join(c for c in text if unicodedata.category(c) not in _INVISIBLE)
    segments = (segment.strip().rstrip(". \t") for segment in text.replace("\\", "/").split("/"))
    return "/".join(s for s in segments if s)


def is_secret(path: str) -> bool:
    """True if a built-in secret pattern matches ``path`` in any spelling; no room rule can
    change that."""
    normal = normalise(path)
    return bool(normal) and bool(_SECRETS.match_file(normal))


class PathRules:
    """``private(path)``: True for a workspace-relative POSIX path that must stay private:
    a built-in secret (in any spelling), or one that the room's own rules list."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        # Kept apart from the built-in patterns: in one gitignore spec a room's `!.env` would
        # re-include what the built-in `.env` excluded.
        self._room = GitIgnoreSpec.from_lines(extra_patterns)

    @classmethod
    def from_ignore_file(cls, text: str | None) -> PathRules:
        return cls(text.splitlines() if text else ())

    def private(self, path: str) -> bool:
        if is_secret(path):
            return True
        # The room's rules match the path as written and as normalised: either makes it
        # private, so an odd spelling cannot slip past a rule (`Private/x` under `private/`).
        return bool(self._room.match_file(path)) or bool(self._room.match_file(normalise(path)))
