"""Faults: the database stopped, the daemon killed. Nothing is lost, nothing
is delivered twice, and mail that is not tmail's keeps flowing."""
import secrets
import smtplib

import pytest
import sqlalchemy as sa

from conftest_db import PG_ADMIN
from harness import Instance, smtp_reply, wait_until
from sink import Sink
from tcp_proxy import Proxy
from tmail.core import replies


@pytest.fixture(scope="module")
def pg_proxy():
    proxy = Proxy(("127.0.0.1", 5432)).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def faulty(pg_proxy):
    schema = f"tmail_e2e_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sink = Sink()
    url = (f"postgresql+psycopg://postgres@127.0.0.1:{pg_proxy.port}/test"
           f"?options=-csearch_path%3D{schema}&connect_timeout=3")
    mx = Instance(sink.port, db_url=url)
    try:
        mx.setup()
        mx.tmail("alias", "add", "shop", "--domain", "d.test", "--to", "me@real.test")
        yield mx, sink
    finally:
        mx.teardown()
        sink.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def send(mx, rcpt, subject):
    body = (f"From: alice@orig.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@orig.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n")
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        return client.sendmail("alice@orig.test", [rcpt], body.encode())


def rcpt_reply(mx, rcpt):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("alice@orig.test")
        return client.rcpt(rcpt)


def count(sink, subject):
    return sum(1 for m in sink.messages if f"Subject: {subject}\r\n".encode() in m.data)


def hold_tmail_deliveries(mx, hold: bool):
    mx.postconf(f"defer_transports={'tmail' if hold else ''}")
    mx.reload()


def survive(mx, sink, subject, cause, repair, while_down):
    """Queue a message for tmail, cause the outage, check `while_down` and
    that other mail still flows and tmail's delivery is deferred, repair:
    the queued message then arrives exactly once."""
    hold_tmail_deliveries(mx, True)
    send(mx, "shop@d.test", subject)
    cause()
    try:
        while_down()
        send(mx, "bob@elsewhere.test", f"{subject}-other-mail")
        sink.wait_for(lambda m: f"{subject}-other-mail".encode() in m.data)
        deferred_before = mx.maillog().count("relay=tmail, ")
        hold_tmail_deliveries(mx, False)
        mx.flush()
        wait_until(lambda: mx.maillog().count("relay=tmail, ") > deferred_before
                   and "status=deferred" in mx.maillog(), what="a deferred delivery attempt")
        assert count(sink, subject) == 0
    finally:
        repair()
    mx.flush()
    sink.wait_for(lambda m: f"Subject: {subject}\r\n".encode() in m.data, timeout=60)
    wait_until(lambda: mx.queue_size() == 0, timeout=30, what="an empty queue")
    assert count(sink, subject) == 1


def test_database_down_tempfails_at_rcpt_and_queued_mail_waits(faulty, pg_proxy):
    mx, sink = faulty

    def while_down():
        assert rcpt_reply(mx, "shop@d.test") == smtp_reply(replies.TEMPFAIL)

    survive(mx, sink, "queued-before-outage", pg_proxy.stop, pg_proxy.start, while_down)
    assert "status=75 4.3.0" in mx.tmail_log()
    send(mx, "shop@d.test", "after-db-outage")
    sink.wait_for(lambda m: b"after-db-outage" in m.data)


def test_daemon_killed_defers_tmail_mail_and_other_mail_flows(faulty):
    mx, sink = faulty

    def while_down():
        code, text = rcpt_reply(mx, "shop@d.test")
        assert 400 <= code < 500, (code, text)       # the guard's default action

    survive(mx, sink, "queued-before-kill", mx.kill_daemon, mx.start_daemon, while_down)
    assert "tmail daemon unavailable" in mx.maillog()
    assert rcpt_reply(mx, "shop@d.test")[0] == 250
