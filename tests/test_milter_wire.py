"""tmail's milter class run by the real libmilter (pymilter's C module),
spoken to over its socket as Postfix speaks the milter protocol.

pymilter's TestCtx accepts what the C module refuses (macro lists as
bytes, for one): a negotiation that fails in the real module silently
falls back to every callback, each one awaited, which only the wire shows.
"""
import os
import socket
import struct
import subprocess
import sys
import time

import Milter
import pytest

# Postfix's offer (milter8.c): protocol version 6, every action and step it knows
OFFERED_ACTIONS = 0x1FF
OFFERED_PROTOCOL = 0x1FFFFF
STAGES = {"envfrom": 2, "envrcpt": 3, "eom": 5}     # SMFIM_ENVFROM, _ENVRCPT, _EOM

RUN_MILTER = """
import sys, Milter, milter
from tmail.mailpath.milter import make_factory
Milter.factory = make_factory(None)     # mail that is not tmail's never reaches the service
Milter.runmilter("tmail", "unix:" + sys.argv[1], timeout=10)
"""


@pytest.fixture
def mta(tmp_path):
    """A connection to tmail's milter, run by libmilter in a process of its own."""
    path = str(tmp_path / "milter.sock")
    proc = subprocess.Popen([sys.executable, "-c", RUN_MILTER, path], stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        with Mta(path) as connected:
            yield connected
    finally:
        proc.kill()      # libmilter's orderly stop waits seconds for its threads
        proc.wait(10)


class Mta:
    """The MTA's side of the milter protocol: packets are a 4-byte length,
    a command letter and its data."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(path)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.sock.close()

    def send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack("!I", len(data) + 1) + command + data)

    def macros(self, stage: bytes, **values: str) -> None:
        self.send(b"D", stage + b"".join(f"{{{k}}}\0{v}\0".encode() for k, v in values.items()))

    def reply(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack("!I", self._read(4))
        packet = self._read(length)
        return packet[:1], packet[1:]

    def nothing_waiting(self) -> bool:
        self.sock.settimeout(0.3)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the milter closed the connection"
            data += chunk
        return data

    def negotiate(self, actions=OFFERED_ACTIONS) -> tuple[int, int, dict[int, str]]:
        self.send(b"O", struct.pack("!III", 6, actions, OFFERED_PROTOCOL))
        command, data = self.reply()
        assert command == b"O"
        _version, actions, protocol = struct.unpack("!III", data[:12])
        lists, rest = {}, data[12:]
        while rest:
            (stage,) = struct.unpack("!I", rest[:4])
            text, rest = rest[4:].split(b"\0", 1)
            lists[stage] = text.decode()
        return actions, protocol, lists


def test_the_real_milter_module_takes_the_negotiation(mta):
    _actions, protocol, lists = mta.negotiate()
    # no reply awaited to CONNECT, HELO, MAIL FROM and header fields; RCPT answered
    for step in (Milter.P_NR_CONN, Milter.P_NR_HELO, Milter.P_NR_MAIL, Milter.P_NR_HDR,
                 Milter.P_NOEOH, Milter.P_NOUNKNOWN, Milter.P_HDR_LEADSPC):
        assert protocol & step, hex(step)
    for step in (Milter.P_NR_RCPT, Milter.P_NORCPT, Milter.P_NODATA, Milter.P_NOHDRS):
        assert not protocol & step, hex(step)
    # only the macros tmail reads, stage by stage
    assert {stage: set(text.split()) for stage, text in lists.items()} == {
        STAGES["envfrom"]: {"{mail_addr}", "{auth_authen}"},
        STAGES["envrcpt"]: {"{rcpt_addr}", "{rcpt_mailer}"},
        STAGES["eom"]: {"i"},
    }


def test_an_mta_that_cannot_set_macro_lists_gets_every_step(mta):
    _actions, protocol, lists = mta.negotiate(actions=OFFERED_ACTIONS & ~Milter.SETSYMLIST)
    assert lists == {} and not protocol & (Milter.P_NR_CONN | Milter.P_NR_MAIL)


def test_mail_that_is_not_tmails_costs_two_answers(mta):
    """A whole session as Postfix sends it: CONNECT, HELO and MAIL FROM get
    no answer, RCPT for another transport CONTINUE, DATA ACCEPT (nothing
    more of the message is sent)."""
    mta.negotiate()
    mta.send(b"C", b"client.b.test\0" + b"4" + struct.pack("!H", 25) + b"192.0.2.7\0")
    mta.send(b"H", b"client.b.test\0")
    mta.macros(b"M", mail_addr="someone@b.test")
    mta.send(b"M", b"<someone@b.test>\0")
    assert mta.nothing_waiting()
    mta.macros(b"R", rcpt_addr="friend@elsewhere.test", rcpt_mailer="smtp")
    mta.send(b"R", b"<friend@elsewhere.test>\0")
    assert mta.reply() == (b"c", b"")
    mta.send(b"T")
    assert mta.reply() == (b"a", b"")
    mta.send(b"Q")
