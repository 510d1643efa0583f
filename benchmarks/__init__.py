"""Benchmarks that measure the hub side by side with its peers: ``python -m benchmarks``.

A benchmark is a :class:`Benchmark` registered in :data:`BENCHMARKS`: it adds its own
(name-prefixed) flags to the command line, runs, writes its JSON and markdown under
``benchmarks/results/`` and returns the markdown.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"


class BenchmarkError(RuntimeError):
    """A benchmark could not run (a peer missing, a process that died); says why."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What every benchmark is told, whatever its own flags."""

    quick: bool
    results_dir: Path


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    help: str
    add_arguments: Callable[[argparse._ArgumentGroup], None]
    run: Callable[[Settings, argparse.Namespace], str]


def _registry() -> dict[str, Benchmark]:
    from benchmarks import ai, cluster, fanout, keystroke, quality, room, summary_load, traces, web

    found: tuple[Benchmark, ...] = (fanout.BENCHMARK, keystroke.BENCHMARK, ai.BENCHMARK)
    found += (summary_load.BENCHMARK, traces.BENCHMARK, cluster.BENCHMARK, quality.BENCHMARK)
    found += (web.BENCHMARK, room.BENCHMARK)
    return {bench.name: bench for bench in found}


BENCHMARKS: dict[str, Benchmark] = _registry()
