"""The LMTP listener (RFC 2033): Postfix's lmtp(8) client hands messages
over on connections it keeps open, with no process per message.

It goes through the same Delivery as the pipe, one recipient at a time,
and answers each recipient after DATA with what the pipe's exit status
says: 250 forwarded or dropped, 451 for every temporary failure. Nothing
is answered 250 before the reinjection's 250.

The queue id the receipts are kept by comes from XFORWARD IDENT (the
lmtp client sends it, for mail that came in over SMTP, when this listener
offers XFORWARD and lmtp_send_xforward_command=yes), else from the
Received field Postfix itself put on top of the message ("by host
(Postfix) id QUEUEID", as on a bounce it made): a message with neither is
deferred, never forwarded on a guess. The message is spooled (in memory up to SPOOL_MEMORY,
then on disk), so memory stays bounded whatever its size, and it is read
again for each recipient.
"""
from __future__ import annotations

import logging
import re
import socketserver
import tempfile
import time

from .delivery import EX_OK
from .servers import _UnixServer
from .wire import CHUNK

log = logging.getLogger("tmail.lmtp")

MAX_COMMAND = 4096            # RFC 5321 says 512; Postfix's XFORWARD lines are longer
MAX_RECIPIENTS = 1000         # lmtp_destination_recipient_limit is 50 by default
SPOOL_MEMORY = 1024 * 1024
DATA_TIMEOUT = 600            # Postfix's lmtp_data_done_timeout
MARGIN = 15                   # give up this long before the client would
IDLE_TIMEOUT = 300            # Postfix's lmtp cache keeps a connection idle for far less
XFORWARD = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


class _Closed(Exception):
    """The client went away."""


def _path(argument: str, keyword: str) -> str | None:
    """The address of `MAIL FROM:<a>` / `RCPT TO:<a>` (ESMTP parameters
    after it ignored), or None when the command is malformed."""
    if not argument.upper().startswith(keyword + ":"):
        return None
    rest = argument[len(keyword) + 1:].strip()
    if not rest.startswith("<"):
        return None
    end = rest.find(">")
    # a quoted local part may hold '>': find the '>' after the quotes
    if rest.startswith('<"'):
        closing = rest.find('"', 2)
        while closing != -1 and rest[closing - 1] == "\\":
            closing = rest.find('"', closing + 1)
        end = rest.find(">", closing) if closing != -1 else -1
    return rest[1:end] if end != -1 else None


def _reply(outcome) -> str:
    text = " ".join(outcome.text.split())[:400]
    return f"250 {text}" if outcome.status == EX_OK else f"451 {text}"


class _Session(socketserver.StreamRequestHandler):
    delivery = None           # set by lmtp_server
    hostname = "localhost"
    timeout = IDLE_TIMEOUT

    def handle(self):
        try:
            self._send("220 " + self.hostname + " LMTP tmail")
            self._commands()
        except (_Closed, OSError) as exc:
            log.debug("lmtp client went away: %s", exc)

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
        if path is None:
            self._send("501 5.5.4 syntax: MAIL FROM:<address>")
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
            self._send("501 5.5.4 syntax: RCPT TO:<address>")
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
            self._receive(spool)
            replies = [self._deliver_one(recipient, spool, started) for recipient in self.recipients]
        self._send(*replies)       # one reply per recipient, in order (RFC 2033)
        self._reset()
        self.ident = None          # XFORWARD describes one message

    def _receive(self, spool) -> None:
        """The message up to the lone dot, unstuffed, with LF line ends as
        the pipe passes it."""
        at_start = True
        while True:
            line = self.rfile.readline(CHUNK)
            if not line:
                raise _Closed("end of input in DATA")
            if at_start and line in (b".\r\n", b".\n"):
                return
            if at_start and line.startswith(b"."):
                line = line[1:]
            at_start = line.endswith(b"\n")
            if line.endswith(b"\r\n"):
                line = line[:-2] + b"\n"
            spool.write(line)

    def _deliver_one(self, recipient: str, spool, started: float) -> str:
        queue_id = self.ident or _received_id(spool)
        if queue_id is None:
            return ("451 4.3.5 no queue id from the client (Postfix: set lmtp_send_xforward_command=yes "
                    "for tmail's lmtp service; `tmail postfix install` does)")
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


_QUEUE_ID = re.compile(rb"\sid ([0-9A-Za-z]{6,30})(?:;|\s|$)")


def _received_id(spool) -> str | None:
    """The queue id in the message's first field when that is Postfix's own
    Received (Postfix puts it on top of everything it queues)."""
    spool.seek(0)
    lines = spool.read(4096).split(b"\n")
    if not lines[0].lower().startswith(b"received:"):
        return None
    field = lines[0]
    for line in lines[1:]:
        if not line.startswith((b" ", b"\t")):
            break
        field += b" " + line
    found = _QUEUE_ID.search(field)
    return found.group(1).decode("ascii") if found else None


def lmtp_server(path: str, delivery, hostname: str = "localhost", mode: int = 0o660) -> _UnixServer:
    handler = type("LmtpSession", (_Session,), {"delivery": delivery, "hostname": hostname})
    return _UnixServer(path, handler, mode)
