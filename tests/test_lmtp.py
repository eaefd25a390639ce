"""The LMTP listener's protocol (RFC 2033) over a real UNIX socket, with a
recording delivery in place of the daemon's: per-recipient replies after
DATA, dot-unstuffing, the queue id from XFORWARD IDENT, bounded input."""
from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.mailpath.delivery import EX_OK, EX_TEMPFAIL, Outcome
from tmail.mailpath.lmtp import lmtp_server


class Recorder:
    """Answers per recipient: 'defer@' addresses 451, the rest 250."""

    def __init__(self):
        self.calls = []

    def deliver(self, request, chunks, still_wanted):
        body = b"".join(chunks)
        self.calls.append((request, body))
        if request["recipient"].startswith("defer@"):
            return Outcome(EX_TEMPFAIL, "4.3.0 try later")
        return Outcome(EX_OK, f"2.0.0 forwarded {len(body)} bytes")


@pytest.fixture
def lmtp():
    recorder = Recorder()
    directory = tempfile.mkdtemp()
    server = lmtp_server(os.path.join(directory, "lmtp.sock"), recorder, hostname="mx.test")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address, recorder
    server.shutdown()
    server.server_close()


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        assert self.reply() == ["220 mx.test LMTP tmail"]

    def reply(self):
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def send(self, data: bytes):
        self.sock.sendall(data)

    def command(self, line: str):
        self.send(line.encode() + b"\r\n")
        return self.reply()


def received(ident: str) -> bytes:
    """The trace field Postfix's smtpd puts on top of what it queues."""
    return (f"Received: from client.test (client.test [192.0.2.1])\r\n\tby mx.fwd.test (Postfix) with ESMTP "
            f"id {ident}; Sat, 28 Nov 2026 09:27:43 +0000 (UTC)\r\n").encode()


def transaction(client, recipients, body: bytes, ident="4XyzAbc"):
    assert client.command("LHLO mx.test")[-1].startswith("250 XFORWARD")
    if ident:
        assert client.command(f"XFORWARD IDENT={ident} NAME=client.test ADDR=192.0.2.1")[0].startswith("250")
    assert client.command("MAIL FROM:<sender@orig.test> BODY=8BITMIME SMTPUTF8")[0].startswith("250")
    for rcpt in recipients:
        assert client.command(f"RCPT TO:<{rcpt}>")[0].startswith("250")
    assert client.command("DATA")[0].startswith("354")
    client.send(body + b".\r\n")
    return [client.reply()[0] for _ in recipients]


def test_one_reply_per_recipient_after_data(lmtp):
    path, recorder = lmtp
    client = Client(path)
    body = received("4XyzAbc") + b"Subject: x\r\n\r\nhi\r\n"
    replies = transaction(client, ["a@d.test", "defer@d.test", "b@d.test"], body)
    assert [r[:3] for r in replies] == ["250", "451", "250"]
    assert replies[1] == "451 4.3.0 try later"
    assert [c[0] for c in recorder.calls] == [
        {"queue_id": "4XyzAbc", "sender": "sender@orig.test", "recipient": r}
        for r in ("a@d.test", "defer@d.test", "b@d.test")]
    assert {c[1] for c in recorder.calls} == {body.replace(b"\r\n", b"\n")}      # LF line ends, as the pipe gets


def test_many_messages_on_one_connection_and_xforward_is_per_message(lmtp):
    path, recorder = lmtp
    client = Client(path)
    transaction(client, ["a@d.test"], received("4QID111") + b"Subject: 1\r\n\r\n1\r\n", ident="4QID111")
    assert client.command("MAIL FROM:<>")[0].startswith("250")         # no XFORWARD this time
    assert client.command("RCPT TO:<a@d.test>")[0].startswith("250")
    assert client.command("DATA")[0].startswith("354")
    client.send(received("4QID222") + b"Subject: 2\r\n\r\n2\r\n.\r\n")
    assert client.reply()[0].startswith("250")
    # without IDENT no receipt may apply: a key no milter receipt has
    assert [c[0]["queue_id"] for c in recorder.calls] == ["4QID111", "local:4QID222"]
    assert client.command("QUIT") == ["221 2.0.0 bye"]


@pytest.mark.parametrize("ident, body, key", [
    # a bounce Postfix made: no XFORWARD; its own Received gives a stable key, not a receipt's
    (None, b"Received: by mx.fwd.test (Postfix)\r\n\tid DCBBF17E2F3; Sat, 28 Nov 2026 09:27:43 +0000\r\n"
           b"Subject: bounce\r\n\r\nx\r\n", "local:DCBBF17E2F3"),
    (None, b"Received: by mx.fwd.test (Postfix, from userid 0)\r\n\tid ABCDEF123; now\r\n\r\nx\r\n",
     "local:ABCDEF123"),
    # an IDENT copied from another message (smtpd takes it from XFORWARD clients): no receipts
    ("VICTIM1234", received("OWN5678") + b"\r\nx\r\n", "local:OWN5678"),
    # the forger's own Received below Postfix's is never read
    ("OWN5678", received("OWN5678") + b"Received: by evil (Postfix) id VICTIM1234;\r\n\r\nx\r\n", "OWN5678"),
    # no Postfix Received on top (a milter put a field there, or header_checks took it out)
    ("OWN5678", b"X-Top: 1\r\nReceived: from a (b) id VICTIM1234; now\r\n\r\nx\r\n", None),
])
def test_only_the_message_the_milter_saw_gets_its_receipts(lmtp, ident, body, key):
    path, recorder = lmtp
    assert transaction(Client(path), ["a@d.test"], body, ident=ident)[0].startswith("250")
    got = recorder.calls[0][0]["queue_id"]
    if key is None:
        assert got.startswith("local:") and len(got) == 26        # the header's digest: stable on retries
    else:
        assert got == key


def test_dots_are_unstuffed_and_long_lines_kept_whole(lmtp):
    path, recorder = lmtp
    long = b"x" * 200_000
    body = b"Subject: dots\r\n\r\n..leading dot\r\n.\tand tab\r\n" + long + b"\r\nend\r\n"
    transaction(Client(path), ["a@d.test"], body)
    assert recorder.calls[0][1] == b"Subject: dots\n\n.leading dot\n\tand tab\n" + long + b"\nend\n"


def test_a_null_sender_and_a_quoted_recipient(lmtp):
    path, recorder = lmtp
    client = Client(path)
    client.command("LHLO x")
    client.command("XFORWARD IDENT=Q2")
    client.command("MAIL FROM:<>")
    assert client.command('RCPT TO:<"odd>name"@d.test> NOTIFY=NEVER')[0].startswith("250")
    client.command("DATA")
    client.send(b"\r\n.\r\n")
    assert client.reply()[0].startswith("250")
    request = recorder.calls[0][0]
    assert (request["sender"], request["recipient"]) == ("", '"odd>name"@d.test')
    assert request["queue_id"].startswith("local:")      # no Postfix Received: no receipt applies


@pytest.mark.parametrize("commands, expected", [
    (["MAIL FROM:<a@b.test>"], "503"),                      # before LHLO
    (["LHLO x", "RCPT TO:<a@d.test>"], "503"),             # before MAIL
    (["LHLO x", "DATA"], "503"),
    # what tmail cannot read defers (451): a 5xx would bounce mail the milter accepted
    (["LHLO x", "MAIL FROM:a@b.test"], "451"),
    (["LHLO x", "MAIL FROM:<a@b.test>", "RCPT TO:<>"], "451"),
    (["LHLO x", "MAIL FROM:<a@b.test>", "MAIL FROM:<c@b.test>"], "503"),
    (["LHLO x", "VRFY a"], "500"),
    (["LHLO x", "RSET"], "250"),
    (["LHLO x", "NOOP"], "250"),
])
def test_out_of_order_and_malformed_commands(lmtp, commands, expected):
    path, recorder = lmtp
    client = Client(path)
    for command in commands:
        reply = client.command(command)
    assert reply[-1].startswith(expected)
    assert recorder.calls == []


def test_an_overlong_command_is_refused_and_the_session_goes_on(lmtp):
    path, _ = lmtp
    client = Client(path)
    assert client.command("NOOP " + "x" * 10_000)[0].startswith("500 5.5.2")
    assert client.command("NOOP")[0].startswith("250")


def test_a_client_gone_in_data_delivers_nothing(lmtp):
    path, recorder = lmtp
    client = Client(path)
    client.command("LHLO x")
    client.command("XFORWARD IDENT=Q3")
    client.command("MAIL FROM:<a@b.test>")
    client.command("RCPT TO:<a@d.test>")
    client.command("DATA")
    client.send(b"Subject: cut\r\n\r\nhalf")
    client.sock.close()
    other = Client(path)              # the server is still there, and delivered nothing
    assert other.command("NOOP")[0].startswith("250")
    assert recorder.calls == []


def test_the_pipe_speaks_the_daemons_wire_protocol():
    """deliver.py keeps its own copy of the protocol's constants (importing
    the package cost every message a millisecond)."""
    from tmail.mailpath import deliver, wire
    assert (deliver.MAGIC, deliver.CHUNK) == (wire.MAGIC, wire.CHUNK)


@given(st.text())
def test_the_pipe_writes_json_strings_the_daemon_reads_back(text):
    """tmail-deliver builds its header line without importing json (start-up
    time on every message): whatever Postfix passes, the daemon reads the same."""
    import json

    from tmail.mailpath.deliver import _json_string
    assert json.loads(_json_string(text)) == text
    assert json.loads(_json_string("a\udc80b")) == "a\udc80b"      # an undecodable argv byte


@pytest.mark.parametrize("argument, expected", [
    ('FROM:<"ab\\\\"@orig.test>', '"ab\\\\"@orig.test'),       # the local part ab\ : its quote closes
    ('TO:<"shop+x\\\\"@d.test>', '"shop+x\\\\"@d.test'),
    ('TO:<"a\\\\\\">"@d.test>', '"a\\\\\\">"@d.test'),          # a\"> : an escaped \ then an escaped "
    ('TO:<"odd>name"@d.test> NOTIFY=NEVER', '"odd>name"@d.test'),
    ('FROM:<>', ''),
    ('TO:<"unclosed@d.test>', None),
    ('TO:a@d.test', None),
])
def test_addresses_are_read_as_postfix_writes_them(argument, expected):
    """A quoted local part ending in a backslash got 501 and was bounced."""
    from tmail.mailpath.lmtp import _path
    assert _path(argument, argument.split(":")[0]) == expected


def test_a_crlf_split_between_two_reads_becomes_lf(lmtp):
    from tmail.mailpath.wire import CHUNK
    path, recorder = lmtp
    line = b"x" * (CHUNK - 1)          # with its CR exactly one read: the LF comes with the next
    transaction(Client(path), ["a@d.test"], received("4Q99999") + line + b"\r\nend\r\n", ident="4Q99999")
    assert recorder.calls[0][1] == received("4Q99999").replace(b"\r\n", b"\n") + line + b"\nend\n"


def test_sessions_are_capped():
    recorder = Recorder()
    directory = tempfile.mkdtemp()
    server = lmtp_server(os.path.join(directory, "lmtp.sock"), recorder, hostname="mx.test", max_sessions=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        held = [Client(server.server_address) for _ in range(2)]
        third = socket.socket(socket.AF_UNIX)
        third.connect(server.server_address)
        assert third.makefile("rb").readline().startswith(b"421 4.3.2")
        held[0].command("QUIT")
        wait = time.monotonic() + 5
        while time.monotonic() < wait:          # its place frees once the session has ended
            fourth = socket.socket(socket.AF_UNIX)
            fourth.connect(server.server_address)
            if fourth.makefile("rb").readline().startswith(b"220"):
                break
        else:
            raise AssertionError("no session was let in after one ended")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("trickle", [b"x", b"line\r\n"], ids=["no line end", "whole lines"])
def test_data_sent_a_byte_at_a_time_ends_at_the_time_limit(monkeypatch, trickle):
    """Each byte restarts the socket's timeout, so only the DATA limit as a
    whole stops a client that never finishes (and holds a session slot)."""
    from tmail.mailpath import lmtp as lmtp_module
    monkeypatch.setattr(lmtp_module, "DATA_TIMEOUT", 1.0)
    recorder = Recorder()
    server = lmtp_server(os.path.join(tempfile.mkdtemp(), "lmtp.sock"), recorder, hostname="mx.test",
                         watch_every=0.2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(server.server_address)
        for command in ("LHLO x", "MAIL FROM:<a@b.test>", "RCPT TO:<a@d.test>", "DATA"):
            client.command(command)
        client.sock.setblocking(False)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 6 and not closed:
            try:
                client.send(trickle)
                closed = client.sock.recv(1) == b""
            except BlockingIOError:    # nothing to read: the session is still open
                pass
            except OSError:            # the server's end is gone
                closed = True
            time.sleep(0.1)
        assert closed, "the session outlived its DATA time limit"
        assert time.monotonic() - started < 4 and recorder.calls == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_stopping_process_answers_a_message_under_way_and_takes_no_new_one(lmtp):
    """While the process stops (tmail.mailpath.draining), a message whose
    DATA is being sent gets 451 per recipient, and any further command 421:
    Postfix retries elsewhere or later, and nothing new is delivered."""
    from tmail.mailpath.draining import DRAIN
    path, recorder = lmtp
    client = Client(path)
    assert client.command("LHLO mx.test")[-1].startswith("250 XFORWARD")
    assert client.command("MAIL FROM:<sender@orig.test>")[0].startswith("250")
    assert client.command("RCPT TO:<a@d.test>")[0].startswith("250")
    assert client.command("DATA")[0].startswith("354")
    DRAIN.stopping.set()
    try:
        client.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        assert client.reply() == ["451 4.3.2 tmail is stopping; will retry"]
        assert client.command("MAIL FROM:<sender@orig.test>") == ["421 4.3.2 tmail is stopping; try again later"]
        assert recorder.calls == []
    finally:
        DRAIN.stopping.clear()
