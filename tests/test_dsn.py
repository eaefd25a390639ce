"""Bounce rewriting: nothing of the destination reaches the original sender,
and only delivery status notifications are relayed."""
import base64
import quopri
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default

import pytest

from tmail.core.dsn import build_notice, parse_report

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)

POSTFIX_DSN = b"""From: MAILER-DAEMON@mx.real.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: SRS0=abcd=AA=orig.test=alice@srs.fwd.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not
be delivered to secret.person@real.test. <secret.person@real.test>: host said: 550 no

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.real.test

Final-Recipient: rfc822; secret.person@real.test
Original-Recipient: rfc822;secret.person@real.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <secret.person@real.test>: no such user

--B1
Content-Type: text/rfc822-headers

Delivered-To: secret.person@real.test
Received: from mx.fwd.test by mx.real.test for <secret.person@real.test>
Delivered-To: shop@d.test
From: Alice <alice@orig.test>
To: shop@d.test
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=
Message-ID: <m1@orig.test>

--B1--
"""


def is_alias(address):
    return address.endswith("@d.test")


def test_report_keeps_status_and_alias_only():
    report = parse_report(POSTFIX_DSN, is_alias)
    assert (report.action, report.status, report.alias) == ("failed", "5.1.1", "shop@d.test")
    assert dict(report.headers)["Message-ID"] == "<m1@orig.test>"


def test_notice_names_the_alias_never_the_destination():
    notice = build_notice(parse_report(POSTFIX_DSN, is_alias), to="alice@orig.test",
                          reporting_domain="srs.fwd.test", now=NOW)
    assert b"secret" not in notice.lower() and b"real.test" not in notice
    msg = message_from_bytes(notice, policy=default)
    assert msg.get_content_type() == "multipart/report"
    assert msg["To"].addresses[0].addr_spec == "alice@orig.test" and msg["Auto-Submitted"] == "auto-replied"
    status = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"][0]
    text = status.as_bytes()
    assert b"Final-Recipient: rfc822; shop@d.test" in text and b"Status: 5.1.1" in text


def test_plain_text_bounce_is_not_relayed():
    raw = b"From: MAILER-DAEMON@old.test\nSubject: failure notice\n\nSorry, secret@real.test said no.\n"
    assert parse_report(raw, is_alias) is None


AUTO_REPLY = b"""From: Secret Person <secret.person@real.test>
To: SRS0=abcd=AA=orig.test=alice@srs.fwd.test
Subject: Out of office: hello
Auto-Submitted: auto-replied
In-Reply-To: <m1@orig.test>
Content-Type: text/plain

I am away until Monday. Call me on +1 555 0100.
"""


def test_an_rfc3834_auto_reply_is_not_a_report():
    assert parse_report(AUTO_REPLY, is_alias) is None


@pytest.mark.parametrize("marker", [b"Precedence: auto_reply", b"X-Autoreply: yes"])
def test_a_vacation_reply_without_auto_submitted_is_not_a_report(marker):
    raw = AUTO_REPLY.replace(b"Auto-Submitted: auto-replied", marker)
    assert parse_report(raw, is_alias) is None


def test_a_report_inside_an_attached_message_does_not_count():
    raw = (b"From: secret.person@real.test\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="M"\n\n--M\nContent-Type: text/plain\n\nAway.\n'
           b"--M\nContent-Type: message/rfc822\n\n" + POSTFIX_DSN + b"\n--M--\n")
    assert parse_report(raw, is_alias) is None


def test_a_read_receipt_is_not_a_delivery_report():
    raw = POSTFIX_DSN.replace(b"report-type=delivery-status", b"report-type=disposition-notification")
    assert parse_report(raw, is_alias) is None


def test_a_delayed_report_stays_a_delay():
    raw = POSTFIX_DSN.replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    report = parse_report(raw, is_alias)
    assert (report.action, report.status, report.alias) == ("delayed", "4.4.1", "shop@d.test")
    notice = build_notice(report, to="alice@orig.test", reporting_domain="srs.fwd.test", now=NOW)
    assert b"Subject: Delayed Mail" in notice and b"Action: delayed" in notice


def test_the_worst_recipient_block_wins_and_comments_are_allowed():
    two_blocks = (b"Final-Recipient: rfc822; other@real.test\nAction: delayed\nStatus: 4.2.2\n\n"
                  b"Final-Recipient: rfc822; secret.person@real.test\n"
                  b"Action: failed (gave up)\nStatus: 5.2.2 (mailbox full)\n")
    raw = POSTFIX_DSN.replace(b"Final-Recipient: rfc822; secret.person@real.test\n", b"").replace(
        b"Original-Recipient: rfc822;secret.person@real.test\nAction: failed\nStatus: 5.1.1\n", two_blocks)
    report = parse_report(raw, is_alias)
    assert (report.action, report.status) == ("failed", "5.2.2")


@pytest.mark.parametrize("block", [
    b"Action: bounced\nStatus: 5.1.1\n",           # no such action
    b"Action: failed\nStatus: 5.1\n",              # no such status
    b"Action: failed\nStatus: 3.1.1\n",            # no such class
    b"Action: failed failed\nStatus: 5.1.1\n",
    b"Status: 5.1.1\n",                             # no action
    b"Action: failed\nStatus: (unknown\n",          # unterminated comment
])
def test_a_report_without_a_usable_recipient_block_is_not_relayed(block):
    raw = POSTFIX_DSN.replace(b"Action: failed\nStatus: 5.1.1\n", block)
    assert parse_report(raw, is_alias) is None


GLOBAL_STATUS = ("Reporting-MTA: dns; mx.real.test\n\n"
                 "Final-Recipient: utf-8; geheim@real.test\nAction: failed\nStatus: 5.1.1\n"
                 "Diagnostic-Code: smtp; 550 5.1.1 <geheim@real.test> unbekannt\n")
GLOBAL_HEADERS = ("Delivered-To: geheim@real.test\nDelivered-To: =?utf-8?q?x?= <\u5e97@d.test>\n"
                  "From: J\u00fcrgen <j\u00fcrgen@orig.test>\nSubject: Gr\u00fc\u00dfe\nMessage-ID: <g1@orig.test>\n")


def global_dsn(encoding: str) -> bytes:
    def encoded(text: str) -> str:
        data = text.encode("utf-8")
        if encoding == "base64":
            return base64.encodebytes(data).decode()
        if encoding == "quoted-printable":
            return quopri.encodestring(data).decode()
        return text
    cte = f"Content-Transfer-Encoding: {encoding}\n"
    return (f"From: MAILER-DAEMON@mx.real.test\nTo: SRS0=abcd=AA=orig.test=j@srs.fwd.test\n"
            f"MIME-Version: 1.0\n"
            f'Content-Type: multipart/report; report-type=global-delivery-status; boundary="G"\n\n'
            f"--G\nContent-Type: text/plain; charset=utf-8\n\ngeheim@real.test kennt niemand\n"
            f"--G\nContent-Type: message/global-delivery-status\n{cte}\n{encoded(GLOBAL_STATUS)}\n"
            f"--G\nContent-Type: message/global-headers\n{cte}\n{encoded(GLOBAL_HEADERS)}\n"
            f"--G--\n").encode()


@pytest.mark.parametrize("encoding", ["8bit", "base64", "quoted-printable"])
def test_an_rfc6533_global_report_names_the_utf8_alias(encoding):
    report = parse_report(global_dsn(encoding), is_alias)
    assert (report.action, report.status, report.alias) == ("failed", "5.1.1", "\u5e97@d.test")
    notice = build_notice(report, to="j@orig.test", reporting_domain="srs.fwd.test", now=NOW)
    assert notice.isascii() and b"geheim" not in notice and b"real.test" not in notice
    assert b"Final-Recipient: utf-8; \\x{5E97}@d.test" in notice
    msg = message_from_bytes(notice, policy=default)
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Your message to \u5e97@d.test could not be delivered" in text
    returned = next(p for p in msg.walk() if p.get_content_type() == "text/rfc822-headers")
    assert b"Subject: =?utf-8?" in returned.as_bytes()


def test_a_crafted_status_or_header_cannot_inject():
    raw = POSTFIX_DSN.replace(b"Status: 5.1.1", b"Status: 5.1.1\r\nBcc: x@evil.test").replace(
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", b"Subject: a\n Bcc: y@evil.test\x00")
    notice = build_notice(parse_report(raw, is_alias), to="a@orig.test",
                          reporting_domain="srs.fwd.test", now=NOW)
    assert b"\nBcc:" not in notice
    assert not any(ch in notice for ch in (b"\x00", b"\r"))


def test_the_alias_is_found_in_any_valid_delivered_to_form():
    raw = POSTFIX_DSN.replace(b"Delivered-To: shop@d.test", b"Delivered-To: (tmail) <shop@D.test>")
    assert parse_report(raw, is_alias).alias == "shop@d.test"
    raw = POSTFIX_DSN.replace(b"Delivered-To: shop@d.test", b"Delivered-To: shop@d.test <broken")
    assert parse_report(raw, is_alias).alias is None    # unparseable: not guessed


def test_a_deeply_nested_or_very_wide_report_is_not_one():
    """1,200 nested multiparts made the email parser recurse past its limit
    (an internal error, retried until the message expired); 400,000 empty
    parts took seconds and 150 MiB an attempt."""
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(1200))
    deep = (b"From: MAILER-DAEMON@x.test\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="top"\n\n--top\n'
            + nested + b"x\n")
    wide = POSTFIX_DSN.replace(b"--B1--", b"--B1\n\n" * 5000 + b"--B1--")
    assert parse_report(deep, is_alias) is None and parse_report(wide, is_alias) is None


def test_only_what_identifies_the_message_is_passed_on():
    """A report anyone holding an SRS address can send: its returned From,
    To and the like (attacker text, under tmail's signature) stay behind."""
    report = parse_report(POSTFIX_DSN, is_alias)
    assert [name for name, _ in report.headers] == ["Subject", "Message-ID"]   # it has no Date
    long = POSTFIX_DSN.replace(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", b"Subject: " + b"spam " * 200)
    assert len(dict(parse_report(long, is_alias).headers)["Subject"]) <= 200
