"""The lifecycle core: expiry time, purge, warnings, notices, statistics."""
from collections import Counter
from datetime import datetime, timedelta, timezone

from tmail.core.lifecycle import expired_since, expiry_notice, purge_due, warning_due
from tmail.core.stats import domain_stats, prometheus_text
from tmail.core.verdict import AliasRecord

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def alias(**kw):
    base = dict(local="shop", domain="d.test", destinations=("me@x.test",), created_at=NOW - 100 * DAY)
    base.update(kw)
    return AliasRecord(**base)


def test_expired_since_takes_the_earliest_limit():
    assert expired_since(alias()) is None
    assert expired_since(alias(expires_at=NOW - 5 * DAY)) == NOW - 5 * DAY
    used = alias(max_messages=2, forwarded=2, last_forwarded_at=NOW - 40 * DAY, expires_at=NOW - DAY)
    assert expired_since(used) == NOW - 40 * DAY
    idle = alias(idle_limit=10 * DAY, last_forwarded_at=NOW - 50 * DAY)
    assert expired_since(idle) == NOW - 40 * DAY


def test_purge_waits_for_the_grace_period():
    assert not purge_due(alias(expires_at=NOW - 29 * DAY), NOW, 30 * DAY)
    assert purge_due(alias(expires_at=NOW - 30 * DAY), NOW, 30 * DAY)
    assert not purge_due(alias(max_messages=5, forwarded=4), NOW, 30 * DAY)


def test_warning_once_per_expiry_date_and_only_inside_the_lead_time():
    soon = alias(expires_at=NOW + DAY)
    assert warning_due(soon, NOW, 2 * DAY)
    assert not warning_due(soon, NOW, None)
    assert not warning_due(alias(expires_at=NOW + 3 * DAY), NOW, 2 * DAY)
    assert not warning_due(alias(expires_at=NOW - DAY), NOW, 2 * DAY)
    assert not warning_due(alias(expires_at=NOW + DAY, warned_for=NOW + DAY), NOW, 2 * DAY)
    assert warning_due(alias(expires_at=NOW + DAY, warned_for=NOW - 5 * DAY), NOW, 2 * DAY)  # extended
    assert not warning_due(alias(expires_at=NOW + DAY, enabled=False), NOW, 2 * DAY)


def test_expiry_notice_says_which_alias_when_and_how_to_extend():
    notice = expiry_notice(alias(expires_at=NOW + 2 * DAY, destinations=("a@x.test", "b@x.test")),
                           sender="postmaster@srs.d.test", now=NOW, host="srs.d.test").decode()
    head, body = notice.split("\n\n", 1)
    assert "To: <a@x.test>, <b@x.test>" in head and "Auto-Submitted: auto-generated" in head
    assert "Subject: Your address shop@d.test expires on 2026-11-29" in head
    assert "2026-11-29 12:00 UTC" in body and "tmail alias extend shop@d.test" in body


def test_stats_and_prometheus_agree():
    states = Counter({("d.test", "active"): 3, ("d.test", "expired"): 1})
    events = {"24h": {("d.test", "forwarded"): 2}, "7d": {("d.test", "forwarded"): 5, ("d.test", "refused"): 1}}
    [row] = domain_stats(["d.test"], states, events)
    assert row == {"domain": "d.test", "aliases": {"active": 3, "expired": 1, "disabled": 0},
                   "forwarded": {"24h": 2, "7d": 5}, "refused": {"24h": 0, "7d": 1}}
    text = prometheus_text([row])
    assert 'tmail_aliases{domain="d.test",state="active"} 3\n' in text
    assert 'tmail_messages{domain="d.test",kind="forwarded",window="7d"} 5\n' in text
    assert "# TYPE tmail_messages gauge" in text
