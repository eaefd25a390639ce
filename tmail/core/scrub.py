"""Optional, per alias: the real address taken out of a reply's text.

A reply's quoted text or signature can name the person's real address
("On Monday, Jo <jo@real.example> wrote:"). With the alias's `reply_scrub`
on, exact occurrences of its destinations in text/plain and text/html
parts (decoded from their transfer encoding and charset, matched without
regard to case) become the alias's address. Its limits, documented: an
address split across lines, encoded as HTML entities or written another
way ("jo at real dot example") stays; prose that names the address on
purpose is changed too. Other parts (attachments) are never touched.

Mail programs that name inline images after the sender's domain
(Thunderbird's `Content-ID: <part1.x@real.example>`) would still tell the
domain: those Content-IDs, and the `cid:` references to them in the text
parts, get the alias's domain instead.
"""
from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from email.policy import compat32


def scrub(raw: bytes, addresses: list[str], replacement: str) -> tuple[bytes, int]:
    """The message with the addresses replaced in its text parts (and their
    domains in Content-IDs and cid: references), and how many were
    replaced (0: `raw` is returned unchanged)."""
    wanted = [a for a in addresses if a]
    if not wanted:
        return raw, 0
    pattern = re.compile("|".join(re.escape(a) for a in sorted(wanted, key=len, reverse=True)),
                         re.IGNORECASE)
    domains = "|".join(re.escape(a.rpartition("@")[2]) for a in wanted)
    own_domain = replacement.rpartition("@")[2]
    cids = re.compile(rf"(cid:[^\s\"'<>@]*@)(?:{domains})\b", re.IGNORECASE)
    message = message_from_bytes(raw, policy=compat32)
    total = 0
    for part in message.walk():
        content_id = part.get("Content-ID")
        if content_id:
            new, count = re.subn(rf"@(?:{domains})>", f"@{own_domain}>", str(content_id), flags=re.IGNORECASE)
            if count:
                part.replace_header("Content-ID", new)
                total += count
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        total += _scrub_part(part, pattern, replacement)
        total += _scrub_part(part, cids, rf"\g<1>{own_domain}")
    if not total:
        return raw, 0
    return message.as_bytes(policy=compat32.clone(linesep="\n")), total


def _scrub_part(part: Message, pattern: re.Pattern, replacement: str) -> int:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return 0
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        charset, text = "utf-8", payload.decode("utf-8", "surrogateescape")
    new, count = pattern.subn(replacement, text)
    if not count:
        return 0
    encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    data = new.encode(charset, "surrogateescape")
    del part["Content-Transfer-Encoding"]
    if encoding == "base64":
        from email.encoders import encode_base64
        part.set_payload(data)
        encode_base64(part)
    elif encoding == "quoted-printable":
        from email.encoders import encode_quopri
        part.set_payload(data)
        encode_quopri(part)
    else:
        part.set_payload(data.decode("ascii", "surrogateescape"))
        part["Content-Transfer-Encoding"] = encoding
    return count
