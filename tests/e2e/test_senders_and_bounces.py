"""Senders as the internet has them (long, address literals, quoted) are
forwarded, and the bounces that come back to their SRS addresses are
relayed; what comes back that is not a delivery report (an auto-reply)
is not passed on."""
import time

import pytest
from harness import SRS_DOMAIN

LONG_LOCAL = "firstname.lastname.department.with.a.very.long.name.indeed.more"   # 63 octets
SENDERS = [
    "firstname.lastname.department@mail.subdomain.example-company.test",
    LONG_LOCAL + "xyz@orig.test",                    # 66 octets: over RFC 5321's 64
    f"{LONG_LOCAL}@{'sub.' * 20}orig.test",          # an SRS local part far over 64
    "user@[192.0.2.1]",                              # an address literal
    '"john doe"@orig.test',                          # a quoted local part
]


def dsn(to: str, subject: str, report_type="delivery-status", status_type="message/delivery-status",
        final="rfc822; hidden@real.test") -> bytes:
    return (f"From: MAILER-DAEMON@mx.real.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type={report_type}; "
            f'boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfailed: hidden@real.test\r\n'
            f"--B\r\nContent-Type: {status_type}\r\n\r\nReporting-MTA: dns; mx.real.test\r\n\r\n"
            f"Final-Recipient: {final}\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nDelivered-To: senders@d.test\r\n"
            f"Subject: {subject} original\r\n\r\n--B--\r\n").encode()


@pytest.fixture(scope="module")
def senders(mx):
    mx.tmail("alias", "add", "senders", "--domain", "d.test", "--to", "senders@real.test")
    return mx


def srs_address_for(sink, subject: bytes) -> str:
    [msg] = sink.wait_for(lambda m: subject in m.data)
    return msg.mail_from


@pytest.mark.parametrize("sender", SENDERS)
def test_a_sender_postfix_accepts_is_forwarded_and_its_bounce_relayed(senders, sink, sender):
    subject = f"from {sender}".encode()
    with senders.client() as client:
        client.sendmail(sender, ["senders@d.test"], b"Subject: " + subject + b"\r\n\r\nhi\r\n")
    srs = srs_address_for(sink, subject)
    assert srs.endswith("@" + SRS_DOMAIN) and "SRS0=" in srs
    # the destination's server refuses it later: its DSN comes to the SRS address
    with senders.client() as client:
        refused = client.sendmail("", [srs], dsn(srs, "bounce for " + sender))
    assert refused == {}
    bare = sender.replace('"', "")
    [notice] = sink.wait_for(lambda m: [r.replace('"', "") for r in m.rcpts] == [bare])
    assert notice.mail_from == "" and b"Status: 5.2.2" in notice.data
    assert b"senders@d.test" in notice.data and b"hidden" not in notice.data


def test_an_auto_reply_to_an_srs_address_is_not_passed_on(senders, sink):
    with senders.client() as client:
        client.sendmail("alice@orig.test", ["senders@d.test"], b"Subject: will get a reply\r\n\r\nhi\r\n")
    srs = srs_address_for(sink, b"will get a reply")
    reply = (f"From: The Real Person <hidden@real.test>\r\nTo: {srs}\r\nSubject: Out of office\r\n"
             "Auto-Submitted: auto-replied\r\n\r\nI am away; write to hidden@real.test\r\n").encode()
    with senders.client() as client:
        assert client.sendmail("", [srs], reply) == {}
    time.sleep(3)
    assert not sink.to("alice@orig.test")
    assert "not a delivery status notification" in senders.tmail_log()


def test_a_global_dsn_is_relayed_with_its_status(senders, sink):
    """RFC 6533: message/global-delivery-status (UTF-8 fields)."""
    with senders.client() as client:
        client.sendmail("bob@orig.test", ["senders@d.test"], b"Subject: global one\r\n\r\nhi\r\n")
    srs = srs_address_for(sink, b"global one")
    report = dsn(srs, "global bounce", report_type="global-delivery-status",
                 status_type="message/global-delivery-status", final="utf-8; hidden@real.test")
    with senders.client() as client:
        assert client.sendmail("", [srs], report) == {}
    [notice] = sink.wait_for(lambda m: m.rcpts == ["bob@orig.test"])
    assert b"Status: 5.2.2" in notice.data and b"senders@d.test" in notice.data
