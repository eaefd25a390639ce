"""The LMTP listener (RFC 2033): Postfix's lmtp(8) client hands messages
over on connections it keeps open, with no process per message.

It goes through the same Delivery as the pipe, one recipient at a time,
and answers each recipient after DATA with what the pipe's exit status
says: 250 forwarded or dropped, 451 for every temporary failure. Nothing
is answered 250 before the reinjection's 250.

The milter's receipts are kept by queue id. A message gets them only when
XFORWARD IDENT (sent for mail that came in over SMTP, with
lmtp_send_xforward_command=yes) is the id in Postfix's own Received on
top of it; any other message is decided at delivery, as mail that passed
no milter is (queue_key). The message is spooled (in memory up to
SPOOL_MEMORY, then on disk), so memory stays bounded whatever its size,
and it is read again for each recipient. Sessions are capped, and DATA
has a time limit as a whole, not only per read.
"""
from __future__ import annotations

import hashlib
import logging
import re
import socket
import socketserver
import tempfile
import threading
import time

from .delivery import EX_OK
from .draining import DRAIN
from .servers import _UnixServer
from .wire import CHUNK

log = logging.getLogger("tmail.lmtp")

MAX_COMMAND = 4096            # RFC 5321 says 512; Postfix's XFORWARD lines are longer
MAX_RECIPIENTS = 1000         # lmtp_destination_recipient_limit is 50 by default
SPOOL_MEMORY = 256 * 1024       # per session, then a file
MAX_SESSIONS = 200              # Postfix's lmtp processes: default_process_limit is 100
DATA_TIMEOUT = 600            # Postfix's lmtp_data_done_timeout
MARGIN = 15                   # give up this long before the client would
IDLE_TIMEOUT = 300            # Postfix's lmtp cache keeps a connection idle for far less
WATCH_EVERY = 5.0             # how often DATA phases are checked against DATA_TIMEOUT
XFORWARD = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


class _Closed(Exception):
    """The client went away."""


def _path(argument: str, keyword: str) -> str | None:
    """The address of `MAIL FROM:<a>` / `RCPT TO:<a>` (ESMTP parameters
    after it ignored), or None when the command is malformed. Inside a
    quoted local part a backslash escapes the next character and the first
    unescaped quote closes it ("ab\\"@x is the local part ab\\)."""
    if not argument.upper().startswith(keyword + ":"):
        return None
    rest = argument[len(keyword) + 1:].strip()
    if not rest.startswith("<"):
        return None
    position, quoted = 1, False
    while position < len(rest):
        char = rest[position]
        if quoted and char == "\\":
            position += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return rest[1:position]
        position += 1
    return None


def _reply(outcome) -> str:
    text = " ".join(outcome.text.split())[:400]
    return f"250 {text}" if outcome.status == EX_OK else f"451 {text}"


class _Watchdog:
    """Ends a DATA phase that runs past DATA_TIMEOUT. A read cannot: a
    client sending a byte now and then, and never a line end, restarts the
    socket's timeout with each byte, and readline waits for the line. One
    thread a listener shuts such connections down; a message costs two
    dictionary operations."""

    def __init__(self, every: float = WATCH_EVERY):
        self.every = every
        self._due: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="tmail-lmtp-watchdog", daemon=True).start()

    def watch(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._due[sock] = deadline

    def done(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            now = time.monotonic()
            with self._lock:     # held: a session that called done() is never shut down
                for sock in [sock for sock, deadline in self._due.items() if deadline <= now]:
                    del self._due[sock]
                    log.info("lmtp client sent DATA for longer than %d s: connection closed", DATA_TIMEOUT)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)     # the blocked read returns: end of input
                    except OSError:
                        pass


class _Session(socketserver.StreamRequestHandler):
    delivery = None           # set by lmtp_server
    hostname = "localhost"
    sessions: threading.BoundedSemaphore
    watchdog: _Watchdog
    timeout = IDLE_TIMEOUT

    def handle(self):
        if not self.sessions.acquire(blocking=False):
            self._send("421 4.3.2 too many LMTP sessions; try again later")
            return
        try:
            self._send("220 " + self.hostname + " LMTP tmail")
            self._commands()
        except (_Closed, OSError) as exc:
            log.debug("lmtp client went away: %s", exc)
        finally:
            self.sessions.release()

    def _send(self, *lines: str) -> None:
        self.wfile.write("".join(line + "\r\n" for line in lines).encode("utf-8", "replace"))
        self.wfile.flush()

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_COMMAND + 2)
        if not line:
            raise _Closed("end of input")
        return line

    def _reset(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []

    def _commands(self) -> None:
        self._reset()
        self.ident: str | None = None
        greeted = False
        while True:
            raw = self._line()
            if not raw.endswith(b"\n"):
                while not self._line().endswith(b"\n"):    # the rest of an overlong line
                    pass
                self._send("500 5.5.2 line too long")
                continue
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            if DRAIN.stopping.is_set() and verb != "QUIT":
                self._send("421 4.3.2 tmail is stopping; try again later")
                return
            if verb == "LHLO":
                greeted = True
                self._reset()
                self._send(f"250-{self.hostname}", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME",
                           "250-SMTPUTF8", "250 XFORWARD " + " ".join(XFORWARD))
            elif verb == "QUIT":
                self._send("221 2.0.0 bye")
                return
            elif verb == "NOOP":
                self._send("250 2.0.0 ok")
            elif verb == "RSET":
                self._reset()
                self.ident = None
                self._send("250 2.0.0 ok")
            elif not greeted:
                self._send("503 5.5.1 LHLO first")
            elif verb == "XFORWARD":
                self._xforward(argument)
            elif verb == "MAIL":
                self._mail(argument)
            elif verb == "RCPT":
                self._rcpt(argument)
            elif verb == "DATA":
                self._data()
            else:
                self._send("500 5.5.1 command not recognised")

    def _xforward(self, argument: str) -> None:
        for item in argument.split():
            name, _, value = item.partition("=")
            if name.upper() == "IDENT" and value and value != "[UNAVAILABLE]":
                self.ident = value[:64]
        self._send("250 2.0.0 ok")

    def _mail(self, argument: str) -> None:
        path = _path(argument, "FROM")
        if path is None:      # Postfix wrote it: a 5xx here would bounce mail the milter accepted
            self._send("451 4.5.4 tmail cannot read this MAIL FROM; will retry")
        elif self.sender is not None:
            self._send("503 5.5.1 MAIL already given")
        else:
            self.sender = path
            self._send("250 2.1.0 ok")

    def _rcpt(self, argument: str) -> None:
        path = _path(argument, "TO")
        if self.sender is None:
            self._send("503 5.5.1 MAIL first")
        elif not path:
            self._send("451 4.5.4 tmail cannot read this RCPT TO; will retry")
        elif len(self.recipients) >= MAX_RECIPIENTS:
            self._send("452 4.5.3 too many recipients")
        else:
            self.recipients.append(path)
            self._send("250 2.1.5 ok")

    def _data(self) -> None:
        if not self.recipients:
            self._send("503 5.5.1 RCPT first")
            return
        self._send("354 end with <CRLF>.<CRLF>")
        started = time.monotonic()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            self._receive(spool, started)
            with DRAIN.delivery():
                if DRAIN.stopping.is_set():
                    replies = ["451 4.3.2 tmail is stopping; will retry"] * len(self.recipients)
                else:
                    replies = [self._deliver_one(recipient, spool, started)
                               for recipient in self.recipients]
                self._send(*replies)       # one reply per recipient, in order (RFC 2033)
        self._reset()
        self.ident = None          # XFORWARD describes one message

    def _receive(self, spool, started: float) -> None:
        """The message up to the lone dot, unstuffed, with LF line ends as
        the pipe passes it; DATA began at `started`."""
        self.watchdog.watch(self.connection, started + DATA_TIMEOUT)
        try:
            self._receive_lines(spool, started)
        finally:
            self.watchdog.done(self.connection)

    def _receive_lines(self, spool, started: float) -> None:
        at_start, carry = True, b""
        while True:
            line = self.rfile.readline(CHUNK)
            if not line:
                raise _Closed("end of input in DATA")
            if time.monotonic() - started > DATA_TIMEOUT:     # a client trickling lines
                raise _Closed("DATA took longer than its time limit")
            line, carry = carry + line, b""
            if at_start and line in (b".\r\n", b".\n"):
                return
            if at_start and line.startswith(b"."):
                line = line[1:]
            at_start = line.endswith(b"\n")
            if line.endswith(b"\r\n"):
                line = line[:-2] + b"\n"
            elif line.endswith(b"\r"):       # the LF may come with the next read
                line, carry = line[:-1], b"\r"
            spool.write(line)

    def _deliver_one(self, recipient: str, spool, started: float) -> str:
        queue_id = queue_key(self.ident, spool)
        spool.seek(0)

        def chunks():
            while True:
                data = spool.read(CHUNK)
                if not data:
                    return
                yield data

        def still_wanted() -> bool:
            return time.monotonic() - started < DATA_TIMEOUT - MARGIN

        request = {"queue_id": queue_id, "sender": self.sender or "", "recipient": recipient}
        return _reply(self.delivery.deliver(request, chunks(), still_wanted))


# Postfix's own trace field: "by mx.example (Postfix) with ESMTP id 4XyzAbc;",
# "(Postfix, from userid 0) id ...", or a bounce's "(Postfix)\n\tid ...".
_POSTFIX_RECEIVED = re.compile(rb"\sby \S+ \(Postfix[^)]*\)(?:\s+with\s+\S+)?\s+id\s+([0-9A-Za-z]{6,30})(?:;|\s|$)")


def _received_id(spool) -> str | None:
    """The queue id in the message's first Received field, when Postfix
    wrote it (Postfix puts its own on top of everything it queues)."""
    spool.seek(0)
    lines = spool.read(64 * 1024).split(b"\n")
    for number, line in enumerate(lines):
        if not line.strip():
            return None                      # the end of the header: no Received
        if line.lower().startswith(b"received:"):
            field = line
            for more in lines[number + 1:]:
                if not more.startswith((b" ", b"\t")):
                    break
                field += b" " + more
            found = _POSTFIX_RECEIVED.search(field)
            return found.group(1).decode("ascii") if found else None
    return None


def queue_key(ident: str | None, spool) -> str:
    """The key the delivery looks the milter's receipts up by. XFORWARD IDENT
    alone is not enough: smtpd takes it from any client it lets send
    XFORWARD (an after-filter listener), and a copy of another message's id
    would claim that message's receipts. So it counts only when it is the
    id Postfix's own Received gives; anything else (local mail, a bounce
    Postfix made, a mismatch) gets a key no receipt has, stable across
    retries, and is decided at delivery as mail that passed no milter."""
    own = _received_id(spool)
    if ident is not None and own == ident:
        return ident
    spool.seek(0)
    return "local:" + (own or hashlib.sha256(spool.read(64 * 1024)).hexdigest()[:20])


def lmtp_server(where: str | socket.socket, delivery, hostname: str = "localhost", mode: int = 0o660,
                max_sessions: int = MAX_SESSIONS, watch_every: float = WATCH_EVERY) -> _UnixServer:
    handler = type("LmtpSession", (_Session,), {"delivery": delivery, "hostname": hostname,
                                                "sessions": threading.BoundedSemaphore(max_sessions),
                                                "watchdog": _Watchdog(watch_every)})
    return _UnixServer(where, handler, mode)
