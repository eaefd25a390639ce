"""Mail tmail writes itself (notices, verification links), signed with the
sending domain's DKIM key and handed to Postfix's reinjection listener:
the same path as forwarded mail, so it needs no other route."""
from __future__ import annotations

from .mailpath.smtp import SmtpClient


def send(cfg, recipients: list[str], message: bytes, sender: str | None = None) -> str:
    """Sign `message` and send it from `sender` (default the notice sender);
    returns the listener's 250 text. Raises OSError or SmtpError."""
    from .mailpath.deliverability import from_config
    sender = sender or cfg.notice_from
    signed = from_config(cfg).sign_message(message, sender.rpartition("@")[2], cfg["srs"]["domain"])
    daemon = cfg["daemon"]
    client = SmtpClient(daemon["reinject_host"], daemon["reinject_port"], timeout=daemon["reinject_timeout_s"])
    try:
        client.envelope(sender, recipients, utf8=not all(r.isascii() for r in recipients))
        return client.send_message([signed])
    finally:
        client.close()
