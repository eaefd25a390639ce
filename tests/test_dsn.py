"""Bounce rewriting: nothing of the destination reaches the original sender."""
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default

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


def test_plain_text_bounce_without_a_report_still_informs_the_sender():
    raw = b"From: MAILER-DAEMON@old.test\nSubject: failure notice\n\nSorry, secret@real.test said no.\n"
    report = parse_report(raw, is_alias)
    assert (report.action, report.status, report.alias) == ("failed", "5.0.0", None)
    notice = build_notice(report, to="a@orig.test", reporting_domain="srs.fwd.test", now=NOW)
    assert b"secret" not in notice and b"could not be delivered" in notice


def test_a_crafted_status_or_header_cannot_inject():
    raw = POSTFIX_DSN.replace(b"Status: 5.1.1", b"Status: 5.1.1\r\nBcc: x@evil.test").replace(
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", b"Subject: a\n Bcc: y@evil.test")
    notice = build_notice(parse_report(raw, is_alias), to="a@orig.test",
                          reporting_domain="srs.fwd.test", now=NOW)
    assert b"\nBcc:" not in notice
