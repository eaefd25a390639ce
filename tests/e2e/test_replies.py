"""Replies through an alias, end to end through the private Postfix: the
sink plays both the contact's server (contact.test) and the person's mail
provider (provider.test), whose SPF, DKIM and DMARC the test zone
publishes. The person's replies are written in real mail programs' shapes
and DKIM-signed with the provider's key, as the provider would."""
import email
import json
import re
import smtplib
import subprocess
import time

import dkim
import pytest
from harness import REPLY_DOMAIN

from tmail.keys import generate_private, public_record
from tmail.resolver import Resolver

PROVIDER_KEY = generate_private("rsa", 2048)
CONTACT = "alice@contact.test"
PERSON = "person.real@provider.test"


def txt_lookup(mx):
    resolver = Resolver([("127.0.0.1", mx.dns.port)])
    return lambda name, timeout=5: (resolver.txt(name.decode().rstrip(".")) or [None])[0]


def provider_signed(msg: bytes) -> bytes:
    return dkim.sign(msg, b"mail", b"provider.test", PROVIDER_KEY,
                     canonicalize=(b"relaxed", b"relaxed"),
                     include_headers=[b"from", b"to", b"cc", b"subject", b"date", b"message-id",
                                      b"in-reply-to", b"references", b"mime-version", b"content-type"]) + msg


def send(mx, sender, rcpts, data, source="127.0.0.1", helo="out.provider.test"):
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo(helo)
        client.sendmail(sender, rcpts, data)


def header(data: bytes, name: str) -> str:
    return email.message_from_bytes(data).get(name, "")


def contact_mail(alias: str, mid: str, extra: str = "") -> bytes:
    return (f"From: Alice Example <{CONTACT}>\r\nTo: {alias}\r\nSubject: Your order\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: {mid}\r\n{extra}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello, is this still for sale?\r\n").encode()


def gmail_reply(to: str, in_reply_to: str, cc: str = "", mid: str = "<CAJx1+reply@mail.provider.test>",
                author: str = PERSON) -> bytes:
    """A reply in Gmail's shape: multipart/alternative, quoted text, the
    provider's own trace and client fields."""
    cc_line = f"Cc: {cc}\r\n" if cc else ""
    return (
        "Received: by mail-pf1.provider.test with SMTP id x7so12;\r\n"
        "        Sat, 28 Nov 2026 11:00:01 -0800 (PST)\r\n"
        "X-Received: by 2002:a17:90a:1; Sat, 28 Nov 2026 11:00:01 -0800 (PST)\r\n"
        "X-Originating-IP: [198.51.100.23]\r\n"
        f"Return-Path: <{PERSON}>\r\n"
        "MIME-Version: 1.0\r\n"
        f"From: Pat Real <{author}>\r\n"
        f"Date: Sat, 28 Nov 2026 11:00:00 -0800\r\n"
        f"Message-ID: {mid}\r\n"
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
        "Subject: Re: Your order\r\n"
        f'To: "Alice Example" <{to}>\r\n{cc_line}'
        "User-Agent: ProviderMail/2.1 (provider.test)\r\n"
        'Content-Type: multipart/alternative; boundary="000000000000b1a2c3"\r\n'
        "\r\n"
        "--000000000000b1a2c3\r\n"
        'Content-Type: text/plain; charset="UTF-8"\r\n\r\n'
        "Yes, it is.\r\n\r\n"
        f"On Sat, Nov 28, 2026 at 10:00 AM Alice Example <{CONTACT}> wrote:\r\n"
        "> Hello, is this still for sale?\r\n\r\n"
        "--000000000000b1a2c3\r\n"
        'Content-Type: text/html; charset="UTF-8"\r\n\r\n'
        '<div dir="ltr">Yes, it is.</div><br><div class="gmail_quote">On Sat, Nov 28, 2026 '
        f"Alice Example &lt;{CONTACT}&gt; wrote:<blockquote>Hello, is this still for sale?"
        "</blockquote></div>\r\n"
        "--000000000000b1a2c3--\r\n").encode()


def outlook_reply(to: str, in_reply_to: str, mid: str) -> bytes:
    return (
        f"From: Pat Real <{PERSON}>\r\nTo: {to}\r\nSubject: RE: Your order\r\n"
        "Thread-Topic: Your order\r\nThread-Index: AQHZ1234abcdEFGH==\r\n"
        f"Date: Sat, 28 Nov 2026 20:00:00 +0100\r\nMessage-ID: {mid}\r\n"
        f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
        "Accept-Language: en-US\r\nX-MS-Has-Attach:\r\nX-MS-Exchange-Organization-SCL: -1\r\n"
        "X-Mailer: Microsoft Outlook 16.0\r\nContent-Language: en-US\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n"
        "Still interested.\r\n\r\n-----Original Message-----\r\nFrom: Alice Example\r\n"
        "Sent: Saturday, November 28, 2026 10:00 AM\r\nSubject: Your order\r\n\r\n"
        "Hello, is this still for sale?\r\n").encode()


@pytest.fixture(scope="module")
def rmx(mx):
    """r.test with replies on, DKIM keys for it and the provider's and
    contact's domains in the zone (taken out again afterwards)."""
    saved = {k: list(v) for k, v in mx.zone.records.items()}
    mx.tmail("domain", "add", "r.test", as_root=True)    # as an admin would: Postfix is reloaded
    mx.tmail("domain", "set", "r.test", "--replies", "on")
    mx.tmail("dkim", "keygen", "--domain", "r.test", "--selector", "r1", as_root=True)
    for record in json.loads(mx.tmail("dkim", "show-dns", "--json").stdout)["records"]:
        mx.zone.txt(record["name"], record["value"])
    zone = mx.zone
    zone.txt("mail._domainkey.provider.test", public_record("rsa", PROVIDER_KEY))
    zone.txt("provider.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("_dmarc.provider.test", "v=DMARC1; p=reject")
    zone.txt("contact.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("provider2.test", "v=spf1 ip4:127.0.0.1 -all")
    yield mx
    mx.zone.records.clear()
    mx.zone.records.update(saved)


def reverse_alias_for(mx, sink, alias: str, mid: str) -> str:
    """The contact writes to the alias; the person gets it with Reply-To
    naming the contact's reverse alias."""
    send(mx, CONTACT, [alias], contact_mail(alias, mid), helo="mx.contact.test")
    [got] = sink.wait_for(lambda m: PERSON in m.rcpts and mid.encode() in m.data, what="forwarded mail")
    reply_to = header(got.data, "Reply-To")
    found = re.search(r"<([a-z2-7]{24})@" + re.escape(REPLY_DOMAIN) + ">", reply_to)
    assert found, reply_to
    assert "Alice Example" in reply_to
    return f"{found.group(1)}@{REPLY_DOMAIN}"


def test_a_reply_goes_out_as_the_alias_and_the_answer_threads_back(rmx, sink):
    rmx.tmail("alias", "add", "chat", "--domain", "r.test", "--to", PERSON, "--display-name", "Shop Buyer")
    reverse = reverse_alias_for(rmx, sink, "chat@r.test", "<m1@contact.test>")

    reply = provider_signed(gmail_reply(reverse, "<m1@contact.test>"))
    send(rmx, PERSON, [reverse], reply)
    [out] = sink.wait_for(lambda m: m.rcpts == [CONTACT] and b"Yes, it is." in m.data, what="reply")

    # nothing names the real mailbox or its provider, anywhere in the bytes
    assert b"person.real" not in out.data.lower()
    assert b"provider.test" not in out.data.lower()
    assert b"198.51.100.23" not in out.data
    assert out.mail_from == reverse          # its bounces come back to tmail
    msg = email.message_from_bytes(out.data)
    assert msg["From"] == "Shop Buyer <chat@r.test>"
    assert msg["To"] == f"Alice Example <{CONTACT}>"
    assert msg["Date"] == "Sat, 28 Nov 2026 19:00:00 +0000"      # the same instant, in UTC
    assert msg["In-Reply-To"] == "<m1@contact.test>"
    ours = msg["Message-ID"]
    assert ours.endswith("@r.test>")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]
    # signed with the alias domain's key, and the signature verifies
    verifier = dkim.DKIM(out.data)
    assert verifier.verify(dnsfunc=txt_lookup(rmx))
    assert verifier.domain == b"r.test"

    # the contact answers the reply: the person's copy names the person's own Message-ID
    answer = contact_mail("chat@r.test", "<m2@contact.test>",
                          f"In-Reply-To: {ours}\r\nReferences: <m1@contact.test> {ours}\r\n")
    send(rmx, CONTACT, ["chat@r.test"], answer, helo="mx.contact.test")
    [back] = sink.wait_for(lambda m: PERSON in m.rcpts and b"<m2@contact.test>" in m.data, what="answer")
    threaded = email.message_from_bytes(back.data)
    assert threaded["In-Reply-To"] == "<CAJx1+reply@mail.provider.test>"
    assert threaded["References"].split() == ["<m1@contact.test>", "<CAJx1+reply@mail.provider.test>"]

    # the alias's second reply names the first one as the contact knew it
    second = gmail_reply(reverse, "<m2@contact.test>", mid="<CAJx2+reply@mail.provider.test>")
    second = second.replace(b"References: <m2@contact.test>",
                            b"References: <m1@contact.test> <CAJx1+reply@mail.provider.test> <m2@contact.test>")
    send(rmx, PERSON, [reverse], provider_signed(second))
    [out2] = sink.wait_for(lambda m: m.rcpts == [CONTACT] and b"<m2@contact.test>" in m.data
                           and b"Yes, it is." in m.data, what="second reply")
    assert email.message_from_bytes(out2.data)["References"].split() == [
        "<m1@contact.test>", ours, "<m2@contact.test>"]
    assert b"provider.test" not in out2.data.lower()

    listed = json.loads(rmx.tmail("alias", "contact", "list", "chat@r.test", "--json").stdout)
    [contact] = listed["contacts"]
    assert (contact["address"], contact["reply_address"], contact["replied"]) == (CONTACT, reverse, 2)


def test_an_outlook_shaped_reply_leaks_nothing_either(rmx, sink):
    rmx.tmail("alias", "add", "desk", "--domain", "r.test", "--to", PERSON)
    reverse = reverse_alias_for(rmx, sink, "desk@r.test", "<o1@contact.test>")
    reply = outlook_reply(reverse, "<o1@contact.test>",
                          "<DB7PR03MB1234.eurprd03.prod.provider.test@provider.test>")
    send(rmx, PERSON, [reverse], provider_signed(reply))
    [out] = sink.wait_for(lambda m: m.rcpts == [CONTACT] and b"Still interested." in m.data, what="reply")
    assert b"provider.test" not in out.data.lower() and b"person.real" not in out.data.lower()
    for gone in (b"Thread-Index", b"X-MS-", b"X-Mailer", b"Accept-Language"):
        assert gone not in out.data
    assert email.message_from_bytes(out.data)["From"] == "<desk@r.test>"   # no name unless set


def refused(mx, sender, rcpts, data, source="127.0.0.1"):
    with pytest.raises(smtplib.SMTPDataError) as caught:
        send(mx, sender, rcpts, data, source=source)
    return caught.value.smtp_code, caught.value.smtp_error


def test_a_spoofed_reply_is_refused_at_end_of_data(rmx, sink):
    rmx.tmail("alias", "add", "spoofed", "--domain", "r.test", "--to", PERSON)
    reverse = reverse_alias_for(rmx, sink, "spoofed@r.test", "<s1@contact.test>")
    sink.messages.clear()
    forged = gmail_reply(reverse, "<s1@contact.test>", mid="<forged1@x.test>")
    # right address, from a host outside provider.test's SPF, unsigned
    code, text = refused(rmx, PERSON, [reverse], forged, source="127.0.0.2")
    assert code == 550 and b"not sent by a verified destination" in text
    # signed, but not by the provider (a key nobody published)
    other = generate_private("rsa", 2048)
    resigned = dkim.sign(forged, b"mail", b"provider.test", other) + forged
    assert refused(rmx, PERSON, [reverse], resigned, source="127.0.0.2")[0] == 550
    # someone else's domain passing SPF, with the person's address in From
    assert refused(rmx, "mallory@provider2.test", [reverse], forged)[0] == 550
    time.sleep(1)
    assert not [m for m in sink.messages if CONTACT in m.rcpts]
    # the person is told (once), and what was refused is in the alias's activity
    [notice] = sink.wait_for(lambda m: PERSON in m.rcpts and b"was not sent" in m.data, what="notice")
    assert notice.mail_from == ""


def test_another_aliass_reverse_alias_is_refused_from_this_mailbox(rmx, sink):
    rmx.tmail("alias", "add", "users-b", "--domain", "r.test", "--to", "b.person@provider2.test")
    send(rmx, CONTACT, ["users-b@r.test"], contact_mail("users-b@r.test", "<b1@contact.test>"),
         helo="mx.contact.test")
    [got] = sink.wait_for(lambda m: "b.person@provider2.test" in m.rcpts, what="forward to B")
    reverse_b = re.search(r"<([a-z2-7]{24}@" + re.escape(REPLY_DOMAIN) + ")>",
                          header(got.data, "Reply-To")).group(1)
    # A's mailbox, properly signed by A's provider, writing through B's reverse alias
    reply = provider_signed(gmail_reply(reverse_b, "<b1@contact.test>", mid="<a-to-b@mail.provider.test>"))
    code, text = refused(rmx, PERSON, [reverse_b], reply)
    assert code == 550 and b"not sent by a verified destination" in text


def test_a_reply_copied_to_a_third_party_is_refused_and_the_person_told(rmx, sink):
    rmx.tmail("alias", "add", "cced", "--domain", "r.test", "--to", PERSON)
    reverse = reverse_alias_for(rmx, sink, "cced@r.test", "<c1@contact.test>")
    reply = provider_signed(gmail_reply(reverse, "<c1@contact.test>", cc="Bob <bob@third.test>",
                                        mid="<cc1@mail.provider.test>"))
    code, text = refused(rmx, PERSON, [reverse], reply)
    assert code == 550 and b"bob@third.test" in text
    [notice] = sink.wait_for(lambda m: PERSON in m.rcpts and b"cced@r.test" in m.data
                             and b"was not sent" in m.data, what="notice")
    assert b"bob@third.test" in notice.data
    assert not [m for m in sink.messages if CONTACT in m.rcpts and b"cc1" in m.data]


def test_write_first_and_bounces_of_replies_come_back_without_naming_the_person(rmx, sink):
    rmx.tmail("alias", "add", "first", "--domain", "r.test", "--to", PERSON)
    made = json.loads(rmx.tmail("alias", "contact", "add", "first@r.test", "gone@contact.test",
                                "--json").stdout)
    reverse = made["contact"]["reply_address"]
    assert reverse.endswith("@" + REPLY_DOMAIN)
    sink.reject.add("gone@contact.test")
    first = (f"From: {PERSON}\r\nTo: {reverse}\r\nSubject: Hello\r\nMessage-ID: <f1@mail.provider.test>\r\n"
             "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n\r\nFirst message.\r\n").encode()
    send(rmx, PERSON, [reverse], provider_signed(first))
    # the contact's server refuses it; the bounce goes to the reverse alias,
    # and tmail relays a notice to the person
    [dsn] = sink.wait_for(lambda m: PERSON in m.rcpts and m.mail_from == "", what="relayed bounce")
    assert b"gone@contact.test" in dsn.data


def test_replies_off_and_removed_aliases_refuse_their_reverse_aliases(rmx, sink):
    rmx.tmail("alias", "add", "closing", "--domain", "r.test", "--to", PERSON)
    reverse = reverse_alias_for(rmx, sink, "closing@r.test", "<x1@contact.test>")
    reply = provider_signed(gmail_reply(reverse, "<x1@contact.test>", mid="<x2@mail.provider.test>"))
    rmx.tmail("alias", "set", "closing@r.test", "--replies", "off")
    local, _, domain = reverse.partition("@")
    # every spelling Postfix delivers to the same reverse alias gets its verdict
    for spelling in (reverse, reverse.upper(), reverse + ".", f'"{local}"@{domain}', f"@mx.fwd.test:{reverse}"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(rmx, PERSON, [spelling], reply)
        assert caught.value.recipients[spelling][0] == 550, spelling
    rmx.tmail("alias", "remove", "closing@r.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(rmx, PERSON, [reverse], reply)
    assert caught.value.recipients[reverse][0] == 550


def test_a_reply_submitted_on_this_host_passes_no_milter_but_the_same_rule(rmx, sink):
    """sendmail(1) on the host reaches tmail past every milter: the author
    must still be a destination of the alias (trusted as SASL is)."""
    rmx.tmail("alias", "add", "local", "--domain", "r.test", "--to", PERSON)
    reverse = reverse_alias_for(rmx, sink, "local@r.test", "<l1@contact.test>")

    def submit(author, subject):
        subprocess.run(["sendmail", "-C", rmx.conf, "-f", author, reverse], check=True,
                       input=(f"From: {author}\nTo: {reverse}\nSubject: {subject}\n\nlocal reply\n").encode())
        rmx.flush()
    submit("Mallory@Elsewhere.test", "from someone else")
    submit(PERSON.upper(), "from the person")
    [out] = sink.wait_for(lambda m: m.rcpts == [CONTACT] and b"local reply" in m.data, what="local reply")
    assert b"Subject: from the person" in out.data and b"person.real" not in out.data.lower()
    [notice] = sink.wait_for(lambda m: PERSON in m.rcpts and b"local@r.test" in m.data
                             and b"was not sent" in m.data, what="notice")
    assert b"not a destination" in notice.data
    assert not [m for m in sink.messages if CONTACT in m.rcpts and b"someone else" in m.data]
