"""Pieces every benchmark shares: target checks, formatting, machine facts, result files."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path


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
