from datetime import datetime, timedelta, timezone

import pytest

from tmail.core.replies import (
    DISABLED,
    EXPIRED,
    SENDER_BLOCKED,
    SRS_INVALID,
    SRS_NOT_BOUNCE,
    UNKNOWN_ALIAS,
    reply_for,
)
from tmail.core.resolve import Policy, resolve
from tmail.core.srs import SrsCodec
from tmail.core.verdict import AliasRecord, Kind, OnExpiry
from tmail.defaults import ROLE_LOCAL_PARTS

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
CODEC = SrsCodec([b"k1"], "srs.fwd.test")
POLICY = Policy("+", ROLE_LOCAL_PARTS, "admin@real.test", CODEC)


class MemoryLookup:
    """The in-memory twin of the database store (the AliasLookup port)."""

    def __init__(self, *records):
        self.records = {(r.local.casefold(), r.domain): r for r in records}
        self.domains = {"d.test"}

    def is_tmail_domain(self, name):
        return name in self.domains

    def get_alias(self, key, domain):
        return self.records.get((key, domain))


def alias(**kw):
    base = dict(local="Shop", domain="d.test", destinations=("me@real.test",),
                created_at=NOW - timedelta(days=1))
    base.update(kw)
    return AliasRecord(**base)


def verdict(record, rcpt="shop@d.test", sender="someone@else.test"):
    lookup = MemoryLookup(record) if record else MemoryLookup()
    return resolve(lookup, POLICY, rcpt, sender, NOW)


def test_active_alias_forwards_case_insensitively_and_with_tags():
    v = verdict(alias(), rcpt="SHOP+promo@D.Test")
    assert v.kind is Kind.FORWARD and v.destinations == ("me@real.test",)
    assert reply_for(v) is None


def test_the_whole_local_part_is_an_alias_before_its_base():
    """As Postfix looks up user+ext before user: with "-" as the delimiter
    (set after both aliases existed), team-sales@ is team-sales's."""
    lookup = MemoryLookup(alias(local="team", destinations=("other@real.test",)),
                          alias(local="team-sales", destinations=("sales@real.test",)))
    dash = Policy("-", ROLE_LOCAL_PARTS, "admin@real.test", CODEC)
    assert resolve(lookup, dash, "team-sales@d.test", "", NOW).destinations == ("sales@real.test",)
    assert resolve(lookup, dash, "team-x@d.test", "", NOW).destinations == ("other@real.test",)


def test_not_ours_passes_untouched():
    v = verdict(alias(), rcpt="x@other.test")
    assert v.kind is Kind.NOT_OURS and v.accepts


def test_unknown():
    v = verdict(None)
    assert v.kind is Kind.UNKNOWN and reply_for(v) is UNKNOWN_ALIAS


def test_disabled():
    assert reply_for(verdict(alias(enabled=False))) is DISABLED


@pytest.mark.parametrize("record,fragment", [
    (alias(expires_at=NOW), "expired on"),
    (alias(max_messages=3, forwarded=3), "limit of 3"),
    (alias(idle_limit=timedelta(days=30), created_at=NOW - timedelta(days=31)), "idle"),
    (alias(idle_limit=timedelta(days=30), created_at=NOW - timedelta(days=90),
           last_forwarded_at=NOW - timedelta(days=31)), "idle"),
])
def test_expired(record, fragment):
    v = verdict(record)
    assert v.kind is Kind.EXPIRED and fragment in v.reason
    assert reply_for(v) is EXPIRED


def test_still_live_just_before_each_limit():
    record = alias(expires_at=NOW + timedelta(seconds=1), max_messages=3, forwarded=2,
                   idle_limit=timedelta(days=30), last_forwarded_at=NOW - timedelta(days=29))
    assert verdict(record).kind is Kind.FORWARD


def test_expired_in_drop_mode_is_accepted_for_discarding():
    v = verdict(alias(expires_at=NOW, on_expiry=OnExpiry.DROP))
    assert v.kind is Kind.EXPIRED and v.drop and v.accepts and reply_for(v) is None


@pytest.mark.parametrize("pattern", ["bad@spam.test", "@spam.test"])
def test_blocked_sender(pattern):
    v = verdict(alias(blocked=(pattern,)), sender="Bad@SPAM.test")
    assert v.kind is Kind.BLOCKED and reply_for(v) is SENDER_BLOCKED
    assert verdict(alias(blocked=(pattern,)), sender="good@ok.test").kind is Kind.FORWARD


def test_role_addresses_reach_the_admin():
    v = verdict(None, rcpt="Postmaster@d.test")
    assert v.kind is Kind.ROLE and v.destinations == ("admin@real.test",)


def test_srs_bounce_verdicts():
    local = CODEC.forward("alice", "orig.test", now=NOW.timestamp()).split("@")[0]
    ok = verdict(None, rcpt=f"{local}@srs.fwd.test", sender="")
    assert ok.kind is Kind.SRS_BOUNCE and ok.destinations == ("alice@orig.test",)
    not_bounce = verdict(None, rcpt=f"{local}@srs.fwd.test", sender="x@y.test")
    assert reply_for(not_bounce) is SRS_NOT_BOUNCE
    forged = verdict(None, rcpt="SRS0=AAAA=AB=orig.test=alice@srs.fwd.test", sender="")
    assert reply_for(forged) is SRS_INVALID
