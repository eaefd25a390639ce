"""Receipts: what the milter decided for each recipient of an accepted
message, kept by Postfix queue id until the delivery has acted on it.

A 250 at RCPT time is a promise: the delivery forwards what the milter
accepted even if a limit is reached meanwhile, and drops what it said to
drop. A delivery that finds no receipt (mail injected locally, a recipient
Postfix routed to tmail without asking the milter) decides again and never
forwards what the verdict refuses.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from .verdict import Kind, Verdict

DROP = "drop"
MAX_KEY = 320      # longer recipient keys (SRS addresses of long senders) are hashed


@dataclass(frozen=True)
class Receipt:
    recipient: str                 # stored_key(envelope_key(recipient))
    verdict: str                   # forward | role | srs-bounce | reply | reply-bounce | drop
    counted: bool = False          # counted against the alias's limit at RCPT
    smtputf8: bool = False         # the client asked for SMTPUTF8
    spf: str | None = None         # the client's SPF result (None: not checked)
    helo: str = ""
    created_at: datetime | None = None
    forwarded_at: datetime | None = None
    digest: str | None = None      # header digest of the message forwarded
    alias: str = ""                # stored_key of the alias it reached ("" for none)


def stored_key(key: str) -> str:
    if len(key.encode("utf-8")) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def verdict_name(verdict: Verdict) -> str | None:
    """What a receipt records for an accepted verdict (None: not tmail's)."""
    if verdict.drop:
        return DROP
    if verdict.kind in (Kind.FORWARD, Kind.ROLE, Kind.SRS_BOUNCE, Kind.REPLY, Kind.REPLY_BOUNCE):
        return verdict.kind.value
    return None


def alias_key(address: str) -> str:
    """How receipts name an alias: one copy of a message per alias, however
    many of its +tag addresses the message was sent to."""
    return stored_key(address.casefold())


def header_digest(header: bytes) -> str:
    """Tells two messages apart that share a (reused, short) queue id: the
    header block holds Postfix's own Received field with its queue id and
    time, so a retry of one queue file has the same digest and a new
    message another."""
    return hashlib.sha256(header).hexdigest()[:32]
