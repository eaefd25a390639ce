"""The milter: RCPT-time verdicts, translated to SMTP replies.

Policy lives in the core (tmail.core.resolve); this class only turns
pymilter callbacks into a Service.verdict() call and back. It negotiates
two callbacks, MAIL FROM and RCPT TO: pymilter marks every method not
overridden here as 'no callback', so Postfix skips those round trips.
"""
from __future__ import annotations

import logging

import Milter

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
        self.sender = ""
        self.reserved: list[int] = []   # aliases counted for the current message

    @Milter.noreply  # never refuses a sender: Postfix need not wait for an answer
    def envfrom(self, sender, *params):
        self.sender = _unbracket(sender)
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
