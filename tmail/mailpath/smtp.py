"""A small streaming SMTP client for reinjection into Postfix.

smtplib wants the whole message in memory; this one sends it chunk by chunk
(LF to CRLF, dot-stuffing) so a 20 MB message costs a few buffers.
"""
from __future__ import annotations

import socket
import threading
import time


class SmtpError(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600


class Abandoned(Exception):
    """The message was not committed: the connection closed before the
    final dot, so Postfix discards what it received."""


class SmtpClient:
    def __init__(self, host: str, port: int, timeout: float, helo: str = "localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        self.dropped = False
        self.extensions: set[str] = set()
        self._expect(220)
        code, lines = self.command(f"EHLO {helo}")
        if code != 250:
            raise SmtpError(code, " ".join(lines))
        self.extensions = {line.split()[0].upper() for line in lines[1:] if line.strip()}

    def _reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.rfile.readline(8192)
            if not line:
                raise SmtpError(421, "connection closed by the server")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text[4:])
            if len(text) < 4 or text[3] != "-":
                try:
                    return int(text[:3]), lines
                except ValueError:
                    raise SmtpError(421, f"bad reply {text!r}") from None

    def _expect(self, wanted: int) -> list[str]:
        code, lines = self._reply()
        if code != wanted:
            raise SmtpError(code, " ".join(lines))
        return lines

    def command(self, line: str) -> tuple[int, list[str]]:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self._reply()

    def envelope(self, sender: str, recipients: list[str], utf8: bool) -> None:
        params = ""
        if "8BITMIME" in self.extensions:
            params += " BODY=8BITMIME"
        if utf8:
            if "SMTPUTF8" not in self.extensions:
                raise SmtpError(450, "reinjection listener lacks SMTPUTF8")
            params += " SMTPUTF8"
        commands = [f"MAIL FROM:<{sender}>{params}", *(f"RCPT TO:<{rcpt}>" for rcpt in recipients), "DATA"]
        wanted = [(250,)] + [(250, 251)] * len(recipients) + [(354,)]
        if "PIPELINING" not in self.extensions:
            for command, good in zip(commands, wanted, strict=True):
                code, lines = self.command(command)
                if code not in good:
                    if command.startswith("RCPT"):
                        self.command("RSET")
                    raise SmtpError(code, " ".join(lines))
            return
        # RFC 2920: the envelope in one write and its replies read in order,
        # two round trips a message fewer (Postfix's smtpd offers it).
        self.sock.sendall("".join(command + "\r\n" for command in commands).encode("utf-8"))
        replies = [self._reply() for _ in commands]
        for (code, lines), good in zip(replies, wanted, strict=True):
            if code not in good:
                if replies[-1][0] == 354:
                    # All destinations or none: DATA was accepted for the
                    # others. Closing before the final dot makes the server
                    # discard the transaction.
                    self.drop()
                raise SmtpError(code, " ".join(lines))

    def send_message(self, chunks, before_end=None) -> str:
        """Stream the message (LF line ends) and return the final 250 text.
        `before_end()` is asked just before the final dot: False abandons
        the transaction (nothing is delivered)."""
        at_line_start, carry = True, b""
        for chunk in chunks:
            chunk = carry + chunk
            # A CR at the end may be half of a CRLF split across chunks.
            carry = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[:-1] if carry else chunk
            if not chunk:
                continue
            if at_line_start and chunk[:1] == b".":
                chunk = b"." + chunk
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
            self.sock.sendall(chunk)
            at_line_start = chunk.endswith(b"\n")
        if carry:
            self.sock.sendall(carry)
            at_line_start = False
        if before_end is not None and not before_end():
            self.drop()
            raise Abandoned("the delivery agent stopped waiting")
        self.sock.sendall(b".\r\n" if at_line_start else b"\r\n.\r\n")
        return " ".join(self._expect(250))

    def drop(self) -> None:
        """Close the connection now, without QUIT (in DATA it would be
        message text). Shut down, not only closed: the reader made from the
        socket keeps it open, and the server would wait on it."""
        self.dropped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.rfile.close()
        self.sock.close()

    def close(self) -> None:
        if self.dropped:
            return
        try:
            self.command("QUIT")
        except (OSError, SmtpError):
            pass
        finally:
            self.drop()


class SmtpPool:
    """Reinjection sessions kept open between messages: a new SMTP session
    per message cost Postfix's smtpd a connection set-up and tear-down
    each time. A session goes back to the pool only after a 250 for the
    whole message; anything else closes it. One that waited longer than
    `idle` is not reused (smtpd_timeout is 300 s), and one the server has
    closed meanwhile fails before any data: the transaction then starts
    again on a new session, so nothing is sent twice.

    `size` idle sessions are kept: as many as deliveries run at once in a
    process (Postfix's lmtp client opens 20 connections by default). With
    8, one forward in ten opened a session (and closed another) under load.
    Sessions open at once stay bounded by the deliveries in progress."""

    def __init__(self, host: str, port: int, timeout: float, helo: str = "localhost", *,
                 size: int = 32, idle: float = 30.0):
        self.host, self.port, self.timeout, self.helo = host, port, timeout, helo
        self.size, self.idle = size, idle
        self._idle: list[tuple[SmtpClient, float]] = []
        self._lock = threading.Lock()

    def _new(self) -> SmtpClient:
        return SmtpClient(self.host, self.port, self.timeout, self.helo)

    def _take(self) -> SmtpClient | None:
        with self._lock:
            while self._idle:
                client, since = self._idle.pop()
                if time.monotonic() - since < self.idle:
                    return client
                client.drop()
        return None

    def _give_back(self, client: SmtpClient) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append((client, time.monotonic()))
                return
        client.close()

    def transaction(self, sender: str, recipients: list[str], utf8: bool, chunks, before_end=None) -> str:
        """One message: the final 250's text, or SmtpError / OSError / Abandoned."""
        client = self._take()
        if client is not None:
            try:
                client.envelope(sender, recipients, utf8)
            except (OSError, SmtpError) as exc:
                client.drop()
                if isinstance(exc, SmtpError) and exc.code != 421:
                    raise       # a real answer (a refused recipient), not a stale session
                client = None
        if client is None:
            client = self._new()
            try:
                client.envelope(sender, recipients, utf8)
            except BaseException:
                client.close()
                raise
        try:
            reply = client.send_message(chunks, before_end=before_end)
        except BaseException:
            client.close()
            raise
        self._give_back(client)
        return reply
