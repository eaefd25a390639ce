"""End to end through a real Postfix: SMTP in, tmail, SMTP out to a sink."""
import smtplib
import subprocess

import pytest

from harness import SRS_DOMAIN


def send(mx, rcpts, body=b"Subject: hi\r\n\r\nhello\r\n", sender="alice@orig.test", **kw):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        return client.sendmail(sender, rcpts, body, **kw)


def rcpt_reply(mx, rcpt, sender="alice@orig.test"):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        return client.rcpt(rcpt)


@pytest.fixture(scope="module")
def aliases(mx):
    mx.tmail("alias", "add", "shop", "--domain", "d.test", "--to", "me@real.test", "--to", "two@real.test")
    return mx


def test_forwarded_mail_reaches_every_destination_with_srs(aliases, sink):
    body = (b"From: Alice <alice@orig.test>\r\nTo: shop@d.test\r\nSubject: order\r\n"
            b"Message-ID: <m1@orig.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
            b"\r\nline one\r\n.leading dot\r\n")
    send(aliases, ["shop@d.test"], body)
    [msg] = sink.wait_for(lambda m: "me@real.test" in m.rcpts)
    assert sorted(msg.rcpts) == ["me@real.test", "two@real.test"]
    assert msg.mail_from.startswith("SRS0=") and msg.mail_from.endswith("=orig.test=alice@" + SRS_DOMAIN)
    assert msg.data.endswith(body), msg.data[-300:]
    assert b"Delivered-To: shop@d.test" in msg.data.split(body)[0]
