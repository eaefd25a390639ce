"""The lifecycle of a temporary address after its creation: warnings before
expiry, purging long-expired aliases, quarantine of removed addresses."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .mails import message
from .verdict import AliasRecord, OnExpiry


@dataclass(frozen=True)
class DomainSettings:
    """Per-domain defaults for new aliases, and the warning lead time."""

    ttl: timedelta | None = None
    idle: timedelta | None = None
    on_expiry: OnExpiry | None = None
    random_style: str | None = None
    warn_before: timedelta | None = None
    from_rewrite: str | None = None      # DMARC-safe From rewriting (None: when-needed)
    shared: bool = False                 # every user may create addresses here
    replies: bool = False                # replies through reverse aliases, for aliases that do not say


def expired_since(record: AliasRecord) -> datetime | None:
    """When the alias expired (the earliest of its limits), if it has."""
    times: list[datetime | None] = [record.expires_at]
    if record.max_messages is not None and record.forwarded >= record.max_messages:
        times.append(record.last_forwarded_at or record.created_at)
    if record.idle_limit is not None:
        since = record.last_forwarded_at or record.created_at
        if since is not None:
            times.append(since + record.idle_limit)
    known = [t for t in times if t is not None]
    return min(known) if known else None


def purge_due(record: AliasRecord, now: datetime, grace: timedelta) -> bool:
    since = expired_since(record)
    return since is not None and now - since >= grace


def warning_due(record: AliasRecord, now: datetime, warn_before: timedelta | None) -> bool:
    """A warning is due once, inside the lead time, for each expiry date."""
    return (warn_before is not None and record.enabled and record.expires_at is not None
            and now < record.expires_at <= now + warn_before
            and record.warned_for != record.expires_at)


def quarantined_until(retired_at: datetime | None, quarantine: timedelta) -> datetime | None:
    if retired_at is None:
        return None
    return retired_at + quarantine


def expiry_notice(record: AliasRecord, *, sender: str, now: datetime, host: str) -> bytes:
    """The warning sent to an alias's destinations before it expires."""
    assert record.expires_at is not None    # warning_due() chose it for its date
    expires = f"{record.expires_at:%Y-%m-%d %H:%M} UTC"
    days = max(0, (record.expires_at - now).days)
    body = (
        f"Your temporary address {record.address} expires on {expires}"
        f" (in {days} day{'s' if days != 1 else ''}).\n\n"
        f"After that, mail sent to it is "
        f"{'refused' if record.on_expiry is OnExpiry.REJECT else 'discarded'}.\n\n"
        "To keep it longer, ask your mail administrator to run:\n\n"
        f"    tmail alias extend {record.address} --by 30d\n\n"
        "This is an automatic message; you receive it once for this expiry date.\n"
    )
    return message(sender=sender, to=record.destinations,
                   subject=f"Your address {record.address} expires on {record.expires_at:%Y-%m-%d}",
                   body=body, now=now, host=host)
