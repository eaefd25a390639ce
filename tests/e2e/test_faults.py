"""Faults: the database stopped, the daemon killed. Nothing is lost, nothing
is delivered twice, and mail that is not tmail's keeps flowing."""
import secrets
import time

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
    # A short verdict deadline keeps the test quick; Postfix's milter
    # command_timeout (20 s) is what it must stay well under.
    mx = Instance(sink.port, db_url=url, config={"daemon": {"verdict_timeout_s": 4},
                                                "database": {"timeout_s": 2}})
    try:
        mx.setup()
        mx.tmail("alias", "add", "shop", "--domain", "d.test", "--to", "me@real.test")
        mx.tmail("alias", "add", "limited", "--domain", "d.test", "--to", "me@real.test",
                 "--max-messages", "100")
        mx.tmail("alias", "add", "off", "--domain", "d.test", "--to", "me@real.test")
        mx.tmail("alias", "disable", "off@d.test")
        yield mx, sink
    finally:
        mx.teardown()
        sink.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def send(mx, rcpt, subject, outside=None):
    body = (f"From: alice@orig.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@orig.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n")
    # mail to other domains comes from inside (mynetworks): outsiders may not relay
    outside = rcpt.endswith("@d.test") if outside is None else outside
    with mx.client(outside=outside) as client:
        return client.sendmail("alice@orig.test", [rcpt], body.encode())


def rcpt_reply(mx, rcpt):
    with mx.client() as client:
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


def timed_rcpt(client, rcpt):
    started = time.monotonic()
    reply = client.rcpt(rcpt)
    return reply, time.monotonic() - started


def test_a_held_lock_is_a_451_in_time_and_the_session_stays_checked(faulty):
    """A row lock in PostgreSQL on the alias: the RCPT that must count a
    message waits for it. The milter answers 451 by its deadline, before
    Postfix's command_timeout would switch it off for the session (and
    accept a disabled alias after it)."""
    mx, sink = faulty
    locker = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    schema = mx.db_url.split("search_path%3D")[1].split("&")[0]
    with locker.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql(f"SELECT * FROM {schema}.aliases WHERE local = 'limited' FOR UPDATE")
        with mx.client() as client:
            client.ehlo()
            client.mail("alice@orig.test")
            reply, took = timed_rcpt(client, "limited@d.test")
            assert reply == smtp_reply(replies.TEMPFAIL) and took < 10, (reply, took)
            assert client.rcpt("off@d.test") == smtp_reply(replies.DISABLED)
            assert client.rcpt("nobody@d.test") == smtp_reply(replies.UNKNOWN_ALIAS)
        conn.exec_driver_sql("ROLLBACK")
    locker.dispose()
    assert rcpt_reply(mx, "limited@d.test")[0] == 250


def test_a_database_that_swallows_packets_is_a_451_in_time(faulty, pg_proxy):
    """The network to the database stops passing anything, connections
    stay open: every verdict is a 451 within the deadline, other mail flows,
    and once the network is back tmail answers again on its own."""
    mx, sink = faulty
    pg_proxy.pause()
    try:
        with mx.client() as client:
            client.ehlo()
            client.mail("alice@orig.test")
            for rcpt in ("shop@d.test", "off@d.test", "limited@d.test"):
                reply, took = timed_rcpt(client, rcpt)
                assert reply == smtp_reply(replies.TEMPFAIL) and took < 10, (rcpt, reply, took)
        send(mx, "bob@elsewhere.test", "while-swallowed-other-mail", outside=False)
        sink.wait_for(lambda m: b"while-swallowed-other-mail" in m.data)
    finally:
        pg_proxy.resume()
    wait_until(lambda: rcpt_reply(mx, "shop@d.test")[0] == 250, timeout=30,
               what="verdicts once the network is back")
    assert rcpt_reply(mx, "off@d.test") == smtp_reply(replies.DISABLED)


def test_a_long_database_outage_leaves_other_mail_alone(faulty, pg_proxy):
    """Whether a recipient is tmail's is Postfix's answer (its transport
    table), not the database's: minutes into an outage, mail for other
    domains is accepted at once while tmail's recipients get 451."""
    mx, sink = faulty
    pg_proxy.stop()
    try:
        time.sleep(7)     # past any cache of what the database said
        with mx.client(outside=False) as client:
            client.ehlo()
            client.mail("alice@orig.test")
            reply, took = timed_rcpt(client, "bob@elsewhere.test")
            assert reply[0] == 250 and took < 1, (reply, took)
            assert client.rcpt("shop@d.test")[0] == 451
    finally:
        pg_proxy.start()
    wait_until(lambda: rcpt_reply(mx, "shop@d.test")[0] == 250, timeout=30, what="recovery")
