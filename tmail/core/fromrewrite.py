"""DMARC-safe From rewriting, for mail whose sender's policy leaves no other way.

A forwarded copy passes DMARC at the mailbox only through an aligned
original DKIM signature (SRS moves SPF to tmail's domain). When the From
domain asks for quarantine or reject and no such signature will survive,
the copy is likely refused or filed as spam; rewriting From to the alias's
own address (signed by tmail, so aligned) gets it delivered, at the price of
showing the sender only in the display name and in Reply-To.
"""
from __future__ import annotations

import email.utils
from email.header import decode_header, make_header

from . import headers as hdr
from .dmarc import Result as DmarcResult

MODES = ("never", "when-needed", "always")
DEFAULT_MODE = "when-needed"


def needed(mode: str, dmarc: DmarcResult, aligned_survivor: bool) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return dmarc.strict_policy and dmarc.result != "temperror" and not aligned_survivor


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # undecodable encoded-words: show them as they came
        return value


def original_sender(fields: list[bytes]) -> tuple[str, str]:
    """(display name, address) of the first address in From; ('', '') if none."""
    field = hdr.first(fields, "from")
    if field is None:
        return "", ""
    pairs = [p for p in email.utils.getaddresses([hdr.value_of(field)]) if "@" in p[1]]
    if not pairs:
        return "", ""
    name, address = pairs[0]
    return _decoded(name).strip(), address.strip()


def from_domain(fields: list[bytes]) -> str:
    return original_sender(fields)[1].rpartition("@")[2].lower()


def rewrite(fields: list[bytes], alias_address: str) -> list[bytes]:
    """The fields with From replaced by the alias's address; the sender stays
    visible in the display name, Reply-To carries them (unless the message
    already names where replies go) and X-Original-From keeps the field."""
    name, address = original_sender(fields)
    original = hdr.first(fields, "from")
    shown = f"{name} ({address})" if name and address else (address or name or "unknown sender")
    new_from = hdr.make_field("From", email.utils.formataddr((_clean(shown), alias_address), "utf-8"))
    result = []
    for field in fields:
        if field is original:
            result.append(new_from)
            result.append(hdr.make_field("X-Original-From", _clean(hdr.value_of(field))))
        else:
            result.append(field)
    if original is None:
        result.append(new_from)
    if address and hdr.first(fields, "reply-to") is None:
        result.append(hdr.make_field("Reply-To", email.utils.formataddr((_clean(name), address), "utf-8")))
    return result


def _clean(text: str) -> str:
    """No line breaks or control characters from a sender's text into a new field."""
    return "".join(" " if ch in "\r\n\t" else ch for ch in text if ch >= " " or ch in "\r\n\t").strip()
