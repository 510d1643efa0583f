"""Running a benchmark task's tests against a completion: untrusted code, contained.

A completion is model output, so the program built from it (the task's prefix, the completion,
the suffix, the task's tests and ``check(entry_point)``) is run as untrusted code:

- in its own process, never in the benchmark's or the hub's: ``python -I -S`` (isolated: no
  ``PYTHON*`` variables, no site-packages at all, the script's folder not on ``sys.path``;
  the tasks need the standard library only);
- without a network: under ``unshare --user --map-root-user --net``, in a network namespace
  of its own that holds only a loopback interface, which is down (the benchmark refuses to
  run where such a namespace cannot be made, rather than run model output with a network);
- with resource limits set in the child before it executes (``preexec_fn``): address space
  1 GiB, CPU seconds, 64 open files, files written at most 16 MiB, no core files;
- in a new session (its process group is killed on timeout, children included), with a
  wall-clock limit, stdin closed, stdout discarded and stderr to a size-limited file;
- with a stripped environment (``PATH``, ``LANG`` only) and an empty temporary directory as
  its working directory, removed afterwards.

It can still read files the benchmark's user can read and use CPU up to its limits: the tasks
are the published HumanEval ones and the completions come from the backends being measured, so
this is containment against mistakes (an endless loop, a runaway allocation, a stray write or
connection), not a jail for hostile code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MEMORY_BYTES = 1024 * 1024 * 1024
OPEN_FILES = 64
WRITE_BYTES = 16 * 1024 * 1024
_NO_NETWORK = ("unshare", "--user", "--map-root-user", "--net")


class SandboxError(RuntimeError):
    """Tests cannot be run safely here (no network namespace)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    passed: bool
    reason: str  # "passed", "failed", "timeout"
    detail: str = ""  # the end of stderr, for a failure


def program(prefix: str, completion: str, suffix: str, test: str, entry_point: str) -> str:
    """The file a completion is judged by: the completed source, its tests, their call."""
    return f"{prefix}{completion}{suffix}\n\n{test}\n\ncheck({entry_point})\n"


def check_available() -> None:
    """Raise :class:`SandboxError` where a network namespace cannot be made."""
    if shutil.which(_NO_NETWORK[0]) is None:
        raise SandboxError("`unshare` (util-linux) is needed to run tests without a network")
    done = subprocess.run(
        [*_NO_NETWORK, sys.executable, "-I", "-c", "import socket; socket.if_nameindex()"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
    )
    if done.returncode != 0:
        raise SandboxError(
            "cannot make a network namespace for the tests (unshare --user --net failed: "
            f"{done.stderr.strip()[-300:]}); user namespaces may be disabled"
        )


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _limits(cpu_s: int) -> None:
    """In the child, before exec: the resource limits (no Python objects shared: fork-safe)."""
    for limit, value in (
        (resource.RLIMIT_AS, MEMORY_BYTES),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_NOFILE, OPEN_FILES),
        (resource.RLIMIT_FSIZE, WRITE_BYTES),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


async def run(source: str, timeout_s: float) -> Outcome:
    """Run ``source`` as described in the module docstring; passed when it exits with 0."""
    cpu_s = max(1, int(timeout_s) + 1)
    with tempfile.TemporaryDirectory(prefix="huddle-quality-") as tmp:
        folder = Path(tmp)
        script = folder / "task.py"
        script.write_text(source)
        errors = folder / "stderr"
        with errors.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *_NO_NETWORK,
                sys.executable,
                "-I",
                "-S",
                str(script),
                cwd=folder,
                env=_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=lambda: _limits(cpu_s),
            )
            try:
                code = await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                _kill(proc.pid)
                await proc.wait()
                return Outcome(False, "timeout")
            finally:
                if proc.returncode is None:  # cancelled: leave nothing running
                    _kill(proc.pid)
                    await proc.wait()
        if code == 0:
            return Outcome(True, "passed")
        tail = errors.read_bytes()[-400:].decode(errors="replace").strip()
        return Outcome(False, "failed", tail.splitlines()[-1] if tail else f"exit {code}")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
