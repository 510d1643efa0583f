"""Pieces every benchmark shares: target checks, formatting, machine facts, result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
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


def package_version(package_dir: Path) -> str:
    """The version in a Node package's ``package.json``; ``?`` where it cannot be read."""
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "?"


def run_facts() -> dict[str, Any]:
    """When, at which commit and on which cores a benchmark ran: its environment's head."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": command_output("git", "describe", "--always", "--dirty", "--abbrev=12"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
    }


def huddle_env() -> dict[str, str]:
    """The ``HUDDLE_*`` settings the hub ran under: they change what is measured."""
    return {k: v for k, v in os.environ.items() if k.startswith("HUDDLE_")}


BACKGROUND_WARN_PERCENT = 10.0


def background_warning(busy_percents: list[float]) -> list[str]:
    """The report's warning where other work kept the machine busy before some cases."""
    busy = [p for p in busy_percents if p > BACKGROUND_WARN_PERCENT]
    if not busy:
        return []
    return [
        f"**Warning**: other work kept the machine up to {max(busy):.0f} % busy before "
        f"{len(busy)} of the cases; rerun on a quiet machine.",
        "",
    ]


def number_list(minimum: int, what: str = "numbers") -> Callable[[str], tuple[int, ...]]:
    """An argparse type: comma-separated whole numbers, each at least ``minimum``."""

    def ints(text: str) -> tuple[int, ...]:  # argparse names it in "invalid ints value"
        values = tuple(int(v) for v in text.split(",") if v.strip())
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"a comma-separated list of {what} >= {minimum}")
        return values

    return ints


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def name_list(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names, each one of ``allowed``."""

    def names(text: str) -> tuple[str, ...]:
        chosen = tuple(v.strip() for v in text.split(",") if v.strip())
        if not chosen or any(n not in allowed for n in chosen):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return chosen

    return names


def add_servers_flag(
    group: argparse._ArgumentGroup, benchmark: str, servers: tuple[str, ...]
) -> None:
    """``--<benchmark>-servers NAME,...``: which of ``servers`` to run (default all)."""
    group.add_argument(
        f"--{benchmark}-servers",
        type=name_list(servers),
        metavar="NAME,...",
        help=f"servers to run (default {','.join(servers)})",
    )


def add_duration_flag(
    group: argparse._ArgumentGroup, benchmark: str, full: float, quick: float
) -> None:
    """``--<benchmark>-duration S``: the measured window's seconds."""
    group.add_argument(
        f"--{benchmark}-duration",
        type=float,
        metavar="S",
        help=f"measured seconds (default {full:g}, quick {quick:g})",
    )
