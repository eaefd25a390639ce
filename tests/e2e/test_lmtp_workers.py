"""LMTP deliveries in worker processes (tmail.mailpath.lmtp_workers): the
daemon keeps its workers running, they end with it however it ends, and an
attempt at a message in one process waits for one in another."""
import contextlib
import os
import signal
import smtplib
import sqlite3
import subprocess
import threading
import time

import pytest
from harness import DELIVER, Instance, wait_until


@pytest.fixture(scope="module")
def lmtp_mx(sink):
    instance = Instance(sink.port, transport="lmtp")
    try:
        instance.setup()
        instance.tmail("alias", "add", "crew", "--domain", "d.test", "--to", "crew@real.test")
        yield instance
    finally:
        instance.teardown()


def workers_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if parent == pid and b"tmail.mailpath.lmtp_workers" in command:
            found.append(int(entry))
    return sorted(found)


def running(pid: int) -> bool:
    """Alive: not gone, and not a zombie its new parent has yet to reap."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def arrived(sink, subject: str) -> int:
    return sum(1 for m in sink.messages if f"Subject: {subject}\r\n".encode() in m.data)


def send(mx, subject: str):
    with mx.client() as client:
        client.sendmail("alice@orig.test", ["crew@d.test"],
                        f"From: alice@orig.test\r\nSubject: {subject}\r\n\r\nhi\r\n".encode())


def test_a_worker_that_dies_is_started_again_and_mail_goes_on(lmtp_mx, sink):
    wait_until(lambda: len(workers_of(lmtp_mx.daemon.pid)) == 2, what="two LMTP workers")
    first = workers_of(lmtp_mx.daemon.pid)
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: len(workers_of(lmtp_mx.daemon.pid)) == 2
               and first[0] not in workers_of(lmtp_mx.daemon.pid), what="a new worker")
    assert "LMTP worker 0 (pid" in lmtp_mx.tmail_log() or "LMTP worker 1 (pid" in lmtp_mx.tmail_log()
    for i in range(6):
        send(lmtp_mx, f"after a worker died {i}")
    wait_until(lambda: all(arrived(sink, f"after a worker died {i}") == 1 for i in range(6)),
               timeout=60, what="six messages through the workers")


def lmtp_attempt(mx, ident: str, body: bytes):
    """One delivery straight to the LMTP socket, as Postfix's lmtp(8) makes it."""
    with smtplib.LMTP(f"{mx.queue}/tmail/lmtp.sock", timeout=120) as client:
        client.ehlo_or_helo_if_needed()
        assert client.docmd("XFORWARD", f"IDENT={ident}")[0] == 250
        client.sendmail("sender@orig.test", ["crew@d.test"], body.replace(b"\n", b"\r\n"))


def pipe_attempt(mx, queue_id: str, body: bytes):
    result = subprocess.run([DELIVER, "--socket", f"{mx.run_dir}/deliver.sock", queue_id,
                             "sender@orig.test", "crew@d.test"], input=body, capture_output=True,
                            user="tmail")
    assert result.returncode == 0, result


def test_attempts_at_one_message_in_two_processes_forward_one_copy(lmtp_mx, sink):
    """The pipe's attempt runs in the daemon, the LMTP one in a worker: they
    wait for each other across processes, and one copy leaves."""
    body = (b"Received: from a (a [192.0.2.1]) by mx.fwd.test (Postfix) with ESMTP id 4QCROSS;"
            b" Sat, 28 Nov 2026 10:00:00 +0000\nFrom: alice@orig.test\nSubject: two processes\n\n"
            + b"x" * 5_000_000 + b"\n")
    threads = [threading.Thread(target=pipe_attempt, args=(lmtp_mx, "4QCROSS", body)),
               threading.Thread(target=lmtp_attempt, args=(lmtp_mx, "4QCROSS", body))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.wait_for(lambda m: b"Subject: two processes" in m.data, timeout=60)
    time.sleep(2)
    assert arrived(sink, "two processes") == 1
    assert "already forwarded" in lmtp_mx.tmail_log()


@contextlib.contextmanager
def forwarded_while_the_database_is_locked(mx, sink, subject: str, send_it):
    """send_it() queues a message, held back from tmail; it is then let go
    while another program holds SQLite's write lock, and this yields, the
    lock still held, once the forward has reached the sink (so its record
    waits)."""
    mx.postconf("defer_transports=tmail")
    mx.reload()
    send_it()
    holder = sqlite3.connect(mx.db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        mx.postconf("defer_transports=")
        mx.reload()
        mx.flush()
        sink.wait_for(lambda m: f"Subject: {subject}".encode() in m.data, timeout=60)
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_database_locked_past_its_timeouts_holds_the_record_not_a_second_copy(lmtp_mx, sink):
    """The forward of crew+a went out while another program held SQLite's
    write lock for longer than every timeout: its record is retried until
    the lock goes, and crew+b (the same alias, the same message, waiting
    on the attempt's lock) finds it, rather than sending a second copy."""
    def send_to_two_tags():
        with lmtp_mx.client() as client:
            client.sendmail("alice@orig.test", ["crew+a@d.test", "crew+b@d.test"],
                            b"From: alice@orig.test\r\nSubject: locked database\r\n\r\nhi\r\n")
    with forwarded_while_the_database_is_locked(lmtp_mx, sink, "locked database", send_to_two_tags):
        time.sleep(12)        # past busy_timeout (5 s) and the writer's deadline (10 s)
    wait_until(lambda: lmtp_mx.queue_size() == 0, timeout=120, what="an empty queue")
    time.sleep(2)
    assert arrived(sink, "locked database") == 1
    assert "but recording it failed" in lmtp_mx.tmail_log() and "trying again" in lmtp_mx.tmail_log()


def test_a_worker_killed_after_the_250_before_the_record_sends_no_second_copy(lmtp_mx, sink):
    """The forward went out, and its process died before it could record it
    (held up here by a locked database): Postfix retries, and the retry, in
    a new worker, finds the note the first one left in the daemon's shared
    file the moment the 250 came."""
    with forwarded_while_the_database_is_locked(lmtp_mx, sink, "killed before the record",
                                                lambda: send(lmtp_mx, "killed before the record")):
        for pid in workers_of(lmtp_mx.daemon.pid):
            os.kill(pid, signal.SIGKILL)
    lmtp_mx.flush()
    wait_until(lambda: "its process ended before recording it" in lmtp_mx.tmail_log(), timeout=60,
               what="the retry to find the note")
    wait_until(lambda: lmtp_mx.queue_size() == 0, timeout=60, what="an empty queue")
    time.sleep(1)
    assert arrived(sink, "killed before the record") == 1


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_workers_end_with_the_daemon_however_it_ends(lmtp_mx, how):
    """However it ends (SIGTERM from a service manager or a person, or
    SIGKILL), its workers end too."""
    wait_until(lambda: len(workers_of(lmtp_mx.daemon.pid)) == 2, what="two LMTP workers")
    workers = workers_of(lmtp_mx.daemon.pid)
    lmtp_mx.daemon.send_signal(how)
    lmtp_mx.daemon.wait(20)
    wait_until(lambda: not any(running(pid) for pid in workers), what="the workers to end")
    if how == signal.SIGTERM:       # libmilter's signal thread took it: an orderly stop
        assert lmtp_mx.daemon.returncode == 0 and "tmail daemon stopped" in lmtp_mx.tmail_log()
    lmtp_mx.start_daemon()
    wait_until(lambda: len(workers_of(lmtp_mx.daemon.pid)) == 2, what="two new workers")


def test_with_no_worker_processes_the_daemon_delivers_itself(sink):
    """[daemon] lmtp_processes = 0: the LMTP listener is the daemon's own."""
    mx = Instance(sink.port, transport="lmtp", config={"daemon": {"lmtp_processes": 0}})
    try:
        mx.setup()
        mx.tmail("alias", "add", "crew", "--domain", "d.test", "--to", "crew@real.test")
        send(mx, "no workers")
        sink.wait_for(lambda m: b"Subject: no workers" in m.data, timeout=60)
        assert workers_of(mx.daemon.pid) == []
        assert "postfix/tmail-lmtp" in mx.maillog() and "(in this process)" in mx.tmail_log()
    finally:
        mx.teardown()


def test_a_delivery_in_progress_when_the_daemon_is_stopped_is_finished_once(lmtp_mx, sink):
    """SIGTERM (systemctl stop, an upgrade) while a forward is under way:
    it is finished and answered 250, and no copy is sent again."""
    lmtp_mx.zone.silent.add("_dmarc.slow.test")     # its DMARC lookup waits out the DNS timeout
    outcome = []

    def attempt():
        try:
            lmtp_attempt(lmtp_mx, "4QSTOPPING", b"Received: from a (a [192.0.2.1]) by mx.fwd.test "
                         b"(Postfix) with ESMTP id 4QSTOPPING; Sat, 28 Nov 2026 10:00:00 +0000\n"
                         b"From: alice@slow.test\nSubject: while stopping\n\nhi\n")
            outcome.append("250")
        except (smtplib.SMTPException, OSError) as exc:
            outcome.append(repr(exc))
    thread = threading.Thread(target=attempt)
    thread.start()
    time.sleep(0.7)       # the delivery is under way: its DMARC lookup takes 2 s
    lmtp_mx.daemon.send_signal(signal.SIGTERM)
    thread.join(60)
    lmtp_mx.daemon.wait(60)
    assert outcome == ["250"] and lmtp_mx.daemon.returncode == 0
    sink.wait_for(lambda m: b"Subject: while stopping" in m.data, timeout=30)
    lmtp_mx.start_daemon()
    time.sleep(2)
    assert arrived(sink, "while stopping") == 1
