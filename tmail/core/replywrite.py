"""The header of a reply as it leaves through an alias, and the edits to a
forwarded message that make "Reply" go back through tmail. Pure.

A reply keeps only the fields that say nothing about where it was written
(KEPT): everything else (Received, the provider's signatures and
Authentication-Results, X-Originating-IP, its Message-ID, the mail
program's name) is left behind. From becomes the alias, To and Cc the
contacts' real addresses, Date the same instant in UTC (an offset tells
the person's time zone), and Message-ID a new one at the alias's domain.

Message-IDs are mapped both ways (`ids`: the person's own ID -> the one
the contact saw): In-Reply-To and References of a reply name the new IDs,
and those of the contact's answer name the person's originals again, so
both mail programs thread the conversation. An ID of the person's
provider that has no mapping is dropped from a reply, not passed on.
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from . import headers as hdr
from . import rfc5322

KEPT = frozenset({
    "subject", "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
    "content-language", "content-id", "content-description", "auto-submitted",
    "importance", "priority", "x-priority", "sensitivity", "keywords",
})
THREADING = {"in-reply-to": "In-Reply-To", "references": "References"}
_MSG_ID = re.compile(r"<[^<>\s]+>")
MAX_REFERENCES = 30       # the newest ones: a long thread's References is all history


def message_ids(value: str) -> list[str]:
    return _MSG_ID.findall(value)


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def utc_date(value: str | None, now: datetime) -> str:
    """The Date field's instant in UTC; `now` when it is missing or unreadable."""
    when = now
    if value:
        try:
            parsed = parsedate_to_datetime(value)
            if parsed.tzinfo is not None:
                when = parsed
        except (TypeError, ValueError, IndexError):
            pass
    return format_datetime(when.astimezone(timezone.utc))


def _mapped(value: str, ids: dict[str, str], private_domains: frozenset[str]) -> list[str]:
    """The IDs of a threading field, mapped; IDs of a private domain that
    have no mapping left out."""
    kept = []
    for mid in message_ids(value):
        if mid in ids:
            kept.append(ids[mid])
        elif not _names_private(mid, private_domains):
            kept.append(mid)
    return list(dict.fromkeys(kept))[-MAX_REFERENCES:]


def _names_private(text: str, private_domains: frozenset[str]) -> bool:
    low = text.lower()
    return any(domain in low for domain in private_domains)


def rewrite_reply(fields: list[bytes], *, author: str, to: list[str], cc: list[str],
                  message_id: str, ids: dict[str, str], private_domains: frozenset[str],
                  now: datetime, keep_user_agent: bool = False) -> list[bytes]:
    """The header of a reply as the contact receives it (see the module's doc).
    `author`: the new From value; `ids`: the person's IDs -> the contact's;
    `private_domains`: the real mailboxes' domains, named nowhere."""
    kept_names = KEPT | ({"user-agent", "x-mailer"} if keep_user_agent else frozenset())
    out = [hdr.make_field("From", author)]
    out.append(hdr.make_field("To", ", ".join(to)) if to else hdr.make_field("To", "undisclosed-recipients:;"))
    if cc:
        out.append(hdr.make_field("Cc", ", ".join(cc)))
    date = hdr.first(fields, "date")
    out.append(hdr.make_field("Date", utc_date(hdr.value_of(date) if date else None, now)))
    out.append(hdr.make_field("Message-ID", message_id))
    for name in THREADING:
        field = hdr.first(fields, name)
        if field is not None:
            mapped = _mapped(hdr.value_of(field), ids, private_domains)
            if mapped:
                out.append(hdr.make_field(THREADING[name], " ".join(mapped)))
    for field in fields:
        name = hdr.name_of(field)
        if name in kept_names and not (name == "content-id" and _names_private(hdr.value_of(field),
                                                                                private_domains)):
            out.append(field if field.endswith(b"\n") else field + b"\n")
    return out


def forward_edits(fields: list[bytes], reply_to: list[str] | None,
                  ids_back: dict[str, str]) -> tuple[list[bytes], frozenset[str]]:
    """A forwarded message's fields with Reply-To naming the contacts'
    reverse aliases (`reply_to`: formatted mailboxes; None: unchanged) and
    In-Reply-To/References naming the person's own Message-IDs again
    (`ids_back`: the contact's view -> the person's). Also the names of
    the fields changed or added, which the original signatures may have
    covered."""
    changed: set[str] = set()
    out: list[bytes] = []
    for field in fields:
        name = hdr.name_of(field)
        if name == "reply-to" and reply_to is not None:
            continue
        if name in THREADING and ids_back:
            value = hdr.value_of(field)
            if any(mid in ids_back for mid in message_ids(value)):
                new = " ".join(ids_back.get(mid, mid) for mid in message_ids(value))
                out.append(hdr.make_field(THREADING[name], new))
                changed.add(name)
                continue
        out.append(field)
    if reply_to is not None:
        out.append(hdr.make_field("Reply-To", ", ".join(reply_to)))
        changed.add("reply-to")
    return out, frozenset(changed)


def mailboxes(fields: list[bytes], name: str) -> list[rfc5322.Mailbox] | None:
    """The mailboxes of the one field called `name` (None: the field is
    missing, repeated or unreadable)."""
    found = [f for f in fields if hdr.name_of(f) == name]
    if len(found) != 1:
        return None
    try:
        return rfc5322.parse_mailbox_list(hdr.value_of(found[0]))
    except rfc5322.HeaderSyntaxError:
        return None


def header_addresses(fields: list[bytes], names: tuple[str, ...] = ("to", "cc")) -> list[rfc5322.Mailbox]:
    """The mailboxes of these fields (unreadable ones raise HeaderSyntaxError)."""
    found: list[rfc5322.Mailbox] = []
    for field in fields:
        if hdr.name_of(field) in names:
            found += rfc5322.parse_address_list(hdr.value_of(field))
    return found
