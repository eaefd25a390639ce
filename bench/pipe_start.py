"""What tmail-deliver costs before it reads its message, against a bare
interpreter, in one run: the pipe pays it on every message. Both ways it
can be run: as pipe(8) runs it by default (python -IS deliver.py) and as
the console script.

    /opt/tmail-test/venv/bin/python bench/pipe_start.py [--runs 50]

tmail-deliver is started with no arguments (it prints its usage and exits
75): its imports and interpreter start-up, nothing else.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from tmail.postfix_wiring import deliver_command


def timed(command: list[str], runs: int) -> tuple[float, float]:
    """(median, p90) wall time in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    venv = os.path.dirname(sys.executable)
    commands = {
        "bare python3 -I -S -c pass": ["/usr/bin/python3", "-I", "-S", "-c", "pass"],
        "venv python -c pass": [sys.executable, "-c", "pass"],
        "python -IS deliver.py (the pipe)": deliver_command({"postfix": {"deliver_command": ""}}).split(),
        "tmail-deliver console script": [os.path.join(venv, "tmail-deliver")],
    }
    print(f"process start, {args.runs} runs each (ms):")
    for name, command in commands.items():
        median, p90 = timed(command, args.runs)
        print(f"  {name:34} median {median:6.1f}   p90 {p90:6.1f}")


if __name__ == "__main__":
    main()
