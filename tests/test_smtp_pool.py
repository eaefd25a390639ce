"""Reinjection sessions kept open between messages (SmtpPool), against a
real SMTP server on loopback: reused after a 250 only, a session the
server closed is replaced before any data goes out, and a refusal or an
abandoned message never leaves a session behind."""
from __future__ import annotations

import socket
import time

import pytest
from sink import Sink

from tmail.mailpath.smtp import Abandoned, SmtpError, SmtpPool


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def sink(request):
    """The envelope in one write (RFC 2920), or command by command to a
    server that does not offer PIPELINING."""
    server = Sink(pipelining=request.param)
    yield server
    server.close()


def send(pool, subject: str, to="a@dest.test", before_end=None):
    return pool.transaction("srs@fwd.test", [to], False, [f"Subject: {subject}\n\nhi\n".encode()], before_end)


def test_one_session_carries_many_messages(sink):
    pool = SmtpPool("127.0.0.1", sink.port, timeout=5)
    for i in range(5):
        assert "queued" in send(pool, f"m{i}")
    sink.wait_for(lambda m: b"Subject: m4" in m.data)
    assert len(sink.messages) == 5 and sink.connections == 1


def test_a_session_the_server_closed_is_replaced_and_nothing_is_sent_twice(sink):
    pool = SmtpPool("127.0.0.1", sink.port, timeout=5)
    send(pool, "first")
    [(client, _since)] = pool._idle
    client.sock.shutdown(socket.SHUT_RDWR)       # as smtpd does past its timeout
    send(pool, "second")
    sink.wait_for(lambda m: b"Subject: second" in m.data)
    assert [m.data.count(b"Subject: second") for m in sink.messages] == [0, 1]
    assert sink.connections == 2


def test_a_refusal_or_an_abandoned_message_closes_the_session(sink):
    sink.reject.add("gone@dest.test")
    pool = SmtpPool("127.0.0.1", sink.port, timeout=5)
    with pytest.raises(SmtpError) as refused:
        send(pool, "refused", to="gone@dest.test")
    assert refused.value.code == 550 and pool._idle == []
    started = time.monotonic()
    with pytest.raises(Abandoned):
        send(pool, "abandoned", before_end=lambda: False)
    assert pool._idle == [] and time.monotonic() - started < 4   # dropped, not waited out (5 s)
    send(pool, "after")
    sink.wait_for(lambda m: b"Subject: after" in m.data)
    assert [m.data.split(b"\n")[0] for m in sink.messages] == [b"Subject: after\r"]
    assert sink.connections == 3


def test_an_idle_session_is_not_reused_past_its_time(sink):
    pool = SmtpPool("127.0.0.1", sink.port, timeout=5, idle=0)
    send(pool, "one")
    send(pool, "two")
    assert sink.connections == 2


def test_a_refused_destination_among_several_sends_to_none(sink):
    """All destinations or none: a partial forward could not be retried
    without sending the others a second copy."""
    sink.reject.add("gone@dest.test")
    pool = SmtpPool("127.0.0.1", sink.port, timeout=20)
    started = time.monotonic()
    with pytest.raises(SmtpError) as refused:
        pool.transaction("srs@fwd.test", ["a@dest.test", "gone@dest.test", "b@dest.test"], False,
                         [b"Subject: partial\n\nhi\n"])
    assert refused.value.code == 550 and pool._idle == []
    # the session is dropped at once: a QUIT sent into DATA waited out the timeout
    assert time.monotonic() - started < 10
    send(pool, "after")
    sink.wait_for(lambda m: b"Subject: after" in m.data)
    assert not any(b"Subject: partial" in m.data for m in sink.messages)
