"""From a raw recipient and sender to a Verdict: what the milter asks, what
the delivery path re-checks and what `tmail resolve` prints.

The store is a port: anything with is_tmail_domain(name) and
get_alias(key, domain) will do (the database store, or a dict in tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .address import Address, AddressError, parse_address, parse_sender
from .srs import SrsCodec, SrsError, is_srs
from .verdict import AliasRecord, Kind, Verdict, decide


class AliasLookup(Protocol):
    def is_tmail_domain(self, name: str) -> bool: ...
    def get_alias(self, key: str, domain: str) -> AliasRecord | None: ...


@dataclass(frozen=True)
class Policy:
    """The configuration the verdict depends on."""

    recipient_delimiter: str
    role_local_parts: frozenset[str]
    admin_address: str
    srs: SrsCodec | None = None


def resolve(lookup: AliasLookup, policy: Policy, recipient: str, sender: str,
            now: datetime) -> Verdict:
    """Raises AddressError for a malformed recipient or sender."""
    rcpt = parse_address(recipient)
    from_ = parse_sender(sender)
    if policy.srs is not None and rcpt.domain == policy.srs.domain:
        return _srs_verdict(policy, rcpt, from_, now)
    is_ours = lookup.is_tmail_domain(rcpt.domain)
    base = rcpt.base(policy.recipient_delimiter)
    record = lookup.get_alias(base.key, base.domain) if is_ours else None
    return decide(rcpt, from_, record, now, is_tmail_domain=is_ours,
                  role_local_parts=policy.role_local_parts,
                  admin_address=policy.admin_address)


def _srs_verdict(policy: Policy, rcpt: Address, sender: Address | None,
                 now: datetime) -> Verdict:
    if rcpt.key in policy.role_local_parts:
        return Verdict(Kind.ROLE, f"{rcpt.key}@ reaches the admin", (policy.admin_address,))
    if not is_srs(rcpt.local):
        return Verdict(Kind.UNKNOWN, "not an SRS address")
    try:
        local, domain = policy.srs.reverse(rcpt.local, now.timestamp())
        original = parse_address(f"{local}@{domain}")
    except (SrsError, AddressError) as exc:
        return Verdict(Kind.SRS_INVALID, str(exc))
    if sender is not None:
        # Bounces come with the null sender (RFC 5321 s4.5.5); anything else
        # sent to an SRS address would turn tmail into a relay to whoever
        # once wrote through it.
        return Verdict(Kind.SRS_NOT_BOUNCE, "SRS addresses accept only bounces (null sender)")
    return Verdict(Kind.SRS_BOUNCE, f"bounce for {original}", (str(original),))
