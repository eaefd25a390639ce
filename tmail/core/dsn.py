"""Bounces relayed back to the original sender, without the destination.

A DSN from a destination's server names the real mailbox in its text, its
diagnostic code and its message/delivery-status part. tmail never passes it
on: it writes a fresh DSN (RFC 3464) that names only the alias, keeps the
status code and the original message's identifying headers, and nothing
else the destination's server wrote.

Only a delivery status notification is relayed: a multipart/report
(RFC 6522) with report-type delivery-status (RFC 3464) or
global-delivery-status (RFC 6533) and at least one per-recipient block
with a valid Action and Status. Anything else that reaches an SRS address
(an RFC 3834 auto-reply, a vacation message whatever its headers say, a
plain-text bounce, a read receipt) is not relayed: it comes from the real
mailbox or its server and could name it, so the caller drops it.
"""
from __future__ import annotations

import quopri
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, message_from_string
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value, format_datetime

from . import rfc5322

REPORT_TYPES = ("delivery-status", "global-delivery-status")
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
# RFC 3464 s2.3.3; the worst block of a report is the one relayed
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
# What the original sender needs to know which message it was, and no more:
# anyone holding an SRS address can send a "report" to it, and whatever is
# kept here reaches the address it encodes under tmail's signature.
_KEEP_HEADERS = ("Subject", "Date", "Message-ID")
_ALIAS_HEADERS = ("Delivered-To", "X-Original-To")
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")
_HEADER_PARTS = ("text/rfc822-headers", "message/global-headers", "message/rfc822", "message/global")
# RFC 6532 s3.5 and RFC 6533 s6 let these be base64 or quoted-printable
# encoded; email's parser would read them as nested messages regardless
_LEAVES = ("message/global-delivery-status", "message/global-headers", "message/global")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_HEADER_VALUE = 200         # a subject's worth; a kept field stays within a line
# A delivery status notification has three or four parts; one with far more
# boundary lines (or nested deeper: Python's parser recursed to its limit at
# 1,200 levels) is not one worth the parsing.
MAX_BOUNDARIES = 100


@dataclass(frozen=True)
class Report:
    action: str       # failed | delayed | delivered | relayed | expanded
    status: str       # e.g. 5.1.1
    alias: str | None
    headers: list[tuple[str, str]]


class _Part(Message):
    """A MIME part for which the internationalised report parts are leaves."""

    def get_content_maintype(self) -> str:
        if self.get_content_type() in _LEAVES:
            return "application"
        return super().get_content_maintype()


def parse_report(raw: bytes, is_alias: Callable[[str], bool]) -> Report | None:
    """What a delivery status notification says, reduced to what is safe to
    pass on; None when `raw` is not one (do not relay it).

    `is_alias(address)` tells tmail's aliases from other addresses: the
    returned headers carry the Delivered-To line tmail's pipe added.
    """
    if raw.count(b"\n--") > MAX_BOUNDARIES:
        return None
    try:
        return _parse_report(raw, is_alias)
    except (RecursionError, ValueError, LookupError, TypeError):   # a malformed one, not an outage
        return None


def _parse_report(raw: bytes, is_alias: Callable[[str], bool]) -> Report | None:
    msg = message_from_bytes(raw, _class=_Part, policy=compat32)
    report = next((p for p in _walk(msg) if p.get_content_type() == "multipart/report"
                   and _report_type(p) in REPORT_TYPES), None)
    if report is None:
        return None
    payload = report.get_payload()
    children = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    status_part = next((p for p in children if p.get_content_type() in _STATUS_PARTS), None)
    worst = _worst(_recipient_blocks(status_part)) if status_part is not None else None
    if worst is None:
        return None
    headers = next((h for h in map(_returned_headers, children) if h is not None), None)
    alias = None
    kept: list[tuple[str, str]] = []
    if headers is not None:
        alias = _alias(headers, is_alias)
        for name in _KEEP_HEADERS:
            value = headers.get(name)
            if value is not None:
                kept.append((name, _clean(value)[:_MAX_HEADER_VALUE]))
    return Report(worst[0], worst[1], alias, kept)


def _report_type(part: Message) -> str:
    value = part.get_param("report-type")
    return collapse_rfc2231_value(value).lower() if value else ""


def _walk(msg: Message) -> Iterator[Message]:
    """The message and its MIME parts, never inside an attached message."""
    yield msg
    if msg.get_content_maintype() == "multipart" and msg.is_multipart():
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from _walk(part)


def _text(value) -> str:
    """A header value as text: UTF-8 (RFC 6532) the email parser kept as surrogates."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _clean(value) -> str:
    """One line of text: unfolded, control characters (CR, LF, NUL...) gone."""
    return " ".join(_CONTROL.sub(" ", _text(value)).split())


def _text_of(part: Message) -> str:
    """A leaf's content, transfer encoding undone; UTF-8 (RFC 6532)."""
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""


def _recipient_blocks(part: Message) -> list[Message]:
    """The blocks of a status part that have an Action or a Status (the
    per-message block has neither)."""
    payload = part.get_payload()
    if isinstance(payload, list):     # message/delivery-status: parsed into blocks
        blocks = [b for b in payload if isinstance(b, Message)]
    else:
        text = _text_of(part).replace("\r\n", "\n")
        blocks = [message_from_string(b + "\n", policy=compat32)
                  for b in re.split(r"\n[ \t]*\n", text.strip("\n"))]
    return [b for b in blocks if b.get("Action") is not None or b.get("Status") is not None]


def _worst(blocks: list[Message]) -> tuple[str, str] | None:
    """(action, status) of the worst usable block: failed, then delayed,
    then any other; None if no block has a valid Action and Status."""
    worst = None
    for block in blocks:
        try:
            action = rfc5322.words(_text(block.get("Action", "")))
            status = rfc5322.words(_text(block.get("Status", "")))
        except rfc5322.HeaderSyntaxError:
            continue
        if len(action) != 1 or len(status) != 1:
            continue
        act = action[0].lower()
        if act not in _ACTIONS or not _STATUS.match(status[0]):
            continue
        if worst is None or _rank(act) < _rank(worst[0]):
            worst = (act, status[0])
    return worst


def _rank(action: str) -> int:
    return {"failed": 0, "delayed": 1}.get(action, 2)


def _returned_headers(part: Message) -> Message | None:
    ctype = part.get_content_type()
    if ctype not in _HEADER_PARTS:
        return None
    if ctype == "message/rfc822":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        return first if isinstance(first, Message) else None
    text = _text_of(part).replace("\r\n", "\n")
    return message_from_string(text.split("\n\n", 1)[0] + "\n\n", policy=compat32)


def _alias(headers: Message, is_alias: Callable[[str], bool]) -> str | None:
    for name in _ALIAS_HEADERS:
        for value in headers.get_all(name, []):
            try:
                mailboxes = rfc5322.parse_address_list(_text(value))
            except rfc5322.HeaderSyntaxError:
                continue
            for mailbox in mailboxes:
                if is_alias(mailbox.address):
                    return mailbox.address
    return None


def _header_line(name: str, value: str) -> str:
    charset = "us-ascii" if value.isascii() else "utf-8"
    return f"{name}: {Header(value, charset, header_name=name).encode()}"


def _typed_address(address: str) -> str:
    """A Final-Recipient value: `rfc822; addr`, or for a non-ASCII address
    `utf-8;` with RFC 6533's 7-bit utf-8-addr-xtext, so the part stays ASCII."""
    if address.isascii() and all(" " < ch < "\x7f" for ch in address):
        return f"rfc822; {address}"
    return "utf-8; " + "".join(ch if "!" <= ch <= "~" and ch not in "+=\\" else f"\\x{{{ord(ch):X}}}"
                               for ch in address)


def _text_part(text: str) -> list[str]:
    if text.isascii():
        return ["Content-Type: text/plain; charset=us-ascii", "", text]
    encoded = quopri.encodestring(text.encode("utf-8")).decode("ascii")
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
            "", encoded]


def build_notice(report: Report, *, to: str, reporting_domain: str, now: datetime) -> bytes:
    """A fresh RFC 3464 DSN for `to` that names only the alias; ASCII but for
    `to` itself (an internationalised sender's address)."""
    alias = report.alias or "the address you wrote to"
    boundary = "tmail-" + secrets.token_hex(12)
    failed = report.action == "failed"
    subject = {"failed": "Undelivered Mail Returned to Sender",
               "delayed": "Delayed Mail (still being retried)"}.get(report.action,
                                                                    "Delivery Status Notification")
    explanation = (
        f"Your message to {alias} could not be delivered."
        if failed else
        f"Your message to {alias} is delayed; the mail system will keep trying."
        if report.action == "delayed" else
        f"Delivery report for your message to {alias}: {report.action}."
    )
    text = (f"This is the mail system at {reporting_domain}.\n\n{explanation}\n"
            f"The receiving system reported status {report.status}.\n")
    lines = [
        f'From: "Mail Delivery System" <MAILER-DAEMON@{reporting_domain}>',
        f"To: <{_clean(to)}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{reporting_domain}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        *_text_part(text),
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_domain}",
        "",
        f"Final-Recipient: {_typed_address(report.alias or f'unknown@{reporting_domain}')}",
        f"Action: {report.action}",
        f"Status: {report.status}",
        "",
    ]
    if report.headers:
        lines += [f"--{boundary}", "Content-Type: text/rfc822-headers", ""]
        lines += [_header_line(name, value) for name, value in report.headers]
        lines.append("")
    lines.append(f"--{boundary}--")
    return ("\n".join(lines) + "\n").encode("utf-8")
