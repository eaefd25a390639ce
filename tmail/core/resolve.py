"""From a raw recipient and sender to a Verdict: what the milter asks, what
the delivery path re-checks and what `tmail resolve` prints.

The store is a port: anything with is_tmail_domain(name) and
get_alias(key, domain) will do (the database store, or a dict in tests).

Addresses come as Postfix hands them over and are parsed leniently
(parse_envelope): the strict RFC 5321 checks are for what an admin types.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .address import Address, AddressError, envelope_address, parse_envelope, parse_sender
from .contacts import Contact
from .srs import SrsCodec, SrsError, is_srs
from .verdict import AliasRecord, Kind, Verdict, decide, decide_reply


class AliasLookup(Protocol):
    def is_tmail_domain(self, name: str) -> bool: ...
    def get_alias(self, key: str, domain: str) -> AliasRecord | None: ...
    def get_contact(self, reply_local: str) -> tuple[Contact, AliasRecord] | None: ...


@dataclass(frozen=True)
class Policy:
    """The configuration the verdict depends on."""

    recipient_delimiter: str
    role_local_parts: frozenset[str]
    admin_address: str
    srs: SrsCodec | None = None
    reply_domain: str = ""              # where reverse aliases live ("": replies off)
    replies_when_inactive: bool = True  # a disabled or expired alias's replies still go out


def delivered_address(raw: str, resolved: str) -> str:
    """The address a recipient will be delivered to, from what the client
    sent (`raw`) and Postfix's resolved, case-folded form of it (the milter
    macro {rcpt_addr}).

    Postfix maps many forms onto one address (a trailing dot, a quoted
    local part, a source route, `user%domain@host`, `host!user@host`);
    the verdict must be the one for the address it will deliver to, which
    is `resolved`. tmail's own reading of `raw` is preferred only when it
    is the same address, because it keeps the case that `resolved` lost
    (SRS hashes and UTF-8 local parts need it).
    """
    try:
        own = parse_envelope(raw)
        if f"{own.local}@{own.domain}".casefold() == _internal(resolved).casefold():
            return f"{own.local}@{own.domain}"
    except AddressError:
        pass
    return _internal(resolved)


def _internal(text: str) -> str:
    address = parse_envelope(text)
    return f"{address.local}@{address.domain}"


def resolve(lookup: AliasLookup, policy: Policy, recipient: str, sender: str,
            now: datetime, *, routed: bool = False) -> Verdict:
    """The verdict for `recipient` (raises AddressError when it or the
    sender cannot be read). `routed`: Postfix routes the recipient to
    tmail's transport, so a domain tmail does not know is an unknown
    address (a table not yet synced), not someone else's mail."""
    rcpt = parse_envelope(recipient)
    from_ = parse_sender(sender)
    if policy.srs is not None and rcpt.domain == policy.srs.domain:
        return _srs_verdict(policy, rcpt, from_, now)
    if policy.reply_domain and rcpt.domain == policy.reply_domain:
        if rcpt.key in policy.role_local_parts:
            return Verdict(Kind.ROLE, f"{rcpt.key}@ reaches the admin", (policy.admin_address,))
        found = lookup.get_contact(rcpt.key)
        contact, record = found if found else (None, None)
        return decide_reply(from_, contact, record, now, when_inactive=policy.replies_when_inactive)
    # The whole local part first, as Postfix does: with "-" as the delimiter,
    # team-sales@ is the alias team-sales when there is one, not team's.
    record = lookup.get_alias(rcpt.key, rcpt.domain)
    base = rcpt.base(policy.recipient_delimiter)
    if record is None and base != rcpt:
        record = lookup.get_alias(base.key, base.domain)
    is_ours = record is not None or lookup.is_tmail_domain(rcpt.domain)
    if routed and not is_ours:
        return Verdict(Kind.UNKNOWN, f"{rcpt.domain} is routed to tmail but is not a tmail domain")
    return decide(rcpt, from_, record, now, is_tmail_domain=is_ours,
                  role_local_parts=policy.role_local_parts,
                  admin_address=policy.admin_address)


def _srs_verdict(policy: Policy, rcpt: Address, sender: Address | None,
                 now: datetime) -> Verdict:
    assert policy.srs is not None
    if rcpt.key in policy.role_local_parts:
        return Verdict(Kind.ROLE, f"{rcpt.key}@ reaches the admin", (policy.admin_address,))
    if not is_srs(rcpt.local):
        return Verdict(Kind.UNKNOWN, "not an SRS address")
    try:
        local, domain = policy.srs.reverse(rcpt.local, now.timestamp())
        original = envelope_address(local, domain)
    except (SrsError, AddressError) as exc:
        return Verdict(Kind.SRS_INVALID, str(exc))
    if sender is not None:
        # Bounces come with the null sender (RFC 5321 s4.5.5); anything else
        # sent to an SRS address would turn tmail into a relay to whoever
        # once wrote through it.
        return Verdict(Kind.SRS_NOT_BOUNCE, "SRS addresses accept only bounces (null sender)")
    return Verdict(Kind.SRS_BOUNCE, f"bounce for {original.smtp}", (original.smtp,))
