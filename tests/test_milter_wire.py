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
import threading
import time

import Milter
import pytest

from tmail.mailpath import milter_probe
from tmail.mailpath.milter_probe import OFFERED_ACTIONS, MilterClient

RUN_MILTER = """
import sys, Milter, milter
from tmail.mailpath.milter import make_factory
Milter.factory = make_factory(None)     # mail that is not tmail's never reaches the service
if sys.argv[2] == "failing":            # a negotiation that falls back, as a broken one does
    Milter.factory.negotiate = lambda self, opts: Milter.ALL_OPTS
Milter.runmilter("tmail", "unix:" + sys.argv[1], timeout=10)
"""


def run_milter(tmp_path, kind="tmail"):
    """tmail's milter class run by libmilter in a process of its own: its socket."""
    path = str(tmp_path / "milter.sock")
    proc = subprocess.Popen([sys.executable, "-c", RUN_MILTER, path, kind], stderr=subprocess.PIPE)
    for _ in range(200):
        if os.path.exists(path):
            return path, proc
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("the milter did not start")


@pytest.fixture
def milter_at(tmp_path):
    procs = []

    def start(kind="tmail"):
        directory = tmp_path / kind
        directory.mkdir()
        path, proc = run_milter(directory, kind)
        procs.append(proc)
        return path
    yield start
    for proc in procs:
        proc.kill()      # libmilter's orderly stop waits seconds for its threads
        proc.wait(10)


@pytest.fixture
def mta(milter_at):
    """A connection to tmail's milter, as Postfix's."""
    with MilterClient(milter_at()) as connected:
        yield connected


def nothing_waiting(mta: MilterClient) -> bool:
    """No answer came for what was sent (the milter did not reply)."""
    mta.sock.settimeout(0.3)
    try:
        return mta.sock.recv(1, socket.MSG_PEEK) == b""
    except TimeoutError:
        return True
    finally:
        mta.sock.settimeout(5)


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
        Milter.M_ENVFROM: {"{mail_addr}", "{auth_authen}"},
        Milter.M_ENVRCPT: {"{rcpt_addr}", "{rcpt_mailer}"},
        Milter.M_EOM: {"i"},
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
    assert nothing_waiting(mta)
    mta.macros(b"R", rcpt_addr="friend@elsewhere.test", rcpt_mailer="smtp")
    mta.send(b"R", b"<friend@elsewhere.test>\0")
    assert mta.reply() == (b"c", b"")
    mta.send(b"T")
    assert mta.reply() == (b"a", b"")
    mta.send(b"Q")


def test_postfix_check_tells_a_negotiation_that_fell_back(milter_at):
    ok, detail = milter_probe.check(milter_at())
    assert ok, detail
    ok, detail = milter_probe.check(milter_at("failing"))
    assert not ok and "CONNECT, HELO, MAIL FROM" in detail
    ok, detail = milter_probe.check("/nonexistent/milter.sock")
    assert not ok and "No such file" in detail


@pytest.mark.parametrize("answer, told", [
    (b"\xff\xff\xff\xff", "4294967295 bytes announced"),    # not read: refused at once
    (b"\x00\x00\x00\x00", "0 bytes announced"),
    (b"\x00\x00\x00\x05y250 ", "not a milter negotiation answer"),
    (b"220 mx.example ESMTP\r\n", "bytes announced"),         # not a milter at all
])
def test_postfix_check_is_not_fooled_by_what_answers_on_the_socket(tmp_path, answer, told):
    path = str(tmp_path / "other.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)

        def answer_once():
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(answer)
                time.sleep(0.5)
        threading.Thread(target=answer_once, daemon=True).start()
        ok, detail = milter_probe.check(path)
    assert not ok and detail.startswith(path) and told in detail, detail
