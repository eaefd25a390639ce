"""A 250 is a promise: what was accepted for a recipient is forwarded for
it exactly once, whatever happens between the RCPT and the delivery (a
limit reached, a date passed, Postfix retrying, a queue id reused, a pipe
that gave up waiting)."""
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import dkim
import pytest
from harness import DELIVER, wait_until

from tmail.keys import generate_private


def held(mx, hold: bool):
    mx.postconf(f"defer_transports={'tmail' if hold else ''}")
    mx.reload()
    if not hold:
        mx.flush()


def send_one(mx, rcpt, subject=None, sender="sender@orig.test"):
    """RCPT, and DATA if accepted (no subject: RCPT only, nothing sent)."""
    with mx.client() as client:
        client.ehlo()
        client.mail(sender)
        got = client.rcpt(rcpt)
        if got[0] == 250 and subject:
            client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
        return got


def arrived(sink, subject):
    return [m for m in sink.messages if f"Subject: {subject}\r\n".encode() in m.data]


@pytest.mark.parametrize("mode", ["drop", "reject"])
def test_n_allowed_messages_held_in_the_queue_are_n_forwarded(mx, sink, mode):
    local = f"three-{mode}"
    mx.tmail("alias", "add", local, "--domain", "d.test", "--to", "held@real.test",
             "--max-messages", "3", "--on-expiry", mode)
    held(mx, True)
    try:
        replies_got = [send_one(mx, f"{local}@d.test", f"{local} {i}")[0] for i in range(5)]
        # drop: the extra two are accepted and then dropped; reject: refused
        assert replies_got == [250] * 3 + ([250] * 2 if mode == "drop" else [550] * 2)
    finally:
        held(mx, False)
    wait_until(lambda: len([m for m in sink.messages if f"{local} ".encode() in m.data]) >= 3,
               timeout=60, what="three forwarded")
    wait_until(lambda: mx.queue_size() == 0, timeout=60, what="an empty queue")
    got = sorted(s for i in range(5) for s in [f"{local} {i}"] if arrived(sink, s))
    assert got == [f"{local} 0", f"{local} 1", f"{local} 2"]


def test_a_date_limit_passing_in_the_queue_does_not_undo_the_250(mx, sink):
    soon = (datetime.now(timezone.utc) + timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    mx.tmail("alias", "add", "soon-gone", "--domain", "d.test", "--to", "held@real.test",
             "--expires", soon)
    held(mx, True)
    try:
        assert send_one(mx, "soon-gone@d.test", "before the date")[0] == 250
        wait_until(lambda: send_one(mx, "soon-gone@d.test")[0] == 550, timeout=15,
                   interval=0.5, what="the alias to expire")
    finally:
        held(mx, False)
    sink.wait_for(lambda m: b"Subject: before the date" in m.data, timeout=60)


def deliver(mx, queue_id, body: bytes, recipient="shop2@d.test", timeout=600):
    return subprocess.run([DELIVER, "--socket", f"{mx.run_dir}/deliver.sock", "--timeout", str(timeout),
                           queue_id, "sender@orig.test", recipient],
                          input=body, capture_output=True, user="tmail")


@pytest.fixture(scope="module")
def shop2(mx):
    mx.tmail("alias", "add", "shop2", "--domain", "d.test", "--to", "dup@real.test")
    return mx


def test_two_attempts_at_once_forward_one_copy(shop2, sink):
    body = b"Subject: concurrent\n\n" + b"x" * 5_000_000 + b"\n"
    results = [None, None]

    def attempt(i):
        results[i] = deliver(shop2, "4QCONCUR", body)
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], results
    assert sorted(b"already forwarded" in r.stdout for r in results) == [False, True]
    sink.wait_for(lambda m: b"Subject: concurrent" in m.data)
    time.sleep(1)
    assert len(arrived(sink, "concurrent")) == 1


def test_a_reused_queue_id_is_a_new_message_not_a_duplicate(shop2, sink):
    """Short queue ids come round again: a new message under an old id is
    forwarded; the same message again is not."""
    first = b"Received: by mx.fwd.test (Postfix) id 4QREUSE; Sat, 28 Nov 2026 01:00:00\nSubject: reuse one\n\nx\n"
    second = first.replace(b"01:00:00", b"09:00:00").replace(b"reuse one", b"reuse two")
    for body in (first, first, second):
        assert deliver(shop2, "4QREUSE", body).returncode == 0
    sink.wait_for(lambda m: b"reuse two" in m.data)
    time.sleep(1)
    assert len(arrived(sink, "reuse one")) == 1 and len(arrived(sink, "reuse two")) == 1


def test_an_attempt_whose_pipe_gave_up_is_abandoned_before_it_is_sent(shop2, sink):
    """The pipe's alarm fired (Postfix will retry): the daemon must not go
    on and send the message as well. Here verifying a signature waits for a
    DNS server that never answers, past the pipe's patience."""
    shop2.zone.silent.add("s._domainkey.silent.test")
    key = generate_private("rsa", 1024)
    msg = b"From: a@silent.test\r\nSubject: slow dns\r\n\r\nbody\r\n"
    body = (dkim.sign(msg, b"s", b"silent.test", key) + msg).replace(b"\r\n", b"\n")
    # --timeout 16: the daemon stops 15 s before it, i.e. after 1 s
    result = deliver(shop2, "4QSLOWDNS", body, timeout=16)
    assert result.returncode == 75 and b"abandoned" in result.stdout, result.stdout
    assert deliver(shop2, "4QSLOWDNS", body).returncode == 0
    sink.wait_for(lambda m: b"Subject: slow dns" in m.data)
    time.sleep(1)
    assert len(arrived(sink, "slow dns")) == 1


def test_one_copy_per_alias_whatever_the_tags(shop2, sink):
    """One message to fifty +tag addresses of one alias: one copy leaves
    (fifty would turn one SMTP transaction into a mail bomb)."""
    with shop2.client() as client:
        client.sendmail("sender@orig.test", [f"shop2+t{i}@d.test" for i in range(50)] + ["shop2@d.test"],
                        b"Subject: tagged fifty\r\n\r\nonce\r\n")
    sink.wait_for(lambda m: b"Subject: tagged fifty" in m.data)
    wait_until(lambda: shop2.queue_size() == 0, timeout=60, what="every tag delivered")
    time.sleep(1)
    assert len(arrived(sink, "tagged fifty")) == 1
