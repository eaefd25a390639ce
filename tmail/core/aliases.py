"""Building and changing alias records: every rule an alias must obey.

Pure: the caller passes the domains tmail serves and the time.
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from .address import AddressError, check_local_part, check_text, local_key, parse_address, unquote_local
from .srs import is_srs
from .verdict import AliasRecord, OnExpiry, expiry_reason
from .words import WORDS

MAX_COUNT = 2**31 - 1     # counters and idle seconds are 32-bit columns
_TOKEN_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1


def random_local(style: str, length: int) -> str:
    """An unguessable local part ("token", ~5 bits a character) or a readable
    one ("words": three words and four digits, ~37 bits)."""
    if style == "words":
        words = [secrets.choice(WORDS) for _ in range(3)]
        return ".".join(words) + f"{secrets.randbelow(10000):04d}"
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class Rules:
    """What the configuration and the database say about valid aliases."""

    tmail_domains: frozenset[str]
    service_domains: frozenset[str]   # the SRS and reply domains: never destinations
    recipient_delimiter: str
    role_local_parts: frozenset[str]
    allow_tmail_destinations: bool = False


def check_alias_local(local: str, rules: Rules) -> str:
    check_local_part(local)
    if local.startswith('"'):
        raise AddressError("quoted local parts are not allowed for aliases")
    if len(local_key(local)) > 64:     # the key column: "ΐ" folds to three characters
        raise AddressError(f"{local!r} is too long once case-folded (64 characters at most)")
    if local_key(local) in rules.role_local_parts:    # folded as lookups fold it (poſtmaster too)
        raise AddressError(f"{local!r} is a role address every domain keeps for its admin "
                           "(RFC 2142); it cannot be an alias")
    if rules.recipient_delimiter and rules.recipient_delimiter in local:
        raise AddressError(f"{local!r} contains the recipient delimiter "
                           f"{rules.recipient_delimiter!r}; mail to it would never match")
    if is_srs(local):
        raise AddressError(f"{local!r} looks like an SRS address; choose another local part")
    return local


def check_destinations(addresses: list[str], rules: Rules) -> tuple[str, ...]:
    if not addresses:
        raise AddressError("an alias needs at least one destination (--to)")
    seen: dict[str, str] = {}
    for text in addresses:
        dest = parse_address(text)
        if any(c in unquote_local(dest.local) for c in "%!"):
            # user%domain@host and host!user@host are routing, not mailboxes:
            # Postfix can rewrite them onto one of tmail's own addresses
            raise AddressError(f"destination {dest}: '%' and '!' route mail elsewhere; "
                               "give the mailbox's own address")
        if dest.domain in rules.service_domains:
            raise AddressError(f"destination {dest} is at tmail's SRS or reply domain")
        if dest.domain in rules.tmail_domains and not rules.allow_tmail_destinations:
            raise AddressError(f"destination {dest} is at a tmail domain: that would be an "
                               "alias-to-alias chain (a loop); use --allow-tmail-destination")
        seen.setdefault(str(dest).lower(), str(dest))
    return tuple(seen.values())


@dataclass(frozen=True)
class Settings:
    """Optional settings of an alias; None means 'not given'."""

    ttl: timedelta | None = None
    expires: datetime | None = None
    max_messages: int | None = None
    idle: timedelta | None = None
    on_expiry: str | None = None
    note: str | None = None
    enabled: bool | None = None
    blocked: tuple[str, ...] | None = None
    from_rewrite: str | None = None     # a mode, or "domain" for the domain's
    replies: str | None = None          # on | off | domain
    display_name: str | None = None     # "" clears it
    reply_scrub: bool | None = None

    def __post_init__(self):
        if self.ttl is not None and self.expires is not None:
            raise ValueError("give --ttl or --expires, not both")
        if self.max_messages is not None and not 1 <= self.max_messages <= MAX_COUNT:
            raise ValueError(f"--max-messages must be from 1 to {MAX_COUNT}")
        if self.idle is not None and self.idle.total_seconds() > MAX_COUNT:
            raise ValueError("--idle: at most 68 years")
        if self.replies not in (None, "on", "off", "domain"):
            raise ValueError("--replies must be on, off or domain")
        if self.display_name is not None:
            check_display_name(self.display_name)


def with_defaults(settings: Settings, defaults) -> Settings:
    """A new alias's settings with its domain's defaults (a DomainSettings)
    filling what the command did not say."""
    return dataclasses.replace(
        settings,
        ttl=settings.ttl if settings.ttl is not None or settings.expires is not None else defaults.ttl,
        idle=settings.idle if settings.idle is not None else defaults.idle,
        on_expiry=settings.on_expiry or (defaults.on_expiry.value if defaults.on_expiry else None),
    )


def apply(record: AliasRecord, settings: Settings, base_time: datetime) -> AliasRecord:
    """The record with every given setting applied. A TTL counts from
    `base_time` (the alias's creation, so that `ensure` is idempotent)."""
    changes: dict = {}
    if settings.ttl is not None:
        changes["expires_at"] = (base_time + settings.ttl).replace(microsecond=0)
    if settings.expires is not None:
        changes["expires_at"] = settings.expires.replace(microsecond=0)
    if settings.max_messages is not None:
        changes["max_messages"] = settings.max_messages
    if settings.idle is not None:
        changes["idle_limit"] = settings.idle
    if settings.on_expiry is not None:
        changes["on_expiry"] = OnExpiry(settings.on_expiry)
    if settings.note is not None:
        changes["note"] = settings.note
    if settings.enabled is not None:
        changes["enabled"] = settings.enabled
    if settings.blocked is not None:
        changes["blocked"] = tuple(sorted(set(settings.blocked)))
    if settings.from_rewrite is not None:
        changes["from_rewrite"] = None if settings.from_rewrite == "domain" else settings.from_rewrite
    if settings.replies is not None:
        changes["replies"] = {"on": True, "off": False, "domain": None}[settings.replies]
    if settings.display_name is not None:
        changes["display_name"] = settings.display_name.strip()
    if settings.reply_scrub is not None:
        changes["reply_scrub"] = settings.reply_scrub
    return dataclasses.replace(record, **changes)


MAX_DISPLAY_NAME = 64


def check_display_name(name: str) -> str:
    """The name replies go out with: shown to contacts, so plain text only
    (no bidirectional overrides either: they would disguise it)."""
    check_text(name, "display name")
    if any("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069" for ch in name):
        raise AddressError("display name contains a bidirectional control character")
    if len(name.strip()) > MAX_DISPLAY_NAME:
        raise ValueError(f"display name: at most {MAX_DISPLAY_NAME} characters")
    return name.strip()


def extended_expiry(current: datetime | None, now: datetime, by: timedelta) -> datetime:
    """The expiry moved `by` later, counted from now when it is past."""
    try:
        return max(now, current or now).replace(microsecond=0) + by
    except OverflowError:     # a date set near the year 9999
        raise ValueError("the new expiry would be past the year 9999") from None


def new_alias(local: str, domain: str, destinations: tuple[str, ...], settings: Settings,
              now: datetime) -> AliasRecord:
    now = now.replace(microsecond=0)
    base = AliasRecord(local=local, domain=domain, destinations=destinations, created_at=now)
    return apply(base, settings, now)


def state(record: AliasRecord, now: datetime) -> str:
    if not record.enabled:
        return "disabled"
    return "expired" if expiry_reason(record, now) else "active"


def describe(record: AliasRecord, now: datetime, owner: str | None = None) -> dict:
    """The JSON form of an alias (the schema documented in README.md);
    `owner`: the owning user's e-mail address (None: the admin's alias)."""
    left = None
    if record.expires_at is not None:
        left = max(0, int((record.expires_at - now).total_seconds()))
    return {
        "address": record.address,
        "destinations": list(record.destinations),
        "state": state(record, now),
        "expiry_reason": expiry_reason(record, now),
        "enabled": record.enabled,
        "note": record.note,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "seconds_left": left,
        "max_messages": record.max_messages,
        "idle_seconds": int(record.idle_limit.total_seconds()) if record.idle_limit else None,
        "on_expiry": record.on_expiry.value,
        "forwarded": record.forwarded,
        "refused": record.refused,
        "last_forwarded_at": record.last_forwarded_at,
        "blocked_senders": list(record.blocked),
        "from_rewrite": record.from_rewrite,
        "replies": record.replies_on,
        "replies_setting": {True: "on", False: "off", None: "domain"}[record.replies],
        "display_name": record.display_name,
        "reply_scrub": record.reply_scrub,
        "owner": owner,
        "unverified_destinations": list(record.unverified),
    }


def same_settings(a: AliasRecord, b: AliasRecord) -> bool:
    fields = ("local", "destinations", "enabled", "expires_at", "max_messages", "idle_limit",
              "on_expiry", "note", "blocked", "from_rewrite", "replies", "display_name", "reply_scrub")
    return all(getattr(a, f) == getattr(b, f) for f in fields)
