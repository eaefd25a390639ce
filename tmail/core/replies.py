"""Named SMTP replies: the milter sends them, tests assert on the names."""
from __future__ import annotations

from dataclasses import dataclass

from .verdict import Kind, Verdict


@dataclass(frozen=True)
class Reply:
    code: str
    xcode: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.xcode} {self.text}"


UNKNOWN_ALIAS = Reply("550", "5.1.1", "Recipient address rejected: no such address")
DISABLED = Reply("550", "5.2.1", "Recipient address rejected: this address is disabled")
EXPIRED = Reply("550", "5.2.1", "Recipient address rejected: this address has expired")
SENDER_BLOCKED = Reply("550", "5.7.1",
                       "Recipient address rejected: the recipient does not accept mail from this sender")
SRS_INVALID = Reply("550", "5.1.1", "Recipient address rejected: invalid or expired bounce address")
SRS_NOT_BOUNCE = Reply("550", "5.7.1",
                       "Recipient address rejected: this address accepts only delivery status notifications")
BUSY = Reply("451", "4.2.1", "Recipient address at its message limit while messages to it are in progress; "
                            "try again later")
SRS_THROTTLED = Reply("450", "4.7.1", "Too many invalid bounce addresses from your address; try again later")
UNVERIFIED = Reply("450", "4.2.1", "Recipient address not yet in use; try again later")
TEMPFAIL = Reply("451", "4.3.0", "Temporary lookup failure, please try again later")
BAD_RECIPIENT = Reply("501", "5.1.3", "Bad recipient address syntax")
BAD_SENDER = Reply("501", "5.1.7", "Bad sender address syntax")
DMARC_REJECT = Reply("550", "5.7.1",
                     "Message rejected: it fails DMARC, and its sender's domain asks for that (p=reject)")
LOOP = Reply("554", "5.4.6", "Message refused: mail forwarding loop")
SENDER_UNFORWARDABLE = Reply("553", "5.1.7", "Recipient address rejected: the sender address is too long to forward")
REPLIES_OFF = Reply("550", "5.7.1", "Recipient address rejected: replies through this address are turned off")


def reply_refused(reason: str, temporary: bool = False) -> Reply:
    """A reply tmail will not send on, with why (the person's own server
    shows it to them; nothing in it names the alias's destinations)."""
    if temporary:
        return Reply("451", "4.7.1", f"Reply not sent now: {reason}; try again later")
    return Reply("550", "5.7.1", f"Reply refused: {reason}")


_BY_KIND = {
    Kind.UNKNOWN: UNKNOWN_ALIAS,
    Kind.DISABLED: DISABLED,
    Kind.EXPIRED: EXPIRED,
    Kind.BLOCKED: SENDER_BLOCKED,
    Kind.SRS_INVALID: SRS_INVALID,
    Kind.SRS_NOT_BOUNCE: SRS_NOT_BOUNCE,
    Kind.BUSY: BUSY,
    Kind.UNVERIFIED: UNVERIFIED,
    Kind.REPLIES_OFF: REPLIES_OFF,
}


def reply_for(verdict: Verdict) -> Reply | None:
    """The rejection for a verdict, or None when the recipient is accepted."""
    if verdict.accepts:
        return None
    return _BY_KIND[verdict.kind]
