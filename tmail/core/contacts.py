"""Replies through an alias: contacts and their reverse aliases, and who
may send through one.

A contact is one outside party an alias has heard from (or chose to write
to). Its reverse alias, `<24 random characters>@<reply domain>`, is where
the person's mail program sends a reply; tmail then sends it on as the
alias. The local part is the only secret in it (120 bits), so it is drawn
from `secrets`, never derived from the addresses.

Who may send through a reverse alias is decided here, from facts the
milter gathered: the reply must come from one of the alias's verified
destinations, proven by an SPF or DKIM pass aligned with its From domain
(as DMARC aligns them), or by SASL authentication on this server.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from . import rfc5322

REPLY_LOCAL_LENGTH = 24
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"    # 5 bits a character, case-free


def new_reply_local() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(REPLY_LOCAL_LENGTH))


def is_reply_local(local: str) -> bool:
    return len(local) == REPLY_LOCAL_LENGTH and all(ch in _ALPHABET for ch in local)


@dataclass(frozen=True)
class Contact:
    alias_id: int
    address: str                 # where the contact's replies go (their Reply-To, else From)
    reply_local: str
    name: str = ""               # the display name they wrote with
    id: int | None = None
    created_at: datetime | None = None
    last_at: datetime | None = None
    forwarded: int = 0           # messages from them to the alias
    replied: int = 0             # replies sent to them through the alias

    def reply_address(self, domain: str) -> str:
        return f"{self.reply_local}@{domain}"


def reply_targets(mailboxes_of) -> list[rfc5322.Mailbox]:
    """Where a reply to a message goes: its Reply-To mailboxes, else its one
    From mailbox; `mailboxes_of(name)` gives a field's mailboxes (None when
    the field is missing or unreadable)."""
    reply_to = mailboxes_of("reply-to")
    if reply_to:
        return [m for m in reply_to if not m.has_domain_literal]
    author = mailboxes_of("from")
    if author and len(author) == 1 and not author[0].has_domain_literal:
        return author
    return []
