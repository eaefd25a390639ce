"""Soak: thousands of messages through a real Postfix and tmail, on each
database, counting what a long run would reveal: lost and duplicated
messages, and the daemon's memory, open files and threads as it goes.

Per backend (SQLite, PostgreSQL, MariaDB), one private Postfix instance:
  - N messages with unique subjects to an unlimited alias, from parallel
    sessions of a client outside mynetworks;
  - in the same sessions, a recipient that is refused (unknown) and one
    allowed LIMIT messages (the rest refused at RCPT);
  - the daemon sampled (VmRSS, VmHWM, fds, threads) every `--every`
    messages; at the end every subject counted at the sink.

The baseline, measured in the same run, is the daemon right after start
and after a warm-up of 50 messages: growth past the warm-up is what a
long run would add.

    /opt/tmail-test/venv/bin/python bench/soak.py [--messages 3000] [--sessions 10]
        [--backends sqlite,postgresql,mariadb]
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from collections import Counter

import sqlalchemy as sa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from conftest_db import MARIA_ADMIN, PG_ADMIN  # noqa: E402
from harness import Instance, wait_until  # noqa: E402
from sink import Sink  # noqa: E402

LIMIT = 50


def sample(pid: int) -> dict[str, int]:
    status = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            status[name] = value.split()[0] if value.split() else ""
    return {"rss_kib": int(status["VmRSS"]), "hwm_kib": int(status["VmHWM"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(status["Threads"])}


class Database:
    """A fresh database of one kind, dropped afterwards."""

    def __init__(self, kind: str):
        self.kind, self.name = kind, f"tmail_soak_{secrets.token_hex(4)}"
        self.admin = None
        if kind == "sqlite":
            self.url = None            # the instance's own file
            return
        self.admin = sa.create_engine(PG_ADMIN if kind == "postgresql" else MARIA_ADMIN,
                                      isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"CREATE SCHEMA {self.name}")
                self.url = f"{PG_ADMIN}?options=-csearch_path%3D{self.name}"
            else:
                conn.exec_driver_sql(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
                self.url = MARIA_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"

    def drop(self):
        if self.admin is None:
            return
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {self.name} CASCADE" if self.kind == "postgresql"
                                 else f"DROP DATABASE {self.name}")
        self.admin.dispose()


def send_all(mx, numbers, tag, sessions, progress):
    """Each message: RCPT to the soak alias, an unknown address and the
    limited alias; DATA with a unique subject."""
    replies: Counter = Counter()
    lock = threading.Lock()
    todo = list(numbers)

    def session():
        client = mx.client(timeout=120)
        sent = 0
        while True:
            with lock:
                if not todo:
                    break
                n = todo.pop()
            client.mail("soak@orig.test")
            codes = [client.rcpt(f"{r}@d.test")[0] for r in (f"soak-{tag}", f"nobody-{tag}", f"lim-{tag}")]
            header = (f"From: soak@orig.test\r\nTo: soak-{tag}@d.test\r\nSubject: soak {tag} {n}\r\n"
                      f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{tag}.{n}@orig.test>\r\n")
            code = client.data((header + "\r\n" + ("y" * 76 + "\r\n") * 12).encode())[0]   # ~1 KB
            with lock:
                replies.update(f"rcpt{i}:{c}" for i, c in enumerate(codes))
                replies[f"data:{code}"] += 1
            progress()
            sent += 1
            if sent % 50 == 0:          # new sessions now and then, as the internet does
                client.quit()
                client = mx.client(timeout=120)
        client.quit()

    threads = [threading.Thread(target=session) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def soak(kind: str, messages: int, sessions: int, every: int) -> dict:
    sink = Sink()
    db = Database(kind)
    mx = Instance(sink.port, db_url=db.url)
    try:
        mx.setup()
        tag = secrets.token_hex(2)
        for domain in ("d.test", "srs.fwd.test"):    # signing and sealing on, as installed
            mx.tmail("dkim", "keygen", "--domain", domain, "--selector", "s1", as_root=True)
        mx.tmail("alias", "add", f"soak-{tag}", "--domain", "d.test", "--to", "soak@real.test")
        mx.tmail("alias", "add", f"lim-{tag}", "--domain", "d.test", "--to", "lim@real.test",
                 "--max-messages", str(LIMIT))
        pid = mx.daemon.pid
        samples = [("started", 0, sample(pid))]
        send_all(mx, range(-50, 0), tag, 5, lambda: None)            # warm-up
        wait_until(lambda: mx.queue_size() == 0, timeout=120, what="the warm-up delivered")
        samples.append(("warm", 0, sample(pid)))
        done = [0]
        lock = threading.Lock()

        def progress():
            with lock:
                done[0] += 1
                if done[0] % every == 0:
                    samples.append(("sending", done[0], sample(pid)))
        t0 = time.perf_counter()
        replies = send_all(mx, range(messages), tag, sessions, progress)
        wait_until(lambda: mx.queue_size() == 0, timeout=1800, interval=0.5, what="an empty queue")
        took = time.perf_counter() - t0
        time.sleep(2)
        samples.append(("drained", messages, sample(pid)))
        # every message went to the soak alias once (and some to the limited one)
        subjects = Counter(line for m in sink.messages if m.rcpts == ["soak@real.test"]
                           for line in m.data.split(b"\r\n")
                           if line.startswith(f"Subject: soak {tag} ".encode()))
        expected = {f"Subject: soak {tag} {n}".encode() for n in range(-50, messages)}
        return {
            "backend": kind, "messages": messages, "seconds": round(took, 1),
            "rate": round(messages / took, 1), "replies": dict(sorted(replies.items())),
            "lost": len(expected - set(subjects)),
            "duplicated": sum(c - 1 for c in subjects.values() if c > 1),
            "limited_forwarded": len([m for m in sink.messages if m.rcpts == ["lim@real.test"]]),
            "samples": samples,
            "log_errors": sum(1 for line in mx.tmail_log().splitlines() if " ERROR " in line),
            "log_warnings": sum(1 for line in mx.tmail_log().splitlines() if " WARNING " in line),
        }
    finally:
        mx.teardown()
        sink.close()
        db.drop()


def report(result: dict) -> None:
    print(f"\n== {result['backend']}: {result['messages']} messages in {result['seconds']} s "
          f"({result['rate']} msg/s)")
    print(f"   lost {result['lost']}, duplicated {result['duplicated']}, limited alias forwarded "
          f"{result['limited_forwarded']} (allowed {LIMIT}); log: {result['log_errors']} errors, "
          f"{result['log_warnings']} warnings")
    print(f"   replies: {result['replies']}")
    print(f"   {'when':>8} {'after':>6} {'RSS MiB':>8} {'peak MiB':>9} {'fds':>5} {'threads':>8}")
    for when, after, s in result["samples"]:
        print(f"   {when:>8} {after:>6} {s['rss_kib'] / 1024:8.1f} {s['hwm_kib'] / 1024:9.1f} "
              f"{s['fds']:5d} {s['threads']:8d}")
    warm = next(s for w, _, s in result["samples"] if w == "warm")
    end = result["samples"][-1][2]
    print(f"   growth after warm-up (the baseline, same run): RSS {(end['rss_kib'] - warm['rss_kib']) / 1024:+.1f}"
          f" MiB, fds {end['fds'] - warm['fds']:+d}, threads {end['threads'] - warm['threads']:+d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    for kind in args.backends.split(","):
        report(soak(kind, args.messages, args.sessions, args.every))


if __name__ == "__main__":
    main()
