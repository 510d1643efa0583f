"""Which workspace files are never shared: outside the root, secrets, and `.huddleignore`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from huddle.collab.privacy import IGNORE_FILE, PathRules


class ShareRules:
    def __init__(self, root: Path, extra_patterns: list[str] | None = None) -> None:
        self.root = root.resolve()
        patterns = list(extra_patterns or [])
        ignore_file = self.root / IGNORE_FILE
        if ignore_file.is_file():
            patterns += ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
        # The hub's rules: built-in secrets win over any `.huddleignore` line (`!.env`).
        self._rules = PathRules(patterns)

    def relative(self, path: Path) -> str | None:
        """The workspace-relative POSIX path under which ``path`` is shared, or None if never."""
        try:
            rel = path.resolve().relative_to(self.root)
        except ValueError:
            return None  # outside the workspace root (symlinks resolved)
        posix = PurePosixPath(*rel.parts).as_posix()
        if posix in ("", ".") or self._rules.private(posix):
            return None
        return posix
