"""The lifecycle of temporary addresses, through the real Postfix."""
import json
import secrets
import smtplib
import threading
import time

import pytest
from conftest_db import scratch_database
from harness import Instance, send_at_once, smtp_reply, wait_until
from sink import Sink

from tmail.core import replies


def message(subject: str) -> bytes:
    return (f"From: alice@orig.test\r\nTo: x@d.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@orig.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n").encode()


def rcpt_reply(mx, rcpt):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail("alice@orig.test")
        return client.rcpt(rcpt)


def expired_reply():
    return smtp_reply(replies.EXPIRED)


def test_idle_expiry_is_refused_at_rcpt(mx):
    mx.tmail("alias", "add", "sleepy", "--domain", "d.test", "--to", "me@real.test", "--idle", "2s")
    assert rcpt_reply(mx, "sleepy@d.test")[0] == 250
    time.sleep(2.5)
    assert rcpt_reply(mx, "sleepy@d.test") == expired_reply()


def test_date_expiry_is_refused_at_rcpt(mx):
    mx.tmail("alias", "add", "dated", "--domain", "d.test", "--to", "me@real.test", "--ttl", "2s")
    time.sleep(2.5)
    assert rcpt_reply(mx, "dated@d.test") == expired_reply()


def test_drop_mode_discards_for_that_recipient_only(mx, sink):
    mx.tmail("alias", "add", "dropme", "--domain", "d.test", "--to", "dropped@real.test",
             "--expires", "2020-01-01", "--on-expiry", "drop")
    mx.tmail("alias", "add", "keepme", "--domain", "d.test", "--to", "kept@real.test")
    with smtplib.SMTP("127.0.0.1", mx.smtp_port) as client:
        refused = client.sendmail("alice@orig.test", ["dropme@d.test", "keepme@d.test"], message("drop-and-keep"))
    assert refused == {}  # the sender sees success for both
    [msg] = sink.wait_for(lambda m: b"drop-and-keep" in m.data)
    assert msg.rcpts == ["kept@real.test"]
    time.sleep(2)
    assert not sink.to("dropped@real.test")
    assert "discarded: alias expired (drop mode)" in mx.tmail_log()


def test_three_messages_allowed_five_sent(mx, sink):
    mx.tmail("alias", "add", "three", "--domain", "d.test", "--to", "three@real.test", "--max-messages", "3")
    outcomes = []
    for i in range(5):
        try:
            with smtplib.SMTP("127.0.0.1", mx.smtp_port) as client:
                client.sendmail("alice@orig.test", ["three@d.test"], message(f"three-{i}"))
            outcomes.append("sent")
        except smtplib.SMTPRecipientsRefused as exc:
            outcomes.append(exc.recipients["three@d.test"])
    assert outcomes == ["sent"] * 3 + [expired_reply()] * 2
    sink.wait_for(lambda m: len(sink.to("three@real.test")) >= 3)
    time.sleep(1)
    assert len(sink.to("three@real.test")) == 3


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def any_db(request, mx, sink):
    """The session's instance (SQLite), or a private one on PostgreSQL or MariaDB."""
    if request.param == "sqlite":
        yield mx, sink
        return
    with scratch_database(request.param, "tmail_e2e") as url:
        own_sink = Sink()
        instance = Instance(own_sink.port, db_url=url)
        try:
            instance.setup()
            yield instance, own_sink
        finally:
            instance.teardown()
            own_sink.close()


def test_fifty_parallel_sessions_no_tempfail_and_exact_counts(any_db):
    """Fifty sessions at once, each to an unlimited alias, an alias allowed
    25 and an unknown address: not one 451 (SQLite included), exactly 25
    accepted for the limited alias, every count exact."""
    mx, sink = any_db
    tag = secrets.token_hex(3)
    free, limited = f"free{tag}", f"lim{tag}"
    mx.tmail("alias", "add", free, "--domain", "d.test", "--to", f"{free}@real.test")
    mx.tmail("alias", "add", limited, "--domain", "d.test", "--to", f"{limited}@real.test",
             "--max-messages", "25")
    start = threading.Barrier(50)
    codes: list[tuple[str, int]] = []

    def session(i):
        with mx.client(timeout=60) as client:
            client.ehlo()
            start.wait()
            client.mail("alice@orig.test")
            accepted = []
            for rcpt in (free, limited, f"nobody{tag}"):
                code = client.rcpt(f"{rcpt}@d.test")[0]
                codes.append((rcpt, code))
                accepted += [rcpt] if code == 250 else []
            code = client.data(message(f"{tag}-{i}"))[0]
            codes.extend((rcpt, code) for rcpt in accepted)   # end of DATA: 250 for each, or not

    threads = [threading.Thread(target=session, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # no tempfail of the database kind; the limited alias may say 451 4.2.1
    # (at its limit while other sessions are still open: ask again later)
    assert not [c for c in codes if c[1] // 100 == 4 and c[0] != limited], codes
    assert codes.count((limited, 250)) == 25 * 2 and codes.count((free, 250)) == 50 * 2
    assert {c for c in codes if c[0] == limited} <= {(limited, 250), (limited, 550), (limited, 451)}
    sink.wait_for(lambda m: len(sink.to(f"{free}@real.test")) >= 50, timeout=120)
    sink.wait_for(lambda m: len(sink.to(f"{limited}@real.test")) >= 25, timeout=60)

    def shown(local):
        return json.loads(mx.tmail("alias", "show", f"{local}@d.test", "--json").stdout)["alias"]
    wait_until(lambda: shown(limited)["refused"] == 25, what="refusals counted")
    assert (shown(free)["forwarded"], shown(limited)["forwarded"]) == (50, 25)
    assert len(sink.to(f"{free}@real.test")) == 50 and len(sink.to(f"{limited}@real.test")) == 25
    assert "could not" not in mx.tmail_log() and "recording it failed" not in mx.tmail_log()


def test_twenty_at_once_to_an_alias_allowed_five(any_db):
    mx, sink = any_db
    local = f"race{secrets.token_hex(3)}"
    mx.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test", "--max-messages", "5")
    outcomes = send_at_once([mx], 20, f"{local}@d.test", lambda i: message(f"{local}-{i}"), outside=False)
    assert outcomes.count("sent") == 5, outcomes
    # refused for good, or (while the five are still in their sessions) for now
    assert outcomes.count(expired_reply()) + outcomes.count(smtp_reply(replies.BUSY)) == 15, outcomes
    sink.wait_for(lambda m: len(sink.to(f"{local}@real.test")) >= 5, timeout=60)
    time.sleep(2)
    assert len(sink.to(f"{local}@real.test")) == 5
    shown = json.loads(mx.tmail("alias", "show", f"{local}@d.test", "--json").stdout)["alias"]
    assert (shown["forwarded"], shown["refused"], shown["state"]) == (5, 15, "expired")


def test_one_warning_then_none(mx, sink):
    mx.tmail("domain", "set", "d.test", "--warn-before", "2d")
    mx.tmail("alias", "add", "warnme", "--domain", "d.test", "--to", "owner@real.test", "--ttl", "1d")
    try:
        first = json.loads(mx.tmail("notify", "--json").stdout)
        assert "warnme@d.test" in first["warned"]
        [notice] = sink.wait_for(lambda m: m.rcpts == ["owner@real.test"])
        assert b"Subject: Your address warnme@d.test expires on" in notice.data
        assert b"tmail alias extend warnme@d.test" in notice.data
        assert notice.mail_from == "postmaster@srs.fwd.test"
        second = json.loads(mx.tmail("notify", "--json").stdout)
        assert "warnme@d.test" not in second["warned"] and second["changed"] is False
        time.sleep(1)
        assert len(sink.to("owner@real.test")) == 1
    finally:
        mx.tmail("domain", "set", "d.test", "--warn-before", "none")


def test_purge_and_reuse_protection(mx):
    mx.tmail("alias", "add", "oldie", "--domain", "d.test", "--to", "me@real.test", "--expires", "2020-01-01")
    purged = json.loads(mx.tmail("purge", "--json").stdout)
    assert "oldie@d.test" in purged["removed"]
    assert rcpt_reply(mx, "oldie@d.test")[0] == 550
    again = mx.tmail("alias", "add", "oldie", "--domain", "d.test", "--to", "new@real.test", check=False)
    assert again.returncode == 1 and "quarantined" in again.stderr


def test_stats_agree_with_what_was_sent(mx, sink):
    mx.tmail("domain", "add", "stats.test", as_root=True)  # as an admin would: Postfix is reloaded
    mx.tmail("alias", "add", "s1", "--domain", "stats.test", "--to", "s1@real.test")
    for i in range(3):
        with smtplib.SMTP("127.0.0.1", mx.smtp_port) as client:
            client.sendmail("alice@orig.test", ["s1@stats.test"], message(f"stats-{i}"))
    for _ in range(2):
        assert rcpt_reply(mx, "nobody@stats.test")[0] == 550
    sink.wait_for(lambda m: len(sink.to("s1@real.test")) >= 3)
    time.sleep(1)
    stats = json.loads(mx.tmail("stats", "--json").stdout)
    [row] = [r for r in stats["domains"] if r["domain"] == "stats.test"]
    assert row["forwarded"] == {"24h": 3, "7d": 3} and row["refused"] == {"24h": 2, "7d": 2}
    prom = mx.tmail("stats", "--prometheus", "-").stdout
    assert 'tmail_messages{domain="stats.test",kind="forwarded",window="24h"} 3' in prom
    assert 'tmail_messages{domain="stats.test",kind="refused",window="7d"} 2' in prom
