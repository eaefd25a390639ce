"""The pure core of replies through an alias: reverse aliases, who may send
through one, the header a reply leaves with, and the edits to forwarded mail."""
from datetime import datetime, timedelta, timezone

import pytest

from tmail.core import headers as hdr
from tmail.core import rfc5322
from tmail.core.contacts import Contact, is_reply_local, new_reply_local, reply_targets
from tmail.core.dmarc import aligned_survivor
from tmail.core.replyauth import Proof, authorise, check_reply_header
from tmail.core.replywrite import forward_edits, rewrite_reply, utc_date
from tmail.core.resolve import Policy, resolve
from tmail.core.scrub import scrub
from tmail.core.signing import DkimResult
from tmail.core.verdict import AliasRecord, Kind

NOW = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
DESTS = ("pat@provider.test",)


def box(text):
    return tuple(rfc5322.parse_mailbox_list(text))


def test_reverse_aliases_are_long_random_and_recognised():
    made = {new_reply_local() for _ in range(200)}
    assert len(made) == 200
    assert all(len(local) == 24 and is_reply_local(local) for local in made)
    assert not is_reply_local("a" * 23) and not is_reply_local("A" * 24) and not is_reply_local("1" * 24)


# -- who may send a reply -----------------------------------------------------
def dkim_pass(domain, result="pass"):
    return DkimResult(result, domain, "s", ("from",))


@pytest.mark.parametrize("proof", [
    Proof("pat@provider.test", box("Pat <pat@provider.test>"), dkim=(dkim_pass("provider.test"),)),
    Proof("pat@provider.test", box("PAT@Provider.test"), spf="pass", spf_domain="provider.test"),
    Proof("bounces@mail.provider.test", box("pat@provider.test"), dkim=(dkim_pass("mail.provider.test"),)),
    Proof("pat@provider.test", box("pat@provider.test"), authenticated=True),
])
def test_a_destination_proven_by_aligned_spf_dkim_or_sasl_may_reply(proof):
    assert authorise(DESTS, proof).allowed


@pytest.mark.parametrize("proof, why", [
    (Proof("pat@provider.test", box("pat@provider.test")), "neither SPF nor DKIM"),
    (Proof("pat@provider.test", box("pat@provider.test"), spf="fail", spf_domain="provider.test",
           dkim=(dkim_pass("provider.test", "fail"),)), "neither SPF nor DKIM"),
    # the attacker's own domain passes, but it is not the From domain
    (Proof("mallory@evil.test", box("pat@provider.test"), spf="pass", spf_domain="evil.test",
           dkim=(dkim_pass("evil.test"),)), "neither SPF nor DKIM"),
    # envelope is the destination, From is the attacker's signed domain
    (Proof("pat@provider.test", box("mallory@evil.test"), dkim=(dkim_pass("evil.test"),)), "not a destination"),
    (Proof("mallory@evil.test", box("mallory@evil.test"), spf="pass", spf_domain="evil.test"),
     "not a destination"),
    # someone else at the same provider: their own address signed, the person's as envelope sender
    (Proof("pat@provider.test", box("mallory@provider.test"), spf="pass", spf_domain="provider.test",
           dkim=(dkim_pass("provider.test"),)), "not a destination"),
    # a signature over part of the body only (l=): the rest could be anyone's
    (Proof("x@evil.test", box("pat@provider.test"),
           dkim=(DkimResult("pass", "provider.test", "s", ("from",), partial_body=True),)), "whole body"),
    (Proof("pat@provider.test", box("pat@provider.test, mallory@evil.test"), authenticated=True),
     "exactly one author"),
    (Proof("pat@provider.test", (), authenticated=True), "exactly one author"),
    # a signature by a look-alike, not the organisational domain
    (Proof("pat@provider.test", box("pat@provider.test"), dkim=(dkim_pass("provider.test.evil.test"),)),
     "neither SPF nor DKIM"),
])
def test_anyone_else_is_refused(proof, why):
    decision = authorise(DESTS, proof)
    assert not decision.allowed and not decision.temporary and why in decision.told


def test_the_refusal_does_not_tell_a_wrong_guess_from_an_unproven_right_one():
    right = authorise(DESTS, Proof("x@evil.test", box("pat@provider.test")))
    wrong = authorise(DESTS, Proof("x@evil.test", box("pat.guess@provider.test")))
    assert right.reason == wrong.reason and right.told != wrong.told


def test_a_dns_failure_is_temporary_not_a_refusal():
    decision = authorise(DESTS, Proof("pat@provider.test", box("pat@provider.test"), spf="temperror",
                                      spf_domain="provider.test", dkim=(dkim_pass("provider.test", "temperror"),)))
    assert not decision.allowed and decision.temporary


def fields(text: str) -> list[bytes]:
    return hdr.split_fields(text.encode())


@pytest.mark.parametrize("to_cc, problem", [
    ("To: a <aaaaaaaaaaaaaaaaaaaaaaaa@reply.test>\n", None),
    ("To: aaaaaaaaaaaaaaaaaaaaaaaa@reply.test\nCc: bob@third.test\n", "bob@third.test"),
    ("To: aaaaaaaaaaaaaaaaaaaaaaaa@REPLY.test, x@reply.test.evil\n", "x@reply.test.evil"),
    ("To: team: bob@third.test;\n", "bob@third.test"),
    ("To: bbbbbbbbbbbbbbbbbbbbbbbb@reply.test\n", "not one of this alias's"),
    ("To: <unclosed@reply.test\n", "cannot be read"),
])
def test_a_reply_may_name_only_its_aliass_reverse_aliases(to_cc, problem):
    found = check_reply_header(fields(to_cc + "Subject: x\n"), "reply.test",
                               lambda local: local == "a" * 24)
    assert (found is None) if problem is None else (problem in found)


# -- what leaves -------------------------------------------------------------------
REPLY = (
    "Received: from mail.provider.test by mx\n"
    "DKIM-Signature: v=1; d=provider.test; s=x; b=abc\n"
    "Authentication-Results: mx.provider.test; spf=pass\n"
    "X-Originating-IP: [198.51.100.1]\n"
    "Return-Path: <pat@provider.test>\n"
    "From: Pat Real <pat@provider.test>\n"
    "To: Alice <aaaaaaaaaaaaaaaaaaaaaaaa@reply.test>\n"
    "Subject: Re: hello\n"
    "Date: Sat, 28 Nov 2026 11:00:00 -0800\n"
    "Message-ID: <CAx1@mail.provider.test>\n"
    "In-Reply-To: <m1@contact.test>\n"
    "References: <m0@contact.test> <CAx0@mail.provider.test> <CAold@MAIL.PROVIDER.TEST> <m1@contact.test>\n"
    "User-Agent: Mail/1.0\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/alternative; boundary="b1"\n'
)


def test_a_reply_keeps_only_whitelisted_fields_and_names_nothing_private():
    out = b"".join(rewrite_reply(
        fields(REPLY), author="Shop <shop@d.test>", to=["Alice <alice@contact.test>"], cc=[],
        message_id="<ours1@d.test>", ids={"<CAx0@mail.provider.test>": "<ours0@d.test>"},
        private_domains=frozenset({"provider.test"}), now=NOW))
    assert b"provider" not in out.lower() and b"pat" not in out.lower() and b"198.51" not in out
    got = {hdr.name_of(f): hdr.value_of(f) for f in hdr.split_fields(out)}
    assert got == {
        "from": "Shop <shop@d.test>", "to": "Alice <alice@contact.test>",
        "date": "Sat, 28 Nov 2026 19:00:00 +0000", "message-id": "<ours1@d.test>",
        "in-reply-to": "<m1@contact.test>",
        # mapped, kept, or (a private ID with no mapping, in any case) left out
        "references": "<m0@contact.test> <ours0@d.test> <m1@contact.test>",
        "subject": "Re: hello", "mime-version": "1.0",
        "content-type": 'multipart/alternative; boundary="b1"'}


def test_user_agent_only_when_configured():
    kept = rewrite_reply(fields(REPLY), author="<shop@d.test>", to=["<a@c.test>"], cc=[], message_id="<o@d.test>",
                         ids={}, private_domains=frozenset(), now=NOW, keep_user_agent=True)
    assert b"User-Agent: Mail/1.0\n" in kept


@pytest.mark.parametrize("value", [None, "", "not a date", "Sat, 28 Nov 2026 11:00:00"])
def test_an_unreadable_or_zoneless_date_becomes_now(value):
    assert utc_date(value, NOW) == "Sat, 28 Nov 2026 12:00:00 +0000"


def test_no_new_field_takes_a_line_break_from_the_alias_or_contact():
    with pytest.raises(ValueError):
        rewrite_reply(fields(REPLY), author="Shop\r\nBcc: x@evil.test <shop@d.test>", to=[], cc=[],
                      message_id="<o@d.test>", ids={}, private_domains=frozenset(), now=NOW)
    # display names are encoded, never written raw
    formatted = rfc5322.format_mailbox("Alice\r\nBcc: evil@x.test", "r@reply.test")
    assert "\n" not in formatted and "\r" not in formatted


# -- forwarding to the person --------------------------------------------------------
def mailboxes_of(text):
    parsed = fields(text)

    def of(name):
        found = [f for f in parsed if hdr.name_of(f) == name]
        return rfc5322.parse_mailbox_list(hdr.value_of(found[0])) if found else None
    return of


def test_replies_go_to_reply_to_else_from():
    assert [m.address for m in reply_targets(mailboxes_of("From: a@x.test\nReply-To: b@y.test, c@z.test\n"))] \
        == ["b@y.test", "c@z.test"]
    assert [m.address for m in reply_targets(mailboxes_of("From: A <a@x.test>\n"))] == ["a@x.test"]
    assert reply_targets(mailboxes_of("From: a@x.test, b@x.test\n")) == []
    assert reply_targets(mailboxes_of("From: a@[192.0.2.1]\n")) == []


def test_forward_edits_name_the_reverse_alias_and_the_persons_own_ids():
    original = fields("From: a@x.test\nReply-To: b@y.test\nIn-Reply-To: <ours@d.test>\n"
                      "References: <m1@x.test> <ours@d.test>\nSubject: s\n")
    out, changed = forward_edits(original, ["B <r@reply.test>"], {"<ours@d.test>": "<CAx@provider.test>"})
    got = [(hdr.name_of(f), hdr.value_of(f)) for f in out]
    assert ("reply-to", "B <r@reply.test>") in got and ("reply-to", "b@y.test") not in got
    assert ("in-reply-to", "<CAx@provider.test>") in got
    assert ("references", "<m1@x.test> <CAx@provider.test>") in got
    assert changed == {"reply-to", "in-reply-to", "references"}
    # nothing to map: the threading fields stay byte for byte
    same, changed = forward_edits(original, None, {})
    assert same == original and changed == frozenset()


def test_an_original_signature_over_a_changed_field_no_longer_survives():
    signed_reply_to = DkimResult("pass", "x.test", "s", ("from", "reply-to", "subject"))
    signed_other = DkimResult("pass", "x.test", "s", ("from", "subject"))
    counts = {"from": 1, "reply-to": 1, "subject": 1}
    assert aligned_survivor("x.test", [signed_reply_to], counts)
    assert not aligned_survivor("x.test", [signed_reply_to], counts, changed=frozenset({"reply-to"}))
    assert aligned_survivor("x.test", [signed_other], counts, changed=frozenset({"reply-to"}))


# -- the verdict for a reverse alias ---------------------------------------------------
class Book:
    def __init__(self, record):
        self.record = record
        self.contact = Contact(alias_id=1, address="alice@contact.test", reply_local="a" * 24)

    def is_tmail_domain(self, name):
        return name == "d.test"

    def get_alias(self, key, domain):
        return None

    def get_contact(self, local):
        return (self.contact, self.record) if local == "a" * 24 and self.record else None


POLICY = Policy("+", frozenset({"postmaster"}), "admin@x.test", reply_domain="reply.test")
ALIAS = AliasRecord(local="shop", domain="d.test", destinations=DESTS, id=1, created_at=NOW,
                    domain_replies=True)


@pytest.mark.parametrize("record, rcpt, sender, kind", [
    (ALIAS, "a" * 24 + "@reply.test", "pat@provider.test", Kind.REPLY),
    (ALIAS, "A" * 24 + "@Reply.Test", "pat@provider.test", Kind.REPLY),
    (ALIAS, "a" * 24 + "@reply.test", "", Kind.REPLY_BOUNCE),
    (ALIAS, "b" * 24 + "@reply.test", "pat@provider.test", Kind.UNKNOWN),
    (None, "a" * 24 + "@reply.test", "pat@provider.test", Kind.UNKNOWN),
    (AliasRecord(**{**ALIAS.__dict__, "replies": False}), "a" * 24 + "@reply.test", "p@x.test", Kind.REPLIES_OFF),
    (AliasRecord(**{**ALIAS.__dict__, "domain_replies": False}), "a" * 24 + "@reply.test", "p@x.test",
     Kind.REPLIES_OFF),
    (AliasRecord(**{**ALIAS.__dict__, "unverified": DESTS, "owner_id": 3}), "a" * 24 + "@reply.test",
     "p@x.test", Kind.UNVERIFIED),
    (ALIAS, "postmaster@reply.test", "p@x.test", Kind.ROLE),
])
def test_the_verdict_for_a_reverse_alias(record, rcpt, sender, kind):
    assert resolve(Book(record), POLICY, rcpt, sender, NOW).kind is kind


def test_an_inactive_aliass_reverse_aliases_follow_the_admins_choice():
    expired = AliasRecord(**{**ALIAS.__dict__, "expires_at": NOW - timedelta(days=1)})
    disabled = AliasRecord(**{**ALIAS.__dict__, "enabled": False})
    strict = Policy("+", frozenset(), "admin@x.test", reply_domain="reply.test", replies_when_inactive=False)
    for record, kind in ((expired, Kind.EXPIRED), (disabled, Kind.DISABLED)):
        assert resolve(Book(record), POLICY, "a" * 24 + "@reply.test", "p@x.test", NOW).kind is Kind.REPLY
        assert resolve(Book(record), strict, "a" * 24 + "@reply.test", "p@x.test", NOW).kind is kind


# -- scrubbing ------------------------------------------------------------------------------
def test_scrub_replaces_the_address_in_text_parts_only():
    raw = (b'Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b\n'
           b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
           b"On Monday, Pat <PAT@provider.test> wrote: caf=C3=A9\n--b\n"
           b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
           b"cGF0QHByb3ZpZGVyLnRlc3Q=\n--b--\n")
    out, count = scrub(raw, ["pat@provider.test"], "shop@d.test")
    assert count == 1
    assert b"provider.test" not in out.split(b"application/octet-stream")[0].lower()
    assert b"shop@d.test" in out and b"cGF0QHByb3ZpZGVyLnRlc3Q=" in out    # the attachment untouched
    assert scrub(raw.replace(b"PAT@provider.test", b"someone"), ["pat@provider.test"], "x@d.test") == (
        raw.replace(b"PAT@provider.test", b"someone"), 0)


@pytest.mark.parametrize("name", ["Shop\r\nBcc: x", "Shop\u202egnp.exe", "S" * 65])
def test_a_display_name_is_plain_text_of_bounded_length(name):
    from tmail.core.aliases import check_display_name
    with pytest.raises(ValueError):
        check_display_name(name)


def test_content_ids_naming_the_real_domain_are_left_out_or_scrubbed():
    out = b"".join(rewrite_reply(fields(REPLY + "Content-ID: <part1.AB@provider.test>\n"), author="<s@d.test>",
                                 to=["<a@c.test>"], cc=[], message_id="<o@d.test>", ids={},
                                 private_domains=frozenset({"provider.test"}), now=NOW))
    assert b"provider" not in out.lower()
    raw = (b'Content-Type: multipart/related; boundary="b"\nMIME-Version: 1.0\n\n--b\n'
           b'Content-Type: text/html\n\n<img src="cid:part1.AB@Provider.test">\n--b\n'
           b"Content-Type: image/png\nContent-ID: <part1.AB@provider.test>\nContent-Transfer-Encoding: base64\n\n"
           b"iVBORw0KGgo=\n--b--\n")
    scrubbed, count = scrub(raw, ["pat@provider.test"], "shop@d.test")
    assert count == 2 and b"provider" not in scrubbed.lower()
    assert b'cid:part1.AB@d.test"' in scrubbed and b"<part1.AB@d.test>" in scrubbed
