"""The verdict for one recipient: the single policy function of tmail.

The milter calls it at RCPT time, the delivery path calls it again before
forwarding, and `tmail resolve` prints it. It does no I/O: the caller looks
up the alias record and passes the time.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .address import Address
from .contacts import Contact


class OnExpiry(str, enum.Enum):
    REJECT = "reject"
    DROP = "drop"


@dataclass(frozen=True)
class AliasRecord:
    """What the store knows of one alias (times are aware UTC datetimes)."""

    local: str
    domain: str
    destinations: tuple[str, ...]
    enabled: bool = True
    created_at: datetime | None = None
    expires_at: datetime | None = None
    max_messages: int | None = None
    idle_limit: timedelta | None = None
    on_expiry: OnExpiry = OnExpiry.REJECT
    forwarded: int = 0
    refused: int = 0
    last_forwarded_at: datetime | None = None
    blocked: tuple[str, ...] = ()
    note: str = ""
    warned_for: datetime | None = None
    from_rewrite: str | None = None          # never | when-needed | always; None: the domain's
    domain_from_rewrite: str | None = None   # the domain's setting (None: the default)
    id: int | None = None
    owner_id: int | None = None              # the user who owns it (None: the admin's)
    # Destinations its owner has not verified yet: nothing is forwarded there.
    unverified: tuple[str, ...] = ()
    replies: bool | None = None          # replies through reverse aliases (None: the domain's)
    domain_replies: bool = False         # the domain's setting
    display_name: str = ""               # the name replies go out with ("": none)
    reply_scrub: bool = False            # take the real address out of replies' text

    @property
    def replies_on(self) -> bool:
        return self.domain_replies if self.replies is None else self.replies

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def forwardable(self) -> tuple[str, ...]:
        """The destinations mail goes to: the verified ones."""
        return tuple(d for d in self.destinations if d not in self.unverified)


class Kind(str, enum.Enum):
    NOT_OURS = "not-ours"          # not a tmail domain: Postfix carries on
    FORWARD = "forward"
    ROLE = "role"                  # postmaster@ and friends: to the admin
    UNKNOWN = "unknown"
    DISABLED = "disabled"
    EXPIRED = "expired"
    BLOCKED = "sender-blocked"
    SRS_BOUNCE = "srs-bounce"      # a valid SRS address: reverse and relay
    SRS_INVALID = "srs-invalid"    # forged, malformed or too old
    SRS_NOT_BOUNCE = "srs-not-bounce"
    UNVERIFIED = "unverified"      # its destinations are not verified yet: try later
    BUSY = "busy"                  # at its limit only through messages still in progress
    REPLY = "reply"                # to a reverse alias: who sent it is checked at end of data
    REPLY_BOUNCE = "reply-bounce"  # a bounce of a reply: relayed to the alias's destinations
    REPLIES_OFF = "replies-off"    # a reverse alias of an alias whose replies are off


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    destinations: tuple[str, ...] = ()
    drop: bool = False             # accept, then discard for this recipient
    alias: AliasRecord | None = field(default=None, compare=False)
    contact: Contact | None = field(default=None, compare=False)

    @property
    def accepts(self) -> bool:
        return self.kind in (Kind.NOT_OURS, Kind.FORWARD, Kind.ROLE, Kind.SRS_BOUNCE, Kind.REPLY,
                             Kind.REPLY_BOUNCE) or self.drop


def expiry_reason(record: AliasRecord, now: datetime) -> str | None:
    """Why the alias has expired at `now`, or None while it is live."""
    if record.expires_at is not None and now >= record.expires_at:
        return f"expired on {record.expires_at:%Y-%m-%d %H:%M} UTC"
    if record.max_messages is not None and record.forwarded >= record.max_messages:
        return f"reached its limit of {record.max_messages} messages"
    if record.idle_limit is not None:
        since = record.last_forwarded_at or record.created_at
        if since is not None and now - since >= record.idle_limit:
            return f"unused since {since:%Y-%m-%d} (idle limit reached)"
    return None


def sender_blocked(record: AliasRecord, sender: Address | None) -> bool:
    if sender is None:
        return False
    exact = f"{sender.local.lower()}@{sender.domain}"
    return exact in record.blocked or f"@{sender.domain}" in record.blocked


def decide(
    recipient: Address,
    sender: Address | None,
    record: AliasRecord | None,
    now: datetime,
    *,
    is_tmail_domain: bool,
    role_local_parts: frozenset[str],
    admin_address: str,
) -> Verdict:
    """The verdict for `recipient`; `record` is the alias it resolves to, if any."""
    if not is_tmail_domain:
        return Verdict(Kind.NOT_OURS, f"{recipient.domain} is not a tmail domain")
    if recipient.key in role_local_parts:
        return Verdict(Kind.ROLE, f"{recipient.key}@ reaches the admin", (admin_address,))
    if record is None:
        return Verdict(Kind.UNKNOWN, "no such alias")
    if not record.enabled:
        return Verdict(Kind.DISABLED, "the alias is disabled", alias=record)
    reason = expiry_reason(record, now)
    if reason:
        drop = record.on_expiry is OnExpiry.DROP
        return Verdict(Kind.EXPIRED, reason, drop=drop, alias=record)
    if sender_blocked(record, sender):
        return Verdict(Kind.BLOCKED, f"sender {sender} is blocked for this alias", alias=record)
    if not record.forwardable:
        return Verdict(Kind.UNVERIFIED, "no verified destination yet", alias=record)
    return Verdict(Kind.FORWARD, "active alias", record.forwardable, alias=record)


def decide_reply(sender: Address | None, contact: Contact | None, record: AliasRecord | None,
                 now: datetime, *, when_inactive: bool) -> Verdict:
    """The verdict for a reverse alias. Who sent the message is decided at
    the end of data (contacts.authorise); here, whether the address can
    carry a reply at all. `when_inactive`: replies of a disabled or expired
    alias still go out (the admin's choice, [replies] when_inactive)."""
    if contact is None or record is None:
        return Verdict(Kind.UNKNOWN, "no such reply address")
    if sender is None:
        # the contact's server bouncing a reply (its envelope sender is the reverse alias)
        return Verdict(Kind.REPLY_BOUNCE, f"bounce of a reply to {contact.address}",
                       record.forwardable, alias=record, contact=contact)
    if not record.replies_on:
        return Verdict(Kind.REPLIES_OFF, "replies are off for this alias", alias=record, contact=contact)
    if not when_inactive:
        if not record.enabled:
            return Verdict(Kind.DISABLED, "the alias is disabled", alias=record, contact=contact)
        reason = expiry_reason(record, now)
        if reason:
            return Verdict(Kind.EXPIRED, reason, alias=record, contact=contact)
    if not record.forwardable:
        return Verdict(Kind.UNVERIFIED, "no verified destination may reply yet", alias=record,
                       contact=contact)
    return Verdict(Kind.REPLY, f"reply to {contact.address}", (contact.address,), alias=record,
                   contact=contact)
