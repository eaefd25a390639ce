"""DMARC-safe From rewriting, for mail whose sender's policy leaves no other way.

A forwarded copy passes DMARC at the mailbox only through an aligned
original DKIM signature (SRS moves SPF to tmail's domain). When the From
domain asks for quarantine or reject and no such signature will survive,
the copy is likely refused or filed as spam; rewriting From to the alias's
own address (signed by tmail, so aligned) gets it delivered, at the price of
showing the sender only in the display name and in Reply-To.

The author is the one mailbox of the one From field (RFC 5322 s3.6.2,
parsed by tmail.core.rfc5322). A message without one (no From, several
From fields, several mailboxes, a field that does not parse, a domain
literal) has no domain DMARC could evaluate (RFC 7489 s6.6.1): its result
is permerror, never a guessed domain and never pass. Such a message is not
rewritten under `when-needed` (no policy applies); under `always` its From
becomes "unknown sender" at the alias, every original From field is kept
as X-Original-From (control characters removed) and no Reply-To is added:
nothing of a field that did not parse is put into a field of its own.
"""
from __future__ import annotations

import re

from . import headers as hdr
from . import rfc5322
from .address import AddressError, normalise_domain
from .dmarc import Result as DmarcResult

MODES = ("never", "when-needed", "always")
DEFAULT_MODE = "when-needed"
UNKNOWN_SENDER = "unknown sender"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def needed(mode: str, dmarc: DmarcResult, aligned_survivor: bool) -> bool:
    """Whether to rewrite From. Never for a message that failed DMARC on
    arrival (or whose DMARC could not be looked up): rewriting signs it as
    the alias's, and a forged From of a p=reject domain would then pass
    DMARC at the mailbox (laundered). Such a message goes as it came, with
    dmarc=fail in tmail's Authentication-Results, and the mailbox applies
    the policy of its domain."""
    if mode == "never" or dmarc.result in ("fail", "temperror"):
        return False
    if mode == "always":
        return True
    return dmarc.strict_policy and dmarc.result == "pass" and not aligned_survivor


def author(fields: list[bytes]) -> rfc5322.Mailbox | None:
    """The single mailbox of the single From field, or None."""
    froms = [f for f in fields if hdr.name_of(f) == "from"]
    if len(froms) != 1:
        return None
    try:
        mailboxes = rfc5322.parse_mailbox_list(hdr.value_of(froms[0]))
    except rfc5322.HeaderSyntaxError:
        return None
    return mailboxes[0] if len(mailboxes) == 1 else None


def from_domain(fields: list[bytes]) -> str:
    """The author's domain as DMARC looks it up (IDNA A-labels); '' if none."""
    mailbox = author(fields)
    if mailbox is None or mailbox.has_domain_literal:
        return ""
    try:
        return normalise_domain(mailbox.domain)
    except AddressError:
        return ""


def rewrite(fields: list[bytes], alias_address: str) -> list[bytes]:
    """The fields with From replaced by the alias's address; the sender stays
    visible in the display name, Reply-To carries them (unless the message
    already names where replies go) and X-Original-From keeps the field."""
    mailbox = author(fields)
    if mailbox is None:
        shown = UNKNOWN_SENDER
    elif mailbox.display_name:
        shown = f"{mailbox.display_name} ({mailbox.addr_spec})"
    else:
        shown = mailbox.addr_spec
    new_from = hdr.make_field("From", rfc5322.format_mailbox(shown, alias_address))
    result, placed = [], False
    for field in fields:
        if hdr.name_of(field) == "from":
            if not placed:
                result.append(new_from)
                placed = True
            result.append(hdr.make_field("X-Original-From", _clean(hdr.value_of(field))))
        else:
            result.append(field)
    if not placed:
        result.append(new_from)
    if mailbox is not None and hdr.first(fields, "reply-to") is None:
        result.append(hdr.make_field("Reply-To", rfc5322.format_mailbox(mailbox.display_name,
                                                                        mailbox.addr_spec)))
    return result


def _clean(text: str) -> str:
    """No line breaks or control characters from a sender's text into a new field."""
    return " ".join(_CONTROL.sub(" ", text).split())
