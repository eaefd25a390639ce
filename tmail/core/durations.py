"""Durations and dates as the CLI and the configuration write them."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d{1,6})([smhdw])", re.ASCII)    # ASCII digits only: int() takes "٣" too
# Longer is a typo or an attack: added to a date it would pass the year 9999.
MAX_DURATION = timedelta(days=100 * 366)


def parse_duration(text: str) -> timedelta:
    """'7d', '12h', '1w2d', '90m' -> timedelta; anything else raises ValueError."""
    raw = (text or "").strip().lower()
    pos, seconds = 0, 0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), e.g. 7d or 1w2d"
        )
    if seconds == 0:
        raise ValueError(f"duration {text!r} is zero")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts[:2])


def parse_when(text: str) -> datetime:
    """An ISO 8601 date or date-time; naive values are taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(
            f"{text!r} is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:      # 9999-12-31T23:00-01:00 is past the year 9999 in UTC
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
