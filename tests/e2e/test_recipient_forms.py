"""Every form of a recipient address that Postfix routes to a tmail alias
gets that alias's verdict, through the real Postfix, from a client outside
mynetworks. Forms: what Postfix's address rewriting and resolving map onto
one address (trailing dots, quoting, case, source routes, the percent
hack, bang paths, the recipient delimiter). States: unknown, disabled,
expired, sender blocked, over its limit, active."""
import subprocess
import time

import pytest
from harness import smtp_reply

from tmail.core import replies

FORMS = [
    "{a}@d.test", "{a}@d.test.", "{a}@D.Test", '"{a}"@d.test', "@mx.fwd.test:{a}@d.test",
    "@a.test,@b.test:{a}@d.test", "{a}%d.test@mx.fwd.test", "{a}%d.test", "d.test!{a}@mx.fwd.test",
    "d.test!{a}", "{a}@d.test@mx.fwd.test", '"{a}@d.test"@mx.fwd.test', "{a}%d.test.@mx.fwd.test",
    "{a}+tag@d.test.", '"{a}+tag"@d.test',
]
STATES = {
    "fm-unknown": replies.UNKNOWN_ALIAS,
    "fm-off": replies.DISABLED,
    "fm-old": replies.EXPIRED,
    "fm-picky": replies.SENDER_BLOCKED,
    "fm-used": replies.EXPIRED,
    "fm-on": None,
}
SENDER = "someone@spam.test"


@pytest.fixture(scope="module")
def states(mx, sink):
    add = lambda local, *opts: mx.tmail("alias", "add", local, "--domain", "d.test",  # noqa: E731
                                        "--to", "forms@real.test", *opts)
    add("fm-off")
    mx.tmail("alias", "disable", "fm-off@d.test")
    add("fm-old", "--expires", "2020-01-01")
    add("fm-picky")
    mx.tmail("alias", "block-sender", "fm-picky@d.test", "@spam.test")
    add("fm-used", "--max-messages", "1")
    add("fm-on")
    with mx.client() as client:
        client.sendmail("first@orig.test", ["fm-used@d.test"], b"Subject: uses it up\r\n\r\nx\r\n")
    sink.wait_for(lambda m: b"uses it up" in m.data)
    return mx


@pytest.mark.parametrize("form", FORMS)
def test_every_form_gets_the_verdict_of_the_address_postfix_delivers_to(states, sink, form):
    sent = {}
    for local, reply in STATES.items():
        rcpt = form.format(a=local)
        with states.client() as client:
            client.ehlo()
            client.mail(SENDER if local == "fm-picky" else "sender@orig.test")
            got = client.rcpt(rcpt)
            if got[0] == 250:
                subject = f"form {rcpt}"
                client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
                sent[local] = subject
        expected = smtp_reply(reply) if reply else (250, got[1])
        assert got == expected, (rcpt, got)
    assert list(sent) == ["fm-on"]
    [msg] = sink.wait_for(lambda m: m.data.endswith(b"hello\r\n") and sent["fm-on"].encode() in m.data)
    assert msg.rcpts == ["forms@real.test"]


def test_no_form_was_forwarded_twice_or_bounced(states, sink):
    """After the table: every active form arrived once; no refused one
    arrived at all, and nothing went back to the senders."""
    time.sleep(2)
    subjects = [line for m in sink.to("forms@real.test") for line in m.data.split(b"\r\n")
                if line.startswith(b"Subject: form ")]
    assert len(subjects) == len(set(subjects))
    assert all(b"fm-on" in s for s in subjects)
    assert not sink.to("sender@orig.test") and not sink.to(SENDER)


def test_mail_that_skips_the_milter_is_not_forwarded_for_a_refusing_alias(states, sink):
    """The second line: mail injected locally (sendmail(1): no smtpd, no
    milter) reaches the delivery without a verdict; the delivery decides,
    and discards what the verdict refuses, without a bounce."""
    for local in ("fm-off", "fm-old", "fm-unknown", "fm-used", "fm-on"):
        subprocess.run(["sendmail", "-C", states.conf, "-f", "local@orig.test", f"{local}@d.test"],
                       input=f"Subject: local {local}\n\nhi\n".encode(), check=True)
    states.flush()
    sink.wait_for(lambda m: b"Subject: local fm-on" in m.data)
    time.sleep(3)
    states.flush()
    assert [m for m in sink.messages if b"Subject: local" in m.data
            and b"fm-on" not in m.data] == []
    assert not sink.to("local@orig.test")
    log = states.tmail_log()
    for local in ("fm-off", "fm-old", "fm-unknown", "fm-used"):
        assert f"to=<{local}@d.test> from=<local@orig.test> not forwarded" in log


@pytest.mark.parametrize("rcpt", ["anyone@sub.d.test", "fm-on@deep.sub.d.test", "x@y.srs.fwd.test"])
def test_a_subdomain_of_a_tmail_domain_is_not_relayed(states, rcpt):
    """tmail serves its domains, not their subdomains: Postfix must not
    relay for them (nobody checks them) to whatever DNS says."""
    with states.client() as client:
        client.ehlo()
        client.mail("spammer@spam.test")
        code, text = client.rcpt(rcpt)
    assert code == 554 and b"Relay access denied" in text, (code, text)


@pytest.mark.parametrize("sender, rcpt, subject", [
    ('"ab\\\\"@orig.test', "fm-on@d.test", "a quoted sender ending in a backslash"),
    ("plain@orig.test", '"fm-on+tag\\\\"@d.test', "a quoted +tag ending in a backslash"),
])
def test_a_quoted_local_part_ending_in_a_backslash_is_forwarded_not_bounced(states, sink, sender, rcpt, subject):
    """Postfix accepts "ab\\"@x and writes it so to the transport: LMTP read
    the escaped backslash as escaping the quote, answered 501, and Postfix
    bounced mail the milter had accepted."""
    before = len(states.maillog())           # the module's earlier tests bounce mail of their own
    with states.client() as client:
        client.ehlo("client.example")
        assert client.mail(sender)[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        assert client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())[0] == 250
    sink.wait_for(lambda m: subject.encode() in m.data, what=subject)
    assert "status=bounced" not in states.maillog()[before:]
