"""The short messages tmail writes to people itself (not forwarded mail):
a link to verify a destination, to set or reset a password, to confirm a
sign-up, and the word that a destination was verified. Pure: built from
what the caller passes; sent by tmail.outbound.

Links carry a token that is valid once and for a short time; nothing else
in these messages names anything but the person's own addresses.
"""
from __future__ import annotations

import secrets
from email.header import Header
from email.utils import format_datetime

from .address import check_text


def message(*, sender: str, to: str | tuple[str, ...], subject: str, body: str, now, host: str) -> bytes:
    """A plain-text message from tmail to one address or several (the
    expiry notice goes to every destination of an alias)."""
    recipients = (to,) if isinstance(to, str) else to
    for address in recipients:
        check_text(address, "recipient")
    lines = [
        f"From: tmail <{sender}>",
        f"To: {', '.join(f'<{address}>' for address in recipients)}",
        f"Subject: {subject if subject.isascii() else Header(subject, 'utf-8').encode()}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{host}>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f"Content-Type: text/plain; charset={'us-ascii' if body.isascii() else 'utf-8'}",
        "Content-Transfer-Encoding: 8bit",
        "",
        body,
    ]
    return "\n".join(lines).encode("utf-8")


def verify_destination(*, sender: str, to: str, link: str, user: str, now, host: str) -> bytes:
    body = (f"Someone (you, we hope) signed in to tmail as {user} and asked to forward mail to\n"
            f"{to}.\n\nTo allow it, open this link within an hour:\n\n    {link}\n\n"
            "Until then, nothing is forwarded to this address. If you did not ask for it,\n"
            "ignore this message: nothing will be sent here.\n")
    return message(sender=sender, to=to, subject="Confirm this address for tmail", body=body,
                    now=now, host=host)


def destination_verified(*, sender: str, to: str, verified: str, now, host: str) -> bytes:
    body = (f"{verified} is now a verified destination of your tmail account:\n"
            "your addresses can forward mail to it.\n\n"
            "If you did not add it, sign in and remove it, and change your password.\n")
    return message(sender=sender, to=to, subject="A new destination for your tmail addresses",
                    body=body, now=now, host=host)


def password_link(*, sender: str, to: str, link: str, reset: bool, valid: str, now, host: str) -> bytes:
    what = "choose a new password" if reset else "set your password"
    body = (f"To {what} for your tmail account {to}, open this link within {valid}:\n\n"
            f"    {link}\n\nIt works once. If you did not ask for it, ignore this message:\n"
            "your password stays as it is.\n")
    return message(sender=sender, to=to, subject="Your tmail password", body=body, now=now, host=host)


def signup_link(*, sender: str, to: str, link: str, now, host: str) -> bytes:
    body = (f"To create your tmail account for {to}, open this link within an hour:\n\n"
            f"    {link}\n\nIf you did not ask for an account, ignore this message.\n")
    return message(sender=sender, to=to, subject="Your tmail account", body=body, now=now, host=host)
