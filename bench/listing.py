"""`tmail alias list --json` and `tmail stats` at 1,000,000 aliases (SQLite):
wall time and peak RSS of each command, beside the same commands at 10,000
aliases in the same run (the baseline: what memory is not about the count).

    /opt/tmail-test/venv/bin/python bench/listing.py [--aliases 1000000]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
from helpers import write_config  # noqa: E402
from lookup import fill  # noqa: E402

from tmail.db import migrate  # noqa: E402
from tmail.db.engine import make_engine  # noqa: E402

TMAIL = os.path.join(os.path.dirname(sys.executable), "tmail")


def run(config: str, *args: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB of the command, lines of output)."""
    wrapper = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE); "
               "lines = sum(chunk.count(b'\\n') for chunk in iter(lambda: p.stdout.read(1 << 20), b'')); "
               "_, status, usage = os.wait4(p.pid, 0); print(status, usage.ru_maxrss, lines)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, TMAIL, "--config", config, *args],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0", out
    return time.perf_counter() - start, int(out[1]) / 1024, int(out[2])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--aliases", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{'aliases':>9}  {'command':26} {'seconds':>8} {'peak RSS MiB':>13}")
    for count in (10_000, args.aliases):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/tmail.db"
            engine = make_engine(url)
            migrate.upgrade(engine)
            fill(engine, count)
            engine.dispose()
            config = write_config(pathlib.Path(tmp), url)
            for command in (("alias", "list", "--json"), ("alias", "list"), ("stats", "--json")):
                seconds, rss, lines = run(config, *command)
                print(f"{count:>9}  {' '.join(command):26} {seconds:8.1f} {rss:13.1f}")


if __name__ == "__main__":
    main()
