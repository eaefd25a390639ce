"""Locks across the daemon's processes (tmail.mailpath.shared_locks): one
holder at a time per name, whether the other holder is a thread of this
process or another process, and a holder that dies lets go."""
import os
import signal
import threading
import time

from tmail.mailpath.shared_locks import SharedLocks


def held_elsewhere(locks: SharedLocks, name: str, seconds: float) -> int:
    """A child process holding `name` for `seconds` (its pid, once it holds it)."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with locks.hold(name):
                os.write(ready_write, b"x")
                time.sleep(seconds)
        finally:
            os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 1) == b"x"
    os.close(ready_read)
    return pid


def waited_for(locks: SharedLocks, name: str) -> float:
    started = time.monotonic()
    with locks.hold(name):
        return time.monotonic() - started


def test_threads_of_one_process_take_turns():
    locks, inside, most = SharedLocks(), [0], [0]

    def work():
        for _ in range(50):
            with locks.hold("attempt q1 shop@d.test"):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                inside[0] -= 1
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def test_another_process_holding_the_name_is_waited_for():
    locks = SharedLocks()
    pid = held_elsewhere(locks, "attempt q2 shop@d.test", 0.5)
    assert waited_for(locks, "attempt q2 shop@d.test") > 0.3
    assert waited_for(locks, "attempt q3 shop@d.test") < 0.1     # another name: no wait
    os.waitpid(pid, 0)


def test_a_holder_that_dies_lets_go():
    locks = SharedLocks()
    pid = held_elsewhere(locks, "attempt q4 shop@d.test", 60)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert waited_for(locks, "attempt q4 shop@d.test") < 1


def test_a_child_given_the_file_shares_the_locks():
    """The workers get the daemon's file by its descriptor number."""
    locks = SharedLocks()
    inherited = SharedLocks(os.dup(locks.fd))
    pid = held_elsewhere(inherited, "attempt q5 shop@d.test", 0.5)
    assert waited_for(locks, "attempt q5 shop@d.test") > 0.3
    os.waitpid(pid, 0)
    inherited.close()


def test_a_note_that_the_message_went_out_outlives_the_process_that_wrote_it():
    locks = SharedLocks()
    pid = os.fork()
    if pid == 0:
        with locks.hold("attempt q6 shop@d.test") as held:
            held.note_sent("digest-1")
        os._exit(0)
    os.waitpid(pid, 0)
    with locks.hold("attempt q6 shop@d.test") as held:
        assert held.sent("digest-1")
        assert not held.sent("digest-2")           # another message under a reused queue id
    with locks.hold("attempt q7 shop@d.test") as held:
        assert not held.sent("digest-1")


# -- the daemon's processes writing one SQLite database ----------------------------

def _writers(tmp_path, locks):
    """Two Services on one SQLite file, as the daemon and an LMTP worker have
    (each its own engine and in-process writer queue), SQLite's own busy
    wait cut to 1 ms: contention shows as "database is locked"."""
    from datetime import datetime, timezone

    from tmail.core.receipts import Receipt
    from tmail.core.resolve import Policy
    from tmail.db import migrate
    from tmail.db.engine import make_engine
    from tmail.mailpath.service import Service
    url = f"sqlite:///{tmp_path}/t.db"      # make_engine makes the directory
    migrate.upgrade(make_engine(url))
    services = [Service(make_engine(url, busy_timeout_ms=1), Policy("+", frozenset(), "a@x.test", None),
                        clock=lambda: datetime(2026, 11, 27, tzinfo=timezone.utc), locks=locks)
                for _ in range(2)]
    errors = []

    def write(service, prefix):
        for i in range(150):
            try:
                service.record_arrival(f"{prefix}{i}", [Receipt("a@d.test", "forward")])
            except Exception as exc:    # noqa: BLE001 - what the test counts
                errors.append(exc)
    threads = [threading.Thread(target=write, args=(s, f"Q{n}x")) for n, s in enumerate(services)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_the_daemons_sqlite_writers_take_turns_in_the_kernel_not_in_sqlites_busy_loop(tmp_path):
    assert _writers(tmp_path / "shared", SharedLocks()) == []
    # the same without the shared lock: SQLite's busy handler gives up
    assert any("locked" in str(e) for e in _writers(tmp_path / "alone", None))
