"""Pieces every benchmark shares: target checks, formatting, machine facts, result files."""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import ROOT


@dataclass(frozen=True)
class Check:
    target: str
    met: bool
    detail: str


def targets_lines(checks: list[Check]) -> list[str]:
    """The markdown lines listing each target and the overall verdict."""
    lines = [f"- {'met' if c.met else '**not met**'}: {c.target} ({c.detail})" for c in checks]
    verdict = "yes" if checks and all(c.met for c in checks) else "no"
    return [*lines, "", f"**All targets met: {verdict}**", ""]


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def target_fields(checks: list[Check]) -> dict[str, Any]:
    """A result file's ``targets`` and ``all_targets_met``."""
    return {
        "targets": [asdict(c) for c in checks],
        "all_targets_met": bool(checks) and all(c.met for c in checks),
    }


def write_results(directory: Path, stem: str, report: dict[str, Any], text: str) -> None:
    """``<stem>.json`` (the report) and ``<stem>.md`` (its summary) in ``directory``."""
    write_atomic(directory / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    write_atomic(directory / f"{stem}.md", text)


def command_output(*argv: str) -> str:
    """A command's stdout (run in the repository), stripped; ``?`` where it cannot run or fails."""
    try:
        return subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
