"""The milter: RCPT-time verdicts, translated to SMTP replies.

Policy lives in the core (tmail.core.resolve); this class only turns
pymilter callbacks into a Service.verdict() call and back. It negotiates
the callbacks it needs (pymilter marks every method not overridden here as
'no callback', so Postfix skips those round trips); CONNECT, HELO and MAIL
FROM are 'no reply', so Postfix does not wait for them either. At the end
of a message to tmail's addresses it records the client's SPF result in an
Authentication-Results field (only the milter knows the client's address).
"""
from __future__ import annotations

import logging
import socket

import Milter

from ..core import authresults
from ..core.address import AddressError
from ..core.replies import TEMPFAIL, reply_for
from ..core.verdict import Kind

log = logging.getLogger("tmail.milter")


def _unbracket(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


class TmailMilter(Milter.Base):
    service = None  # set by make_factory

    def __init__(self):
        self.client_ip: str | None = None
        self.helo = ""
        self.sender = ""
        self.ours = False                # a recipient of this message is tmail's
        self.reserved: list[int] = []   # aliases counted for the current message

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            # libmilter gives (address, port, ...); pymilter's TestCtx the address alone
            self.client_ip = hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, hostname):
        self.helo = hostname or ""
        return Milter.CONTINUE

    @Milter.noreply  # never refuses a sender: Postfix need not wait for an answer
    def envfrom(self, sender, *params):
        self.sender = _unbracket(sender)
        self.ours = False
        return Milter.CONTINUE

    def envrcpt(self, recipient, *params):
        rcpt = _unbracket(recipient)
        if self.service.surely_foreign(rcpt):  # other mail: no database, no thread hand-off
            log.info("rcpt=<%s> from=<%s> verdict=not-ours reason=not a tmail domain", rcpt, self.sender)
            return Milter.CONTINUE
        try:
            verdict = self.service.run(self.service.checked_verdict, rcpt, self.sender)
        except AddressError as exc:
            log.info("rcpt=<%s> from=<%s> verdict=malformed reason=%s", rcpt, self.sender, exc)
            self.setreply("501", "5.1.3", "Bad recipient address syntax")
            return Milter.REJECT
        except Exception:
            log.exception("rcpt=<%s> from=<%s> verdict=tempfail (internal error)", rcpt, self.sender)
            self.setreply(TEMPFAIL.code, TEMPFAIL.xcode, TEMPFAIL.text)
            return Milter.TEMPFAIL
        if verdict.kind is Kind.FORWARD and verdict.alias is not None \
                and verdict.alias.max_messages is not None:
            self.reserved.append(verdict.alias.id)  # counted by reserve()
        reply = reply_for(verdict)
        self.ours = self.ours or (reply is None and verdict.kind is not Kind.NOT_OURS)
        log.info("rcpt=<%s> from=<%s> verdict=%s reason=%s%s", rcpt, self.sender,
                 verdict.kind.value, verdict.reason, " (drop)" if verdict.drop else "")
        if reply is None:
            return Milter.CONTINUE
        self.setreply(reply.code, reply.xcode, reply.text.replace("%", "%%"))
        return Milter.REJECT


    # End of message, abort and close are always called (not negotiable):
    # the message counts taken at RCPT time stand only if the message was
    # accepted, and are given back otherwise.
    def eom(self):
        self.reserved.clear()
        service = self.service
        if self.ours and service.spf_check is not None and self.client_ip:
            try:
                spf = service.run(service.spf_check, self.client_ip, self.sender, self.helo)
                # at the top, above any field with tmail's authserv-id the sender wrote
                self.addheader("Authentication-Results",
                               authresults.spf_field_value(service.authserv_id, spf), 0)
            except Exception:   # the delivery reports spf=none; the message is not held up
                log.exception("from=<%s> SPF result not recorded", self.sender)
        return Milter.CONTINUE

    def abort(self):
        if self.reserved:
            self.service.run(self.service.release, list(self.reserved))
            self.reserved.clear()
        return Milter.CONTINUE

    def close(self):
        return self.abort()


def make_factory(service):
    cls = type("BoundTmailMilter", (TmailMilter,), {"service": service})
    return cls
