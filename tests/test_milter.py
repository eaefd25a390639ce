"""The milter adapter driven by pymilter's TestCtx (no MTA), on a real SQLite store."""
from datetime import datetime, timezone

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx

from tmail.core import replies
from tmail.core.resolve import Policy
from tmail.core.srs import SrsCodec
from tmail.core.verdict import AliasRecord
from tmail.db import migrate
from tmail.db.engine import make_engine
from tmail.db.store import Store
from tmail.defaults import ROLE_LOCAL_PARTS
from tmail.mailpath.milter import make_factory
from tmail.mailpath.service import Service

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


@pytest.fixture
def service(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        store = Store(conn)
        store.add_domain("d.test", NOW)
        store.add_alias(AliasRecord(local="shop", domain="d.test", destinations=("me@x.test",),
                                    created_at=NOW, blocked=("@spam.test",)))
    policy = Policy("+", ROLE_LOCAL_PARTS, "admin@x.test", SrsCodec([b"s"], "srs.d.test"))
    return Service(engine, policy, ("127.0.0.1", 1), clock=lambda: NOW)


def drive(service, sender, rcpt):
    ctx = MilterCtx()
    Milter.factory = make_factory(service)
    assert ctx._connect() == Milter.CONTINUE
    assert ctx._envfrom(f"<{sender}>") in (Milter.CONTINUE, Milter.NOREPLY)
    return ctx._envrcpt(f"<{rcpt}>"), ctx._reply


def test_negotiates_only_mail_and_rcpt(service):
    # The MTA offers to skip every step; pymilter clears the bits of the
    # steps the class wants. What is left set is skipped.
    offered = 0
    for pair in Milter.OPTIONAL_CALLBACKS.values():
        for bit in pair:
            offered |= bit
    skipped = offered & ~make_factory(service).protocol_mask()
    for step in (Milter.P_NOCONNECT, Milter.P_NOHELO, Milter.P_NOHDRS, Milter.P_NOBODY,
                 Milter.P_NOEOH, Milter.P_NODATA, Milter.P_NOUNKNOWN):
        assert skipped & step
    assert not skipped & Milter.P_NOMAIL and not skipped & Milter.P_NORCPT
    assert skipped & Milter.P_NR_MAIL and not skipped & Milter.P_NR_RCPT  # no reply awaited to MAIL


def test_accepts_active_and_foreign_recipients(service):
    assert drive(service, "a@b.test", "shop+x@d.test")[0] == Milter.CONTINUE
    assert drive(service, "a@b.test", "x@elsewhere.test")[0] == Milter.CONTINUE


@pytest.mark.parametrize("sender,rcpt,reply", [
    ("a@b.test", "nobody@d.test", replies.UNKNOWN_ALIAS),
    ("x@spam.test", "shop@d.test", replies.SENDER_BLOCKED),
    ("", "SRS0=xxxx=AA=b.test=a@srs.d.test", replies.SRS_INVALID),
])
def test_rejections_carry_the_named_reply(service, sender, rcpt, reply):
    code, got = drive(service, sender, rcpt)
    assert code == Milter.REJECT
    assert got[:3] == (reply.code, reply.xcode, reply.text)


def test_internal_error_is_a_tempfail(service):
    service.engine.dispose()
    service.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    service._domains_at = float("-inf")
    code, got = drive(service, "a@b.test", "shop@d.test")
    assert code == Milter.TEMPFAIL
    assert got[:3] == (replies.TEMPFAIL.code, replies.TEMPFAIL.xcode, replies.TEMPFAIL.text)


def test_percent_in_reply_text_is_escaped(service, monkeypatch):
    monkeypatch.setattr(replies, "_BY_KIND", {**replies._BY_KIND})
    odd = replies.Reply("550", "5.1.1", "100% unknown")
    from tmail.core.verdict import Kind
    replies._BY_KIND[Kind.UNKNOWN] = odd
    assert drive(service, "a@b.test", "nobody@d.test")[1][2] == "100%% unknown"


def test_a_new_domain_is_known_as_soon_as_postfix_tables_change(service, tmp_path):
    table = tmp_path / "domains"
    table.write_text("d.test OK\n")
    service.domains_map = str(table)
    assert drive(service, "a@b.test", "x@new.test")[0] == Milter.CONTINUE  # not ours yet
    with service.engine.begin() as conn:
        Store(conn).add_domain("new.test", NOW)
    table.write_text("d.test OK\nnew.test OK\n")  # what `tmail domain add` does after its commit
    code, reply = drive(service, "a@b.test", "x@new.test")
    assert code == Milter.REJECT and reply[:2] == (replies.UNKNOWN_ALIAS.code, replies.UNKNOWN_ALIAS.xcode)
