"""What people type into the forms, turned into the core's values. No Flask
here: each function takes the submitted fields (a mapping of str) and
returns a value or raises FormError with a sentence naming the field.

Empty fields mean "not given", as a missing option does at the CLI.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core import aliases as alias_rules
from ..core.address import AddressError, check_text
from ..core.durations import parse_duration, parse_when

MAX_NOTE = 500          # the column's size
MAX_DISPLAY_NAME = 64   # the name replies go out with (the column's size)
MAX_FIELD = 1024        # any other single field: enough for a password, cheap to check


class FormError(ValueError):
    """A field the rules refuse; the message is shown to the person. The
    API answers with `status` (a page shows the form again with 400)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def field(form: Mapping[str, str], name: str, what: str, max_length: int = MAX_FIELD) -> str:
    """A text field, stripped; no control characters; bounded length."""
    value = (form.get(name) or "").strip()
    if len(value) > max_length:
        raise FormError(f"{what} is longer than {max_length} characters")
    try:
        check_text(value, what)
    except AddressError as exc:
        raise FormError(str(exc)) from None
    return value


def duration(form: Mapping[str, str], name: str, what: str) -> timedelta | None:
    value = field(form, name, what, 40)
    if not value:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise FormError(f"{what}: {exc}") from None


def future_time(form: Mapping[str, str], name: str, what: str, now: datetime) -> datetime | None:
    """A date (YYYY-MM-DD) or date and time, UTC, that lies ahead."""
    value = field(form, name, what, 40)
    if not value:
        return None
    try:
        when = parse_when(value)
    except ValueError as exc:
        raise FormError(f"{what}: {exc}") from None
    if when <= now:
        raise FormError(f"{what}: {value} is in the past")
    return when


def count(form: Mapping[str, str], name: str, what: str) -> int | None:
    value = field(form, name, what, 12)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= alias_rules.MAX_COUNT:   # "²" too
        raise FormError(f"{what}: write a whole number from 1 to {alias_rules.MAX_COUNT}")
    return int(value)


def choice(form: Mapping[str, str], name: str, what: str, allowed: tuple[str, ...]) -> str | None:
    value = field(form, name, what, 40)
    if not value:
        return None
    if value not in allowed:
        raise FormError(f"{what}: choose one of {', '.join(allowed)}")
    return value


def note(form: Mapping[str, str]) -> str:
    return field(form, "note", "The note", MAX_NOTE)


# what the replies form's choice writes to AliasRecord.replies
REPLY_MODES: dict[str, bool | None] = {"on": True, "off": False, "domain": None}


@dataclass(frozen=True)
class ReplySettings:
    replies: bool | None         # None: as the domain says
    display_name: str            # "": no name
    scrub: bool


def reply_settings(form: Mapping[str, str]) -> ReplySettings:
    """Replies on, off or as the domain says; the name they go out with;
    whether the real address is taken out of their text (a checkbox)."""
    mode = choice(form, "replies", "Replies", tuple(REPLY_MODES))
    if mode is None:
        raise FormError("Replies: choose on, off or as the domain says")
    name = field(form, "display_name", "The display name", MAX_DISPLAY_NAME)
    try:
        name = alias_rules.check_display_name(name)
    except ValueError as exc:
        raise FormError(f"The display name: {exc}") from None
    return ReplySettings(REPLY_MODES[mode], name, bool(form.get("reply_scrub")))


def settings(form: Mapping[str, str], now: datetime) -> alias_rules.Settings:
    """The limits of a new address (what is left empty: the domain's default)."""
    ttl = duration(form, "ttl", "Expire after")
    expires = future_time(form, "expires", "Expiry date", now)
    if ttl is not None and expires is not None:
        raise FormError("Give an expiry date or a time to live, not both")
    return alias_rules.Settings(
        ttl=ttl, expires=expires, max_messages=count(form, "max_messages", "Message limit"),
        idle=duration(form, "idle", "Expire when unused for"),
        on_expiry=choice(form, "on_expiry", "Once expired", ("reject", "drop")), note=note(form))


@dataclass(frozen=True)
class Extension:
    by: timedelta | None
    until: datetime | None
    max_messages: int | None

    def expiry(self, current: datetime | None, now: datetime) -> datetime | None:
        """The new expiry: `by` counts from the current expiry, or from now
        when that is past (as `tmail alias extend --by`)."""
        if self.until is not None:
            return self.until.replace(microsecond=0)
        if self.by is not None:
            try:
                return alias_rules.extended_expiry(current, now, self.by)
            except ValueError as exc:
                raise FormError(f"Extend by: {exc}") from None
        return current


def extension(form: Mapping[str, str], now: datetime) -> Extension:
    found = Extension(duration(form, "by", "Extend by"), future_time(form, "until", "New expiry date", now),
                      count(form, "max_messages", "Message limit"))
    if found.by is not None and found.until is not None:
        raise FormError("Give a time to add or a new date, not both")
    if found.by is None and found.until is None and found.max_messages is None:
        raise FormError("Give a time to add, a new date or a message limit")
    return found


def passwords(form: Mapping[str, str], name: str = "new_password", confirm: str = "confirm_password") -> str:
    """A new password typed twice (not stripped: spaces are part of it)."""
    password = form.get(name) or ""
    if len(password) > MAX_FIELD:
        raise FormError(f"a password may have at most {MAX_FIELD} characters")
    if password != (form.get(confirm) or ""):
        raise FormError("The two passwords differ")
    return password


def page(value: str | None) -> int:
    """A page number from the query string; anything odd is page 1."""
    text = (value or "").strip()[:20]      # int() of a huge string is slow
    return max(1, min(int(text), 1_000_000)) if text.isascii() and text.isdigit() else 1
