"""The milter adapter driven by pymilter's TestCtx (no MTA), on a real SQLite store.

TestCtx stands in for Postfix, macros included: {rcpt_mailer} and
{rcpt_addr} are what Postfix's address resolver would say.
"""
import socket
import threading
import time
from datetime import datetime, timezone
from io import BytesIO

import Milter
import pytest
from Milter.testctx import TestCtx as MilterCtx

from tmail.core import replies
from tmail.core.authresults import Spf
from tmail.core.resolve import Policy
from tmail.core.srs import SrsCodec
from tmail.core.verdict import AliasRecord
from tmail.db import migrate
from tmail.db.engine import make_engine
from tmail.db.store import Store
from tmail.defaults import ROLE_LOCAL_PARTS
from tmail.mailpath.milter import TRANSPORT, make_factory
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
        store.add_alias(AliasRecord(local="few", domain="d.test", destinations=("me@x.test",),
                                    created_at=NOW, max_messages=1))
    policy = Policy("+", ROLE_LOCAL_PARTS, "admin@x.test", SrsCodec([b"s"], "srs.d.test"))
    return Service(engine, policy, clock=lambda: NOW, deadline=2)


def connected(service, helo="mx.b.test", ip="192.0.2.7"):
    """A TestCtx past CONNECT and HELO (TestCtx._connect would close the
    connection on the NOREPLY that a no-reply callback returns)."""
    ctx = MilterCtx()
    Milter.factory = make_factory(service)
    ctx._negotiate()
    assert Milter.connect_callback(ctx, "client.b.test", socket.AF_INET, ip) == Milter.NOREPLY
    assert ctx.getpriv().hello(helo) == Milter.NOREPLY
    return ctx


def rcpt(ctx, raw, resolved=None, mailer=TRANSPORT):
    """RCPT TO:<raw>, with the macros Postfix sends for it."""
    ctx._macros.pop("{rcpt_addr}", None)
    ctx._macros.pop("{rcpt_mailer}", None)
    if mailer is not None:
        ctx._setsymval("{rcpt_mailer}", mailer)
        ctx._setsymval("{rcpt_addr}", resolved if resolved is not None else raw.lower())
    return ctx._envrcpt(f"<{raw}>")


def mail(ctx, sender, *params):
    assert ctx._envfrom(f"<{sender}>", *params) in (Milter.CONTINUE, Milter.NOREPLY)


def drive(service, sender, recipient, **macros):
    ctx = connected(service)
    mail(ctx, sender)
    return rcpt(ctx, recipient, **macros), ctx._reply


def end(ctx, headers=(), queue_id="4QTEST"):
    for name, value in headers:
        ctx._priv.header(name, value)
    ctx._setsymval("i", queue_id)
    ctx._body = BytesIO()
    return ctx._eom()


def receipt(service, queue_id, recipient):
    with service.read() as store:
        return store.receipt(queue_id, recipient)


def forwarded_count(service, local):
    with service.read() as store:
        return store.get_alias(local, "d.test").forwarded


def test_negotiates_only_what_it_uses(service):
    # The MTA offers to skip every step; pymilter clears the bits of the
    # steps the class wants. What is left set is skipped.
    offered = 0
    for pair in Milter.OPTIONAL_CALLBACKS.values():
        for bit in pair:
            offered |= bit
    skipped = offered & ~make_factory(service).protocol_mask()
    for step in (Milter.P_NOEOH, Milter.P_NOUNKNOWN):
        assert skipped & step
    # DATA: ACCEPT for a message none of whose recipients is tmail's (no more of it is sent);
    # the body only for replies (DKIM): any other message SKIPs it at its first chunk
    for step in (Milter.P_NOCONNECT, Milter.P_NOHELO, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NODATA,
                 Milter.P_NOHDRS, Milter.P_NOBODY):
        assert not skipped & step
    assert make_factory(service).protocol_mask() & Milter.P_HDR_LEADSPC == 0   # values as they came
    # no reply awaited to CONNECT, HELO, MAIL and the header fields: only
    # RCPT, DATA and the end of tmail's messages cost a round trip
    for step in (Milter.P_NR_CONN, Milter.P_NR_HELO, Milter.P_NR_MAIL, Milter.P_NR_HDR):
        assert skipped & step
    assert not skipped & Milter.P_NR_RCPT


def test_asks_postfix_for_the_resolved_recipient(service):
    ctx = MilterCtx()
    Milter.factory = make_factory(service)
    ctx._negotiate()
    assert ctx._symlist[Milter.M_ENVRCPT] == {b"{rcpt_addr}", b"{rcpt_mailer}"}
    assert ctx._symlist[Milter.M_EOM] == {b"i"}


def test_the_negotiation_worked_out_once_is_pymilters_own(service):
    ours, theirs = MilterCtx(), MilterCtx()
    Milter.factory = make_factory(service)
    assert ours._negotiate() == Milter.CONTINUE
    Milter.factory = type("Plain", (make_factory(service),), {"negotiate": Milter.Base.negotiate})
    assert theirs._negotiate() == Milter.CONTINUE
    assert ours._symlist == theirs._symlist and ours._protocol == theirs._protocol
    assert ours._symlist[Milter.M_ENVFROM] == {b"{mail_addr}", b"{auth_authen}"}


def test_a_message_with_none_of_tmails_recipients_is_let_go_at_data(service):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    assert rcpt(ctx, "someone@elsewhere.test", mailer="smtp") == Milter.CONTINUE
    assert ctx._data() == Milter.ACCEPT          # Postfix sends nothing more of it
    mail(ctx, "a@b.test")                        # the next message on the connection
    assert rcpt(ctx, "someone@elsewhere.test", mailer="smtp") == Milter.CONTINUE
    assert rcpt(ctx, "shop@d.test") == Milter.CONTINUE
    assert ctx._data() == Milter.CONTINUE        # tmail's: its header and end are looked at


def test_accepts_active_recipients_and_leaves_other_transports_alone(service):
    assert drive(service, "a@b.test", "shop+x@d.test")[0] == Milter.CONTINUE
    # Not routed to tmail: not looked at, even at a tmail domain.
    assert drive(service, "a@b.test", "nobody@d.test", mailer="smtp")[0] == Milter.CONTINUE


@pytest.mark.parametrize("sender,recipient,reply", [
    ("a@b.test", "nobody@d.test", replies.UNKNOWN_ALIAS),
    ("x@spam.test", "shop@d.test", replies.SENDER_BLOCKED),
    ("", "SRS0=xxxx=AA=b.test=a@srs.d.test", replies.SRS_INVALID),
    ("a@b.test", "someone@routed-but-unknown.test", replies.UNKNOWN_ALIAS),
    ("a\x1b[2J@b.test", "shop@d.test", replies.BAD_SENDER),
    ("a" * 990 + "@b.test", "shop@d.test", replies.SENDER_UNFORWARDABLE),
])
def test_rejections_carry_the_named_reply(service, sender, recipient, reply):
    code, got = drive(service, sender, recipient)
    assert code == Milter.REJECT
    assert got[:3] == (reply.code, reply.xcode, reply.text)


@pytest.mark.parametrize("raw", ["nobody@d.test.", '"nobody"@d.test', "nobody%d.test@mx.fwd.test",
                                 "d.test!nobody@mx.fwd.test", "@relay.test:nobody@d.test",
                                 "NOBODY@D.TEST"])
def test_the_verdict_is_for_the_address_postfix_delivers_to(service, raw):
    """Whatever form the client wrote, Postfix's resolved address decides."""
    code, got = drive(service, "a@b.test", raw, resolved="nobody@d.test")
    assert code == Milter.REJECT and got[:2] == ("550", "5.1.1")


def test_the_senders_case_is_kept_when_postfix_folded_it(service):
    from tmail.core.resolve import delivered_address
    assert delivered_address("Shop+News@D.test.", "shop+news@d.test") == "Shop+News@d.test"
    assert delivered_address("x%d.test@mx.test", "x@d.test") == "x@d.test"


def test_macros_missing_is_a_tempfail_not_a_pass(service):
    code, got = drive(service, "a@b.test", "shop@d.test", mailer=None)
    assert code == Milter.TEMPFAIL and got[:2] == (replies.TEMPFAIL.code, replies.TEMPFAIL.xcode)


def test_receipts_record_the_verdicts_spf_and_smtputf8_without_touching_the_message(service):
    asked = []
    service.spf_check = lambda ip, sender, helo: asked.append((ip, sender, helo)) or Spf("pass", sender, helo)
    ctx = connected(service)
    mail(ctx, "a@b.test", "SMTPUTF8")
    assert rcpt(ctx, "shop@d.test") == Milter.CONTINUE
    assert rcpt(ctx, "bob@elsewhere.test", mailer="smtp") == Milter.CONTINUE
    assert end(ctx, queue_id="4QAAA") == Milter.CONTINUE
    assert not ctx._headerschanged       # other recipients share the message
    got = receipt(service, "4QAAA", "shop@d.test")
    assert (got.verdict, got.spf, got.helo, got.smtputf8) == ("forward", "pass", "mx.b.test", True)
    assert asked == [("192.0.2.7", "a@b.test", "mx.b.test")]
    # mail that is not tmail's: no SPF lookup, no receipt
    ctx = connected(service)
    mail(ctx, "a@b.test")
    rcpt(ctx, "bob@elsewhere.test", mailer="smtp")
    assert end(ctx, queue_id="4QBBB") == Milter.CONTINUE
    assert len(asked) == 1 and receipt(service, "4QBBB", "bob@elsewhere.test") is None


@pytest.mark.parametrize("headers", [
    [("Delivered-To", "shop@d.test")],
    [("Delivered-To", " <SHOP@d.test>")],
    [("Received", f"from hop{i}") for i in range(30)],
])
def test_loops_are_refused_at_end_of_data_and_counts_given_back(service, headers):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    assert rcpt(ctx, "shop@d.test") == Milter.CONTINUE
    assert rcpt(ctx, "few@d.test") == Milter.CONTINUE
    assert forwarded_count(service, "few") == 1
    assert end(ctx, headers) == Milter.REJECT
    assert ctx._reply[:2] == (replies.LOOP.code, replies.LOOP.xcode)
    wait_for(lambda: forwarded_count(service, "few") == 0)


@pytest.mark.parametrize("headers,recipient,refused", [
    ([("From", "Bank <security@bank.test>")], "shop@d.test", True),
    ([("From", "Bank <security@bank.test>"), ("DKIM-Signature", "v=1; d=bank.test")], "shop@d.test", False),
    ([("From", "Bank <security@bank.test>"), ("ARC-Seal", "i=1; cv=none")], "shop@d.test", False),
    ([("From", "Bank <security@bank.test>")], "postmaster@d.test", False),
])
def test_an_unsigned_message_failing_dmarc_p_reject_is_refused(service, headers, recipient, refused):
    from tmail.core import dmarc
    asked = []
    service.spf_check = lambda ip, sender, helo: Spf("fail", sender, helo)
    service.dmarc_check = lambda values, spf: asked.append(values) or dmarc.Result("fail", "bank.test", "reject")
    ctx = connected(service)
    mail(ctx, "security@bank.test")
    assert rcpt(ctx, recipient) == Milter.CONTINUE
    assert end(ctx, headers) == (Milter.REJECT if refused else Milter.CONTINUE)
    if refused:
        assert ctx._reply[:2] == (replies.DMARC_REJECT.code, replies.DMARC_REJECT.xcode)
        assert asked == [["Bank <security@bank.test>"]]
    else:
        assert asked == []


@pytest.mark.parametrize("slow", ["spf", "dmarc"])
def test_slow_dns_is_temperror_or_no_dmarc_verdict_never_a_451(service, slow):
    """SPF and DMARC share one trip to the DNS threads and its deadline:
    past it the message is accepted, with SPF as found if it was found."""
    from tmail.core import dmarc

    def spf_check(ip, sender, helo):
        time.sleep(service.deadline if slow == "spf" else 0)
        return Spf("pass", sender, helo)

    def dmarc_check(values, spf):
        time.sleep(service.deadline if slow == "dmarc" else 0)
        return dmarc.Result("fail", "bank.test", "reject")
    service.spf_check, service.dmarc_check = spf_check, dmarc_check
    ctx = connected(service)
    mail(ctx, "security@bank.test")
    assert rcpt(ctx, "shop@d.test") == Milter.CONTINUE
    started = time.monotonic()
    assert end(ctx, [("From", "Bank <security@bank.test>")], queue_id="4QSLOW") == Milter.CONTINUE
    assert time.monotonic() - started < service.deadline
    assert receipt(service, "4QSLOW", "shop@d.test").spf == ("temperror" if slow == "spf" else "pass")


def test_spf_waits_for_no_busy_dns_thread(service):
    """A sender domain whose DNS never answers holds DNS threads; the next
    messages go on without SPF (temperror) instead of waiting for one."""
    from tmail.mailpath import service as service_mod
    release = threading.Event()
    service.spf_check = lambda ip, sender, helo: release.wait(10) and Spf("pass", sender, helo)
    try:
        for _ in range(service_mod.DNS_THREADS):
            threading.Thread(target=service.ask_dns, args=(service.spf_check, "192.0.2.1", "a@b.test", "h"),
                             daemon=True).start()
        wait_for(lambda: service._dns_slots._value == 0, what="every DNS thread busy")
        with pytest.raises(service_mod.DeadlineExceeded, match="busy"):   # at once, not after a wait
            service.ask_dns(service.spf_check, "192.0.2.1", "a@b.test", "h")
    finally:
        release.set()


def test_twenty_nine_received_fields_are_no_loop(service):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    rcpt(ctx, "shop@d.test")
    assert end(ctx, [("Received", "x")] * 29 + [("Delivered-To", "other@d.test")]) == Milter.CONTINUE


def test_a_recipient_named_twice_is_counted_once(service):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    for form in ("few@d.test", "FEW@d.test", "few@d.test."):
        assert rcpt(ctx, form, resolved="few@d.test") == Milter.CONTINUE
    assert end(ctx) == Milter.CONTINUE and forwarded_count(service, "few") == 1


def test_tags_of_one_alias_are_one_message_for_its_limit(service):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    for tag in ("a", "b", "c"):
        assert rcpt(ctx, f"few+{tag}@d.test") == Milter.CONTINUE
    assert end(ctx, queue_id="4QTAGS") == Milter.CONTINUE and forwarded_count(service, "few") == 1
    counted = [receipt(service, "4QTAGS", f"few+{t}@d.test").counted for t in ("a", "b", "c")]
    assert counted == [True, False, False]


def test_a_limit_held_by_open_sessions_is_a_451_not_a_550(service):
    """A client that keeps RCPTs open must not make an alias refuse everyone
    for good: until those sessions end, others get 451 and try again."""
    holder = connected(service)
    mail(holder, "a@b.test")
    assert rcpt(holder, "few@d.test") == Milter.CONTINUE            # the only slot, still open
    code, got = drive(service, "c@d.test", "few@d.test")
    assert code == Milter.TEMPFAIL and got[:2] == (replies.BUSY.code, replies.BUSY.xcode)
    holder._abort()                                                 # the holder gives up
    wait_for(lambda: forwarded_count(service, "few") == 0)
    ctx = connected(service)
    mail(ctx, "c@d.test")
    assert rcpt(ctx, "few@d.test") == Milter.CONTINUE and end(ctx) == Milter.CONTINUE
    code, got = drive(service, "e@f.test", "few@d.test")          # now used up for good
    assert code == Milter.REJECT and got[:2] == (replies.EXPIRED.code, replies.EXPIRED.xcode)


def test_a_count_is_given_back_when_the_message_is_aborted(service):
    ctx = connected(service)
    mail(ctx, "a@b.test")
    assert rcpt(ctx, "few@d.test") == Milter.CONTINUE
    assert forwarded_count(service, "few") == 1
    ctx._abort()
    wait_for(lambda: forwarded_count(service, "few") == 0)


def test_internal_error_is_a_tempfail(service):
    service.engine.dispose()
    service.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    code, got = drive(service, "a@b.test", "shop@d.test")
    assert code == Milter.TEMPFAIL
    assert got[:3] == (replies.TEMPFAIL.code, replies.TEMPFAIL.xcode, replies.TEMPFAIL.text)


def test_a_database_that_does_not_answer_is_a_tempfail_within_the_deadline(service, monkeypatch):
    """The count at RCPT takes longer than the deadline (a held lock, a
    server that stalls): the milter answers 451 in time, and the count taken
    when the database finally answers is given back (the message was
    refused)."""
    slow_reserve, real_release = Store.reserve, service.release
    given_back = threading.Event()

    def reserve(store, alias_id):
        time.sleep(service.deadline + 1)
        return slow_reserve(store, alias_id)

    def release(ids):
        real_release(ids)
        given_back.set()
    monkeypatch.setattr(Store, "reserve", reserve)
    monkeypatch.setattr(service, "release", release)
    started = time.monotonic()
    code, got = drive(service, "a@b.test", "few@d.test")
    assert code == Milter.TEMPFAIL and got[:2] == ("451", "4.3.0")
    assert time.monotonic() - started < service.deadline + 1
    assert given_back.wait(10) and forwarded_count(service, "few") == 0
    monkeypatch.setattr(Store, "reserve", slow_reserve)
    assert drive(service, "a@b.test", "few@d.test")[0] == Milter.CONTINUE


def test_a_client_guessing_srs_addresses_is_slowed_down(service):
    """Each wrong guess of an SRS hash is a 550; after MAX_SRS_FAILURES in a
    window the client gets 450 for every SRS address, valid ones included,
    so that guessing the 4-character hash takes months, not an hour."""
    from tmail.mailpath.service import MAX_SRS_FAILURES
    valid = service.policy.srs.forward("a", "b.test", now=NOW.timestamp())
    for i in range(MAX_SRS_FAILURES):
        assert drive(service, "", f"SRS0=ab{i:02d}=AA=b.test=a@srs.d.test")[0] == Milter.REJECT
    code, got = drive(service, "", valid)
    assert code == Milter.TEMPFAIL and got[:2] == (replies.SRS_THROTTLED.code, replies.SRS_THROTTLED.xcode)
    other = connected(service, ip="198.51.100.9")          # another client is not held up
    mail(other, "")
    assert rcpt(other, valid) == Milter.CONTINUE


def test_a_refused_message_is_noted_in_the_alias_activity(service):
    """For the owner's page: when, from whom, and why it was refused."""
    from tmail.db.accounts import Accounts
    assert drive(service, "x@spam.test", "shop@d.test")[0] == Milter.REJECT

    def rows():
        with service.read() as store:
            return Accounts(store.conn).activity(store.get_alias("shop", "d.test").id)
    wait_for(lambda: rows(), what="an activity row")
    [row] = rows()
    assert (row.sender, row.verdict) == ("x@spam.test", "sender-blocked") and "blocked" in row.reason


def test_percent_in_reply_text_is_escaped(service, monkeypatch):
    monkeypatch.setattr(replies, "_BY_KIND", {**replies._BY_KIND})
    odd = replies.Reply("550", "5.1.1", "100% unknown")
    from tmail.core.verdict import Kind
    replies._BY_KIND[Kind.UNKNOWN] = odd
    assert drive(service, "a@b.test", "nobody@d.test")[1][2] == "100%% unknown"


def wait_for(check, what="condition", timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
