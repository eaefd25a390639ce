"""End to end through a real Postfix: SMTP in, tmail, SMTP out to a sink."""
import smtplib
import subprocess
import time

import pytest
from harness import SRS_DOMAIN, wait_until
from harness import smtp_reply as as_smtplib

from tmail.core import replies


def send(mx, rcpts, body=b"Subject: hi\r\n\r\nhello\r\n", sender="alice@orig.test", **kw):
    """From the internet, unless a recipient is elsewhere (relaying needs mynetworks)."""
    outside = all(r.endswith(("@d.test", "@" + SRS_DOMAIN)) for r in rcpts)
    with mx.client(outside=outside) as client:
        return client.sendmail(sender, rcpts, body, **kw)


def rcpt_reply(mx, rcpt, sender="alice@orig.test"):
    with mx.client() as client:
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


DATE = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"


def message(subject: bytes, extra: bytes = b"", body: bytes = b"hello\r\n") -> bytes:
    return (b"From: alice@orig.test\r\nTo: someone@d.test\r\nSubject: " + subject + b"\r\n"
            b"Message-ID: <" + subject.replace(b" ", b"-") + b"@orig.test>\r\n" + DATE + extra
            + b"\r\n" + body)


@pytest.fixture(scope="module")
def states(aliases, sink):
    mx = aliases
    mx.tmail("alias", "add", "off", "--domain", "d.test", "--to", "me@real.test")
    mx.tmail("alias", "disable", "off@d.test")
    mx.tmail("alias", "add", "old", "--domain", "d.test", "--to", "me@real.test", "--expires", "2020-01-01")
    mx.tmail("alias", "add", "used", "--domain", "d.test", "--to", "me@real.test", "--max-messages", "1")
    mx.tmail("alias", "add", "picky", "--domain", "d.test", "--to", "me@real.test")
    mx.tmail("alias", "block-sender", "picky@d.test", "@spam.test")
    send(mx, ["used@d.test"], message(b"use it up"))
    # waited for here: each test empties the sink first
    sink.wait_for(lambda m: b"use it up" in m.data)
    return mx


@pytest.mark.parametrize("rcpt,sender,reply", [
    ("nobody@d.test", "alice@orig.test", replies.UNKNOWN_ALIAS),
    ("off@d.test", "alice@orig.test", replies.DISABLED),
    ("old@d.test", "alice@orig.test", replies.EXPIRED),
    ("picky@d.test", "bad@spam.test", replies.SENDER_BLOCKED),
    ("SRS0=AAAA=AA=orig.test=alice@" + SRS_DOMAIN, "", replies.SRS_INVALID),
    ("SRS0=AAAA=AA=orig.test=alice@" + SRS_DOMAIN, "x@y.test", replies.SRS_INVALID),
])
def test_refused_recipients_get_their_exact_reply_and_nothing_is_queued(states, sink, rcpt, sender, reply):
    assert rcpt_reply(states, rcpt, sender) == as_smtplib(reply)
    # Refused before a queue file existed: Postfix logs NOQUEUE, and no
    # delivery to this recipient is ever logged.
    def rejected_line():
        return [line for line in states.maillog().splitlines()
                if "NOQUEUE: milter-reject: RCPT" in line and f"to=<{rcpt}>" in line]
    wait_until(rejected_line, what="Postfix's log of the rejection")
    assert f"{reply.code} {reply.xcode} {reply.text}" in rejected_line()[-1]
    assert f": to=<{rcpt}>," not in states.maillog()


def test_count_limit_refuses_once_used_up(states):
    assert rcpt_reply(states, "used@d.test") == as_smtplib(replies.EXPIRED)


def test_valid_and_unknown_in_one_message(aliases, sink):
    with smtplib.SMTP("127.0.0.1", aliases.smtp_port) as client:
        refused = client.sendmail("alice@orig.test", ["shop@d.test", "ghost@d.test"], message(b"mixed"))
    assert refused == {"ghost@d.test": as_smtplib(replies.UNKNOWN_ALIAS)}
    [msg] = sink.wait_for(lambda m: b"mixed" in m.data)
    assert sorted(msg.rcpts) == ["me@real.test", "two@real.test"]


def test_mail_not_for_tmail_is_untouched(aliases, sink):
    body = message(b"elsewhere")
    send(aliases, ["bob@elsewhere.test"], body, sender="alice@orig.test")
    [msg] = sink.wait_for(lambda m: b"elsewhere" in m.data)
    assert msg.mail_from == "alice@orig.test" and msg.rcpts == ["bob@elsewhere.test"]
    assert msg.data.endswith(body) and b"Delivered-To" not in msg.data


def test_role_address_reaches_the_admin(aliases, sink):
    send(aliases, ["postmaster@d.test"], message(b"for the admin"))
    [msg] = sink.wait_for(lambda m: b"for the admin" in m.data)
    assert msg.rcpts == ["admin@real.test"] and msg.mail_from.startswith("SRS0=")


def test_bounce_is_relayed_to_the_original_sender_without_the_destination(mx, sink):
    mx.tmail("alias", "add", "bouncy", "--domain", "d.test", "--to", "hidden.mailbox@real.test")
    sink.reject.add("hidden.mailbox@real.test")
    send(mx, ["bouncy@d.test"], message(b"will bounce"), sender="carol@orig.test")
    [dsn] = sink.wait_for(lambda m: m.rcpts == ["carol@orig.test"], what="relayed bounce")
    assert dsn.mail_from == ""
    assert b"hidden.mailbox" not in dsn.data and b"hidden" not in dsn.data.lower()
    assert b"bouncy@d.test" in dsn.data and b"Status: 5.1.1" in dsn.data
    assert b"Action: failed" in dsn.data and b"will bounce" in dsn.data  # the Subject is kept
    assert b"multipart/report" in dsn.data


@pytest.mark.parametrize("extra", [
    b"".join(b"Received: from hop%d.test by hop%d.test; " % (i, i) + DATE for i in range(30)),
    b"Delivered-To: shop@d.test\r\n",
    b"Delivered-To: SHOP@D.TEST\r\n",
], ids=["30 Received", "Delivered-To", "Delivered-To in capitals"])
def test_a_loop_is_refused_in_the_smtp_session_never_bounced(aliases, sink, extra):
    """A loop (too many hops, or a Delivered-To naming the alias, which a
    sender can forge) is refused at the end of DATA: the client learns it,
    and nothing goes back to the (forgeable) envelope sender later."""
    with aliases.client() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("victim@orig.test", ["shop@d.test"], extra + message(b"looping"))
    assert (refused.value.smtp_code, refused.value.smtp_error) == as_smtplib(replies.LOOP)
    time.sleep(2)
    assert not sink.to("victim@orig.test") and not [m for m in sink.messages if b"looping" in m.data]


def test_twenty_nine_hops_are_forwarded(aliases, sink):
    hops = b"".join(b"Received: from hop%d.test by hop%d.test; " % (i, i) + DATE for i in range(29))
    send(aliases, ["shop@d.test"], hops + message(b"many hops"))
    sink.wait_for(lambda m: b"many hops" in m.data)


def test_eight_bit_and_smtputf8(aliases, sink):
    body = message(b"8bit", extra=b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n", body="grüße, Jürgen\r\n".encode())
    send(aliases, ["shop@d.test"], body, mail_options=["BODY=8BITMIME"])
    [msg] = sink.wait_for(lambda m: b"8bit" in m.data)
    assert msg.data.endswith(body) and "BODY=8BITMIME" in msg.params

    aliases.tmail("alias", "add", "jürgen", "--domain", "d.test", "--to", "jürgen@real.test")
    utf8 = message(b"utf8 address", body="für dich\r\n".encode())
    with smtplib.SMTP("127.0.0.1", aliases.smtp_port) as client:
        client.sendmail("jörg@orig.test", ["jürgen@d.test"], utf8, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [msg] = sink.wait_for(lambda m: b"utf8 address" in m.data)
    assert msg.rcpts == ["jürgen@real.test"] and "SMTPUTF8" in msg.params
    assert msg.mail_from.endswith("=orig.test=jörg@" + SRS_DOMAIN)
    assert msg.data.endswith(utf8)


def test_eight_bit_header_fields_do_not_ask_for_smtputf8(aliases, sink):
    """A raw Latin-1 Subject (no SMTPUTF8 in the original transaction) is
    forwarded as Postfix would relay it: without SMTPUTF8, which a
    destination that does not offer it would refuse (5.6.7)."""
    body = message(b"latin-1 caf\xe9")
    send(aliases, ["shop@d.test"], body, mail_options=["BODY=8BITMIME"])
    [msg] = sink.wait_for(lambda m: b"latin-1 caf\xe9" in m.data)
    assert "SMTPUTF8" not in msg.params and msg.data.endswith(body)


def test_twenty_megabyte_message(aliases, sink):
    line = b"x" * 76 + b"\r\n"
    body = message(b"big one", body=line * (20 * 1024 * 1024 // len(line)))
    send(aliases, ["shop@d.test"], body)
    [msg] = sink.wait_for(lambda m: b"big one" in m.data[:4000], timeout=120)
    assert len(msg.data) > 20_000_000 and msg.data.endswith(body)


def test_a_retried_delivery_is_not_forwarded_twice(aliases, sink):
    """What Postfix does after a pipe killed past the reinjection: run it again
    with the same queue id. The daemon remembers the queue id."""
    body = message(b"retried").replace(b"\r\n", b"\n")
    cmd = [aliases_cmd(aliases), "--socket", f"{aliases.run_dir}/deliver.sock",
           "4QRETRY1", "alice@orig.test", "shop@d.test"]
    for _ in range(2):
        result = subprocess.run(cmd, input=body, capture_output=True, user="tmail")
        assert result.returncode == 0, result.stdout
    sink.wait_for(lambda m: b"retried" in m.data)
    assert b"already forwarded" in result.stdout
    import time
    time.sleep(1)
    assert len([m for m in sink.messages if b"retried" in m.data]) == 1


def aliases_cmd(mx):
    from harness import DELIVER
    return DELIVER


def test_control_characters_from_clients_are_escaped_in_the_log(aliases):
    """A sender with an ESC and a CR byte in it: refused for tmail's
    recipients, and logged with the bytes escaped (no terminal escape
    sequence, no forged line)."""
    with aliases.client() as client:
        client.ehlo()
        client.send(b'MAIL FROM:<"evil\x1b[2J\rFAKE"@orig.test>\r\n')   # Postfix takes it quoted
        mail_code = client.getreply()[0]
        code = client.rcpt("shop@d.test")[0] if mail_code == 250 else mail_code
    assert code == 501
    log = aliases.tmail_log()
    assert "\x1b" not in log and "\r" not in log
    assert mail_code == 250     # Postfix lets it through; tmail refuses it, and logs it escaped
    assert "evil\\x1b[2J\\rFAKE" in log


def test_a_client_that_hangs_up_on_the_delivery_socket_leaves_no_traceback(aliases):
    import socket
    before = aliases.tmail_log().count("Traceback")
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(f"{aliases.run_dir}/deliver.sock")
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(f"{aliases.run_dir}/deliver.sock")
        probe.sendall(b"TMAIL1 {\"queue_id\": \"4QHANG\"")
    time.sleep(1)
    assert aliases.tmail_log().count("Traceback") == before


def test_a_message_that_just_fitted_is_forwarded_with_what_tmail_adds(aliases, sink):
    """Near message_size_limit on arrival, over it with tmail's fields: the
    reinjection listener has no limit of its own, or the copy would wait in
    the queue until it expired and bounced."""
    aliases.postconf("message_size_limit=200000")
    aliases.reload()
    try:
        line = b"y" * 76 + b"\r\n"
        body = message(b"just fits", body=line * (198600 // len(line)))
        send(aliases, ["shop@d.test"], body)
        sink.wait_for(lambda m: b"just fits" in m.data[:3000])
    finally:
        aliases.postconf("message_size_limit=30000000")
        aliases.reload()
