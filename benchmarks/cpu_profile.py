"""``python -m benchmarks.cpu_profile OUT -m MODULE [ARGS...]``: run MODULE as ``python -m``
would, under a cProfile that counts CPU time (``time.process_time``, not the wall clock, so
that an event loop waiting in ``epoll`` costs nothing) and profiles only between SIGUSR1 (start)
and SIGUSR2 (stop, and write the stats to OUT): a benchmark profiles its measured window, not
the start-up, and its per-key figures divide by that window's keys.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit(__doc__)
    out, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    profiler = cProfile.Profile(time.process_time)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
