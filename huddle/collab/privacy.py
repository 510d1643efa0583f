"""Paths that must never leave an editor or reach a model: secrets, machine-local state, and
whatever a workspace's `.huddleignore` lists (gitignore syntax)."""

from __future__ import annotations

from collections.abc import Iterable

from pathspec import GitIgnoreSpec

IGNORE_FILE = ".huddleignore"

# Secrets and machine-local state (gitignore syntax).
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


class PathRules:
    """``private(path)``: True for a workspace-relative POSIX path that must stay private."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self._spec = GitIgnoreSpec.from_lines([*DEFAULT_PATTERNS, *extra_patterns])

    @classmethod
    def from_ignore_file(cls, text: str | None) -> PathRules:
        return cls(text.splitlines() if text else ())

    def private(self, path: str) -> bool:
        return bool(self._spec.match_file(path))
