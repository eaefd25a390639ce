"""The addresses page for a user with 100,000 addresses against the same
page for a user with 10, in one run, on one SQLite database (the default).

For each user and each view (the first page, a search, a state filter, a
far page), the median and p95 of the server's time for the whole request
(Flask's test client: routing, session, queries, template), and the
baseline ratio big/small. Also what one sign-in costs (argon2id).

    /opt/tmail-test/venv/bin/python bench/web.py [--aliases 100000] [--runs 40]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from helpers import write_config  # noqa: E402


def populate(cfg, big: int):
    """Two users at d.test: `big` addresses for one, 10 for the other."""
    from tmail.core.aliases import Settings, new_alias, random_local
    from tmail.core.durations import utcnow
    from tmail.db import migrate
    from tmail.db.accounts import Accounts
    from tmail.db.engine import make_engine
    from tmail.db.store import Store
    engine = make_engine(cfg["database"]["url"])
    migrate.upgrade(engine)
    now = utcnow()
    users = {}
    with engine.begin() as conn:
        store, accounts = Store(conn), Accounts(conn)
        store.add_domain("d.test", now)
        for email, count in (("big@real.test", big), ("small@real.test", 10)):
            user = accounts.add_user(email, now)
            accounts.set_user_domains(user.id, ["d.test"])
            accounts.add_destination(user.id, email, now, verified=True)
            records = []
            for i in range(count):
                created = now - timedelta(minutes=count - i)
                settings = Settings(ttl=timedelta(days=30 + i % 60), note=f"site {i} shop")
                record = new_alias(random_local("token", 14), "d.test", (email,), settings, created)
                records.append(dataclasses.replace(record, owner_id=user.id))
            store.add_aliases(records)
            users[email] = user.id
    return engine, users


def timings(client, path: str, runs: int) -> list[float]:
    client.get(path)     # warm: templates compiled, statements cached
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return out


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aliases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    from pathlib import Path

    from tmail import config as config_mod
    from tmail.core.durations import utcnow
    from tmail.db.accounts import Accounts
    from tmail.web import create_app
    base = Path(tempfile.mkdtemp(prefix="tmail-bench-web-"))
    path = write_config(base, f"sqlite:///{base}/tmail.db",
                        web={"secret_key_file": str(base / "web.secret"), "secure_cookies": False})
    (base / "web.secret").write_text("bench-secret-key-of-some-length\n")
    cfg = config_mod.load(path)
    t0 = time.perf_counter()
    engine, users = populate(cfg, args.aliases)
    print(f"{args.aliases} + 10 addresses written in {time.perf_counter() - t0:.1f} s")
    app = create_app(cfg, engine=engine, send=lambda *a, **k: None)
    far = args.aliases // 50 - 1
    views = {
        "first page": "/addresses",
        "search": "/addresses?q=shop",
        "search, none": "/addresses?q=zzqq",      # a term nothing has: one scan of every row
        "filter": "/addresses?state=active&domain=d.test",
        "far page": f"/addresses?page={far}",
        "by expiry": f"/addresses?sort=expiry&page={far // 2}",
        "by mail": "/addresses?sort=activity",
    }
    print(f"\n{'view':13} {'10 addresses':>24} {f'{args.aliases} addresses':>28} {'p95 ratio':>10}")
    for name, view in views.items():
        row = {}
        for email in ("small@real.test", "big@real.test"):
            with engine.begin() as conn:
                session = Accounts(conn).new_session(users[email], utcnow(), timedelta(hours=1), "bench", "bench")
            client = app.test_client()
            client.set_cookie("tmail_sid", session)     # [web] secure_cookies = false
            values = timings(client, view, args.runs)
            row[email] = (statistics.median(values), p95(values))
        small, big = row["small@real.test"], row["big@real.test"]
        print(f"{name:13} median {small[0]:6.1f} p95 {small[1]:6.1f} ms   "
              f"median {big[0]:6.1f} p95 {big[1]:6.1f} ms   {big[1] / small[1]:8.2f}x")
    from tmail.passwords import check, hash_password
    stored = hash_password("correct horse battery staple")
    started = time.perf_counter()
    for _ in range(10):
        check(stored, "correct horse battery staple")
    print(f"\nsign-in: one argon2id check {(time.perf_counter() - started) * 100:.0f} ms "
          "(argon2-cffi defaults: 3 passes, 64 MiB, 4 lanes)")


if __name__ == "__main__":
    main()
