"""The milter adapter driven by pymilter's TestCtx (no MTA), on a real SQLite store."""
import socket
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


def connected(service, helo="mx.b.test", ip="192.0.2.7"):
    """A TestCtx past CONNECT and HELO (TestCtx._connect would close the
    connection on the NOREPLY that a no-reply callback returns)."""
    ctx = MilterCtx()
    Milter.factory = make_factory(service)
    ctx._negotiate()
    assert Milter.connect_callback(ctx, "client.b.test", socket.AF_INET, ip) == Milter.NOREPLY
    assert ctx.getpriv().hello(helo) == Milter.NOREPLY
    return ctx


def drive(service, sender, rcpt):
    ctx = connected(service)
    assert ctx._envfrom(f"<{sender}>") in (Milter.CONTINUE, Milter.NOREPLY)
    return ctx._envrcpt(f"<{rcpt}>"), ctx._reply


def test_spf_result_is_recorded_only_for_tmail_mail(service):
    from io import BytesIO

    from tmail.core.authresults import Spf
    asked = []
    service.spf_check = lambda ip, sender, helo: asked.append((ip, sender, helo)) or Spf("pass", sender, helo)
    service.authserv_id = "mx.d.test"
    for rcpt, expected in (("shop@d.test", "mx.d.test; spf=pass smtp.mailfrom=a@b.test smtp.helo=mx.b.test"),
                           ("x@elsewhere.test", None)):
        ctx = connected(service)
        ctx._envfrom("<a@b.test>")
        assert ctx._envrcpt(f"<{rcpt}>") == Milter.CONTINUE
        ctx._msg = {}
        ctx._body = BytesIO()
        assert ctx._eom() == Milter.CONTINUE
        assert ctx._msg.get("Authentication-Results") == expected
    assert asked == [("192.0.2.7", "a@b.test", "mx.b.test")]


def test_negotiates_only_what_it_uses(service):
    # The MTA offers to skip every step; pymilter clears the bits of the
    # steps the class wants. What is left set is skipped.
    offered = 0
    for pair in Milter.OPTIONAL_CALLBACKS.values():
        for bit in pair:
            offered |= bit
    skipped = offered & ~make_factory(service).protocol_mask()
    for step in (Milter.P_NOHDRS, Milter.P_NOBODY, Milter.P_NOEOH, Milter.P_NODATA, Milter.P_NOUNKNOWN):
        assert skipped & step
    for step in (Milter.P_NOCONNECT, Milter.P_NOHELO, Milter.P_NOMAIL, Milter.P_NORCPT):
        assert not skipped & step
    # no reply awaited to CONNECT, HELO and MAIL: only RCPT costs a round trip
    for step in (Milter.P_NR_CONN, Milter.P_NR_HELO, Milter.P_NR_MAIL):
        assert skipped & step
    assert not skipped & Milter.P_NR_RCPT


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
