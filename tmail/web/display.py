"""How times and alias states are written on the pages (filters for the
templates). Times are UTC, as everywhere in tmail."""
from __future__ import annotations

from datetime import datetime

from flask import Flask

from ..core.durations import format_duration
from ..core.glance import span


def when(value: datetime | None) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    return f"{span(now - value)} ago" if value <= now else f"in {span(value - now)}"


def duration(value) -> str:
    return format_duration(value) if value else ""


def init_app(app: Flask) -> None:
    app.add_template_filter(when)
    app.add_template_filter(duration)
    app.add_template_global(ago)
