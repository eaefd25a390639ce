"""An alias's state in the words a person takes in at a glance: "active",
"expires in 2 days", "3 of 5 messages left", "disabled", "expired".
Pure: the caller passes the time (the web app's list and detail pages).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .aliases import state
from .verdict import AliasRecord, expiry_reason

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


@dataclass(frozen=True)
class Glance:
    state: str                   # active | expired | disabled
    notes: tuple[str, ...]       # what limits it, soonest first


def span(delta: timedelta) -> str:
    """'2 days', '5 hours', '1 minute': the largest whole unit (rounded down,
    so an alias never looks further from its end than it is)."""
    seconds = int(delta.total_seconds())
    for name, size in _UNITS:
        if seconds >= size:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return "less than a minute"


def glance(record: AliasRecord, now: datetime) -> Glance:
    current = state(record, now)
    if current == "disabled":
        return Glance(current, ("mail to it is refused until you enable it",))
    if current == "expired":
        return Glance(current, (expiry_reason(record, now) or "expired",))
    notes = []
    if record.expires_at is not None:
        notes.append(f"expires in {span(record.expires_at - now)}")
    if record.max_messages is not None:
        left = record.max_messages - record.forwarded
        notes.append(f"{left} of {record.max_messages} message{'' if record.max_messages == 1 else 's'} left")
    if record.idle_limit is not None:
        since = record.last_forwarded_at or record.created_at
        if since is not None:
            notes.append(f"expires in {span(since + record.idle_limit - now)} without mail")
    if record.destinations and not record.forwardable:
        notes.append("waiting for a verified destination: mail is held back")
    return Glance(current, tuple(notes))
