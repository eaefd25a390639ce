"""The LMTP listener's protocol (RFC 2033) over a real UNIX socket, with a
recording delivery in place of the daemon's: per-recipient replies after
DATA, dot-unstuffing, the queue id from XFORWARD IDENT, bounded input."""
from __future__ import annotations

import os
import socket
import tempfile
import threading

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
    replies = transaction(client, ["a@d.test", "defer@d.test", "b@d.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert [r[:3] for r in replies] == ["250", "451", "250"]
    assert replies[1] == "451 4.3.0 try later"
    assert [c[0] for c in recorder.calls] == [
        {"queue_id": "4XyzAbc", "sender": "sender@orig.test", "recipient": r}
        for r in ("a@d.test", "defer@d.test", "b@d.test")]
    assert {c[1] for c in recorder.calls} == {b"Subject: x\n\nhi\n"}      # LF line ends, as the pipe gets


def test_many_messages_on_one_connection_and_xforward_is_per_message(lmtp):
    path, recorder = lmtp
    client = Client(path)
    transaction(client, ["a@d.test"], b"Subject: 1\r\n\r\n1\r\n", ident="QID1")
    assert client.command("MAIL FROM:<>")[0].startswith("250")         # no XFORWARD this time
    assert client.command("RCPT TO:<a@d.test>")[0].startswith("250")
    assert client.command("DATA")[0].startswith("354")
    client.send(b"Subject: 2\r\n\r\n2\r\n.\r\n")
    reply = client.reply()[0]
    assert reply.startswith("451 4.3.5") and "xforward" in reply.lower()      # deferred, never guessed
    assert [c[0]["queue_id"] for c in recorder.calls] == ["QID1"]
    assert client.command("QUIT") == ["221 2.0.0 bye"]


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
    assert recorder.calls[0][0] == {"queue_id": "Q2", "sender": "", "recipient": '"odd>name"@d.test'}


@pytest.mark.parametrize("commands, expected", [
    (["MAIL FROM:<a@b.test>"], "503"),                      # before LHLO
    (["LHLO x", "RCPT TO:<a@d.test>"], "503"),             # before MAIL
    (["LHLO x", "DATA"], "503"),
    (["LHLO x", "MAIL FROM:a@b.test"], "501"),
    (["LHLO x", "MAIL FROM:<a@b.test>", "RCPT TO:<>"], "501"),
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


def test_without_xforward_the_queue_id_is_postfixs_own_received(lmtp):
    """A bounce Postfix made comes with no XFORWARD: its Received says the id."""
    path, recorder = lmtp
    client = Client(path)
    body = (b"Received: by mx.fwd.test (Postfix)\r\n\tid DCBBF17E2F3; Sat, 28 Nov 2026 09:27:43 +0000 (UTC)\r\n"
            b"Subject: bounce\r\n\r\nx\r\n")
    assert transaction(client, ["a@d.test"], body, ident=None)[0].startswith("250")
    assert recorder.calls[0][0]["queue_id"] == "DCBBF17E2F3"
    # a Received lower down (the sender's own) is never taken
    other = b"Subject: x\r\nReceived: from a (b) id ABCDEF123; now\r\n\r\nx\r\n"
    assert transaction(client, ["a@d.test"], other, ident=None)[0].startswith("451 4.3.5")


@given(st.text())
def test_the_pipe_writes_json_strings_the_daemon_reads_back(text):
    """tmail-deliver builds its header line without importing json (start-up
    time on every message): whatever Postfix passes, the daemon reads the same."""
    import json

    from tmail.mailpath.deliver import _json_string
    assert json.loads(_json_string(text)) == text
    assert json.loads(_json_string("a\udc80b")) == "a\udc80b"      # an undecodable argv byte
