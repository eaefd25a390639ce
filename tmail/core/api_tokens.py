"""API tokens and the rules around the API. Pure: no database, no Flask.

- A token is shown once and stored as its SHA-256 hash (as addy.io does;
  SimpleLogin keeps them in clear). Its first characters are kept apart
  so that a person can tell their tokens apart on the page.
- Scopes: what a token may do. A password manager needs only "create".
- The website a password manager names (SimpleLogin's `hostname`), read
  leniently: a bare name or a whole URL, or nothing usable.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from .accounts import token_hash

CREATE, READ, CHANGE = "create", "read", "change"
SCOPES = (CREATE, READ, CHANGE)
PREFIX = "tmail_"            # tells a leaked token apart in logs and secret scanners
SHOWN = 10                   # characters kept in clear: "tmail_Ab3x"
MAX_NAME = 100
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


class TokenError(ValueError):
    """A token request the rules refuse; the message says why."""


@dataclass(frozen=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    shown: str                      # the first characters, for the list
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def new_api_token() -> tuple[str, str]:
    """(token, its hash). 32 random bytes, URL-safe: fits any header."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def check_scopes(wanted: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The scopes in their canonical order; unknown ones refused."""
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise TokenError(f"unknown scope {unknown[0]!r}: choose among {', '.join(SCOPES)}")
    if not wanted:
        raise TokenError(f"give at least one scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in wanted)


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise TokenError("give the token a name (which program or device uses it)")
    if len(name) > MAX_NAME:
        raise TokenError(f"a token's name has at most {MAX_NAME} characters")
    if not name.isprintable():
        raise TokenError("a token's name cannot hold control characters")
    return name


def website(hostname: str | None) -> str | None:
    """The host a password manager sent: "example.com", "https://a.example.com/x"
    or "login.example.com:443" give the host name; anything else None."""
    text = (hostname or "").strip()[:2048]
    if not text:
        return None
    try:
        host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    except ValueError:      # an unbalanced "[" and the like
        return None
    host = host.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    return host if _HOSTNAME.fullmatch(host.lower()) else None
