"""Store lookups behind the verdict at 1,000,000 aliases (SQLite, PostgreSQL).

Prints p50/p99 of 10,000 random lookups on a warm connection: tmail's
Store.get_alias (what the milter and the delivery path call), and beside it,
as a baseline measured in the same run, a bare driver-level SELECT by the
same unique index.

    /opt/tmail-test/venv/bin/python bench/lookup.py [--aliases N] [--lookups N] [--only sqlite|postgresql]
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime

import sqlalchemy as sa

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest_db import PG_ADMIN  # noqa: E402

from tmail.db import migrate  # noqa: E402
from tmail.db.engine import make_engine  # noqa: E402
from tmail.db.schema import aliases, destinations, domains  # noqa: E402
from tmail.db.store import Store  # noqa: E402

NOW = datetime(2026, 11, 27)


def fill(engine, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(domains.insert(), [{"id": 1, "name": "d.test", "created_at": NOW}])
    batch = 20_000
    for start in range(0, count, batch):
        rows = [dict(id=i + 1, domain_id=1, local=f"alias{i}", local_key=f"alias{i}", enabled=True,
                     note="", created_at=NOW, on_expiry="reject", forwarded=0, refused=0)
                for i in range(start, min(count, start + batch))]
        with engine.begin() as conn:
            conn.execute(aliases.insert(), rows)
            conn.execute(destinations.insert(),
                         [{"alias_id": r["id"], "address": f"user{r['id']}@real.test"} for r in rows])


def percentiles(samples):
    samples = sorted(samples)
    return (statistics.median(samples) * 1000,
            samples[int(len(samples) * 0.99) - 1] * 1000)


def measure(engine, count: int, lookups: int):
    keys = [f"alias{random.randrange(count)}" for _ in range(lookups)]
    with engine.connect().execution_options(readonly=True) as conn:
        store = Store(conn)
        for key in keys[:500]:  # warm up
            store.get_alias(key, "d.test")
        tmail_times = []
        for key in keys:
            t0 = time.perf_counter()
            record = store.get_alias(key, "d.test")
            tmail_times.append(time.perf_counter() - t0)
            assert record is not None
        conn.rollback()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        param = "?" if engine.dialect.name == "sqlite" else "%s"
        query = f"SELECT id, local FROM aliases WHERE domain_id = 1 AND local_key = {param}"
        raw_times = []
        for key in keys:
            t0 = time.perf_counter()
            cursor.execute(query, (key,))
            cursor.fetchall()
            raw_times.append(time.perf_counter() - t0)
    finally:
        raw.close()
    return percentiles(tmail_times), percentiles(raw_times)


def run(kind: str, count: int, lookups: int) -> None:
    cleanup = None
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="tmail-bench-")
        url = f"sqlite:///{tmp}/bench.db"
    else:
        schema = f"tmail_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{PG_ADMIN}?options=-csearch_path%3D{schema}"

        def cleanup():
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        t0 = time.perf_counter()
        fill(engine, count)
        fill_s = time.perf_counter() - t0
        if kind == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        (t50, t99), (r50, r99) = measure(engine, count, lookups)
        print(f"{kind:10} {count:>9,} aliases (filled in {fill_s:.0f} s), {lookups:,} lookups:"
              f"  tmail get_alias p50 {t50:.3f} ms p99 {t99:.3f} ms"
              f"  |  baseline bare SELECT p50 {r50:.3f} ms p99 {r99:.3f} ms"
              f"  (target p99 <= 1 ms: {'met' if t99 <= 1 else 'MISSED'})")
    finally:
        engine.dispose()
        if cleanup:
            cleanup()
        elif kind == "sqlite":
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        if args.only in (None, kind):
            run(kind, args.aliases, args.lookups)


if __name__ == "__main__":
    main()
