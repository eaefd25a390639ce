"""Bounces relayed back to the original sender, without the destination.

A DSN from a destination's server names the real mailbox in its text, its
diagnostic code and its message/delivery-status part. tmail never passes it
on: it writes a fresh DSN (RFC 3464) that names only the alias, keeps the
status code and the original message's identifying headers, and nothing
else the destination's server wrote.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime, getaddresses

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_KEEP_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References")


@dataclass(frozen=True)
class Report:
    action: str       # failed | delayed | ...
    status: str       # e.g. 5.1.1
    alias: str | None
    headers: list[tuple[str, str]]


def _parts(msg: Message):
    yield msg
    if msg.is_multipart():
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _clean(value) -> str:
    text = str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())  # unfolds and drops CR, LF, tabs


def _status_blocks(msg: Message) -> list[Message]:
    for part in _parts(msg):
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                return [block for block in payload if isinstance(block, Message)]
            if isinstance(payload, str):
                blocks = re.split(r"\r?\n\s*\r?\n", payload.strip())
                return [message_from_bytes(b.encode("utf-8", "surrogateescape"), policy=compat32)
                        for b in blocks]
    return []


def _returned_headers(msg: Message) -> Message | None:
    for part in _parts(msg):
        ctype = part.get_content_type()
        if ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True) or b""
            return message_from_bytes(raw, policy=compat32)
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
    return None


def parse_report(raw: bytes, is_alias: callable) -> Report:
    """What a returned message says, reduced to what is safe to pass on.

    `is_alias(address)` tells tmail's aliases from other addresses: the
    returned headers carry the Delivered-To line tmail's pipe added.
    """
    msg = message_from_bytes(raw, policy=compat32)
    action, status = "failed", "5.0.0"
    blocks = [b for b in _status_blocks(msg) if b.get("Action") or b.get("Status")]
    worst = None
    for block in blocks:
        act = _clean(block.get("Action", "")).lower()
        stat = _clean(block.get("Status", "")).split(" ")[0]
        if act in _ACTIONS and _STATUS.match(stat):
            if worst is None or (act == "failed" and worst[0] != "failed"):
                worst = (act, stat)
    if worst:
        action, status = worst
    headers = _returned_headers(msg)
    alias = None
    kept: list[tuple[str, str]] = []
    if headers is not None:
        for name in ("Delivered-To", "X-Original-To"):
            for _, address in getaddresses([_clean(v) for v in headers.get_all(name, [])]):
                if address and is_alias(address):
                    alias = alias or address
        for name in _KEEP_HEADERS:
            value = headers.get(name)
            if value is not None:
                kept.append((name, _clean(value)))
    return Report(action, status, alias, kept)


def _header_line(name: str, value: str) -> str:
    if not value.isascii():
        value = Header(value, "utf-8", header_name=name).encode()
    return f"{name}: {value}"


def build_notice(report: Report, *, to: str, reporting_domain: str, now: datetime) -> bytes:
    """A fresh RFC 3464 DSN for `to` that names only the alias."""
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
        f"To: <{to}>",
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
        "Content-Type: text/plain; charset=us-ascii",
        "",
        text,
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_domain}",
        "",
    ]
    if report.alias:
        lines.append(f"Final-Recipient: rfc822; {report.alias}")
    else:
        lines.append(f"Final-Recipient: rfc822; unknown@{reporting_domain}")
    lines += [f"Action: {report.action}", f"Status: {report.status}", ""]
    if report.headers:
        lines += [f"--{boundary}", "Content-Type: text/rfc822-headers", ""]
        lines += [_header_line(name, value) for name, value in report.headers]
        lines.append("")
    lines.append(f"--{boundary}--")
    return ("\n".join(lines) + "\n").encode("utf-8")
