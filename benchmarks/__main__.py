"""``python -m benchmarks [NAME ...] [--quick]``: run benchmarks (default: all), print markdown.

Afterwards :mod:`benchmarks.report` writes ``latest.json``, ``latest.md`` and the plots.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import BENCHMARKS, RESULTS_DIR, ROOT, BenchmarkError, Settings, report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the hub side by side with its peers; results go to "
        "benchmarks/results/.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run; results are written under a '-quick' name",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    for bench in BENCHMARKS.values():
        bench.add_arguments(parser.add_argument_group(f"{bench.name}: {bench.help}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    settings = Settings(quick=args.quick, results_dir=args.results_dir)
    started = time.monotonic()
    ran: list[str] = []
    status = 0
    for name in args.names or list(BENCHMARKS):
        try:
            print(BENCHMARKS[name].run(settings, args), flush=True)
        except BenchmarkError as exc:
            print(f"benchmark {name} failed: {exc}", file=sys.stderr)
            status = 1
            break
        ran.append(name)
    if ran:  # the summary and plots of what there is, even after a failure
        written = report.write(settings, ran, time.monotonic() - started)
        shown = (p.relative_to(ROOT) if p.is_relative_to(ROOT) else p for p in written)
        print(f"wrote {', '.join(map(str, shown))}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
