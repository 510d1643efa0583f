"""After a run: every benchmark's JSON merged into one, a markdown summary and the plots.

``latest.json`` holds each registered benchmark's newest result file as it stands in the
results folder (those that ran this time are listed under ``ran``), with the machine and the
time; ``latest.md`` lists every target and verdict and, for the fan-out benchmark, the
comparison tables; the PNGs plot the fan-out latency distributions and throughput.
A ``--quick`` run writes ``latest-quick.*`` and ``*-quick.png``, leaving the full ones alone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS, Settings
from benchmarks.common import command_output, cpu_model, ms, write_atomic

LATENCY_PLOT = "fanout-latency"
THROUGHPUT_PLOT = "fanout-throughput"
MEMORY_PLOT = "fanout-memory"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    node = shutil.which("node")
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": command_output(node, "--version") if node else None,
        "commit": command_output("git", "describe", "--always", "--dirty", "--abbrev=12"),
    }


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write(settings: Settings, ran: Sequence[str], duration_s: float) -> list[Path]:
    """Write latest.json, latest.md and the plots; return the paths written."""
    suffix = "-quick" if settings.quick else ""
    out = settings.results_dir
    results = {
        name: data
        for name in BENCHMARKS
        if (data := _load(out / f"{name}{suffix}.json")) is not None
    }
    merged = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "ran": list(ran),
        "duration_s": round(duration_s, 1),
        "machine": machine(),
        "benchmarks": results,
    }
    written = [out / f"latest{suffix}.json", out / f"latest{suffix}.md"]
    write_atomic(written[0], json.dumps(merged, indent=2) + "\n")
    plots = plot_fanout(results["fanout"], out, suffix) if "fanout" in results else []
    write_atomic(written[1], markdown(merged, suffix, plots))
    return written + plots


# -- markdown ------------------------------------------------------------------------------


def markdown(merged: dict[str, Any], suffix: str, plots: list[Path]) -> str:
    m = merged["machine"]
    memory = f", {m['memory_gib']:g} GiB" if m.get("memory_gib") else ""
    lines = [
        f"# Benchmarks{' (quick)' if merged['quick'] else ''}",
        "",
        f"Written {merged['date']} at commit `{m['commit']}` after running "
        f"{', '.join(merged['ran']) or 'nothing'} ({merged['duration_s']:.0f} s), on "
        f"{m['cpus']} x {m['cpu_model']}{memory}, {m['os']}, Python {m['python']}, "
        f"Node {m['node']}. Each benchmark's own file has its full table and method.",
        "",
        "| benchmark | run | targets met | details |",
        "| --- | --- | --- | --- |",
    ]
    for name, data in merged["benchmarks"].items():
        targets = _targets(data)
        met = sum(1 for t in targets if t.get("met"))
        when = data.get("environment", {}).get("date") or data.get("when") or "?"
        link = f"{name}{suffix}.md"
        lines.append(f"| {name} | {when} | {met} of {len(targets)} | [{link}]({link}) |")
    lines.append("")
    fanout = merged["benchmarks"].get("fanout")
    if fanout is not None:
        lines += _fanout_tables(fanout)
    for path in plots:
        lines += [f"![{path.stem}]({path.name})", ""]
    for name, data in merged["benchmarks"].items():
        targets = _targets(data)
        if not targets:
            continue
        lines += [f"## {name}: targets", ""]
        lines += [
            f"- {'met' if t.get('met') else '**not met**'}: {t.get('target')} "
            f"({t.get('detail', '')})"
            for t in targets
        ]
        lines.append("")
    return "\n".join(lines)


def _targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    targets = data.get("targets")
    return [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []


def _fanout_tables(fanout: dict[str, Any]) -> list[str]:
    lines = [
        "## Fan-out",
        "",
        "| server | client | N | delivered/s | missing | p50 ms | p99 ms | server CPU % | RSS MB |",
        "| --- | --- |" + " ---: |" * 7,
    ]
    for c in fanout.get("cases", []):
        lat = c["latency_ms"]
        lines.append(
            f"| {c['server']} | {c.get('client', 'y-websocket')} | {c['clients']} "
            f"| {c['delivered_per_s']:,.0f} | {c['missing']:,} | {ms(lat.get('p50'))} "
            f"| {ms(lat.get('p99'))} | {c['server_cpu_percent']:.0f} | {c['server_rss_mb']:.0f} |"
        )
    lines.append("")
    memory = fanout.get("memory_per_document") or []
    if memory:
        m0 = memory[0]
        lines += [
            f"Memory per open document ({m0['rooms']} rooms past a baseline of "
            f"{m0['rooms_base']}, one client each, {m0['doc_bytes']:,} bytes of text):",
            "",
            "| server | baseline RSS MB | RSS MB | per doc KB |",
            "| --- |" + " ---: |" * 3,
            *(
                f"| {m['server']} | {m['base_rss_mb']:.1f} | {m['rss_mb']:.1f} "
                f"| {m['per_doc_kb']:.1f} |"
                for m in memory
            ),
            "",
        ]
    return lines


# -- plots ---------------------------------------------------------------------------------


def plot_fanout(fanout: dict[str, Any], out: Path, suffix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, StrMethodFormatter

    cases: list[dict[str, Any]] = fanout.get("cases", [])
    servers = list(dict.fromkeys(c["server"] for c in cases))
    counts = sorted({c["clients"] for c in cases})
    colours = {s: f"C{i}" for i, s in enumerate(servers)}
    written: list[Path] = []
    if not cases:
        return written

    # Latency: one CDF panel per client count, every server in it.
    fig, axes = plt.subplots(
        1, len(counts), figsize=(4.6 * len(counts), 4.0), squeeze=False, sharey=True
    )
    for ax, n in zip(axes[0], counts, strict=True):
        for c in (c for c in cases if c["clients"] == n):
            q = c.get("loadgen", {}).get("latency_quantiles_ms")
            if not q:
                continue
            points = [(v, p) for p, v in zip(q["p"], q["ms"], strict=True) if v is not None]
            if not points:
                continue
            xs = [max(v, 0.01) for v, _ in points]  # log axis: no zeros
            ax.plot(xs, [p for _, p in points], label=c["server"], color=colours[c["server"]])
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        for level in (50, 99):
            ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"{n} clients")
        ax.set_xlabel("fan-out latency (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("% of deliveries at or below")
    # every server in the legend, also one whose clients got nothing in time at some N
    handles = [Line2D([], [], color=colours[s], label=s) for s in servers]
    axes[0][-1].legend(handles=handles, loc="lower right", fontsize="small")
    fig.suptitle("Fan-out latency, CDF (one room; dotted: p50, p99)", fontsize="medium")
    fig.tight_layout()
    written.append(_save(fig, out / f"{LATENCY_PLOT}{suffix}.png"))
    plt.close(fig)

    # Throughput against client count, with what a lossless, keeping-up server delivers.
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rate = float(fanout.get("options", {}).get("rate", 10.0))
    ax.plot(counts, [rate * n * (n - 1) for n in counts], "k:", label="offered: rate x N x (N - 1)")
    for server in servers:
        mine = sorted((c for c in cases if c["server"] == server), key=lambda c: c["clients"])
        ax.plot(
            [c["clients"] for c in mine],
            [c["delivered_per_s"] for c in mine],
            marker="o",
            label=server,
            color=colours[server],
        )
    ax.set_xlabel("clients in the room (N)")
    ax.set_ylabel("delivered updates / s")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_title("Fan-out throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    written.append(_save(fig, out / f"{THROUGHPUT_PLOT}{suffix}.png"))
    plt.close(fig)

    memory: list[dict[str, Any]] = fanout.get("memory_per_document") or []
    if memory:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        names = [m["server"] for m in memory]
        values = [m["per_doc_kb"] for m in memory]
        bars = ax.barh(names, values, color=[colours.get(s, "C7") for s in names])
        ax.bar_label(bars, fmt="%.0f KB", padding=3)
        ax.invert_yaxis()
        ax.set_xlabel("server RSS growth per open document (KB)")
        ax.set_title(f"Memory per open document ({memory[0]['rooms']} rooms)", fontsize="medium")
        ax.margins(x=0.2)
        fig.tight_layout()
        written.append(_save(fig, out / f"{MEMORY_PLOT}{suffix}.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path
