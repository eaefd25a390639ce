"""`tmail alias import` of 100,000 aliases into a fresh SQLite database.

Runs the real CLI in a subprocess and prints its wall time; the baseline,
measured in the same run, is a bare executemany of the same rows (what the
database itself costs, without validation and idempotence). Target: <= 30 s.

    /opt/tmail-test/venv/bin/python bench/import.py [--aliases N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from pathlib import Path  # noqa: E402

from helpers import write_config  # noqa: E402

from tmail.db import migrate  # noqa: E402
from tmail.db.engine import make_engine  # noqa: E402
from tmail.db.schema import aliases, destinations, domains  # noqa: E402

TMAIL = os.path.join(os.path.dirname(sys.executable), "tmail")


def tmail(config, *args):
    return subprocess.run([TMAIL, "--config", config, *args], check=True, capture_output=True, text=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--aliases", type=int, default=100_000)
    count = parser.parse_args().aliases
    tmp = Path(tempfile.mkdtemp(prefix="tmail-bench-"))
    try:
        config = write_config(tmp, f"sqlite:///{tmp}/tmail.db")
        tmail(config, "db", "upgrade")
        tmail(config, "domain", "add", "d.test")
        lines = tmp / "aliases.jsonl"
        with open(lines, "w") as handle:
            for i in range(count):
                handle.write(json.dumps({"address": f"user{i}@d.test", "to": [f"user{i}@real.test"],
                                         "ttl": "30d", "max_messages": 100}) + "\n")
        t0 = time.perf_counter()
        first = json.loads(tmail(config, "alias", "import", str(lines), "--json").stdout)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = json.loads(tmail(config, "alias", "import", str(lines), "--json").stdout)
        again_s = time.perf_counter() - t0
        assert first["created"] == count and again["unchanged"] == count

        engine = make_engine(f"sqlite:///{tmp}/baseline.db")
        migrate.upgrade(engine)
        now = datetime(2026, 11, 27)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(domains.insert(), [{"id": 1, "name": "d.test", "created_at": now}])
            conn.execute(aliases.insert(), [
                dict(id=i + 1, domain_id=1, local=f"user{i}", local_key=f"user{i}", enabled=True,
                     note="", created_at=now, on_expiry="reject", forwarded=0, refused=0,
                     max_messages=100) for i in range(count)])
            conn.execute(destinations.insert(), [
                {"alias_id": i + 1, "address": f"user{i}@real.test"} for i in range(count)])
        base_s = time.perf_counter() - t0
        print(f"alias import of {count:,} aliases (SQLite): first {first_s:.1f} s, "
              f"again (all unchanged) {again_s:.1f} s  |  baseline bare executemany {base_s:.1f} s"
              f"  (target <= 30 s: {'met' if first_s <= 30 else 'MISSED'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
