"""Accounts: the rules for the people who own addresses. Pure: no database,
no web framework; the store and the adapters pass in what these look at.

- Which domains a user may create addresses at, and how many.
- One-time tokens: random, shown once, stored only as a SHA-256 hash.
- Passwords: what is long enough (hashing is the adapter's, argon2id).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_PASSWORD = 10        # NIST SP 800-63B asks at least 8; long beats complex
MAX_PASSWORD = 1024      # argon2 takes any length; a bound keeps a request cheap

# Kinds of one-time links, and how long each is valid.
SET_PASSWORD = "set-password"
RESET_PASSWORD = "reset-password"
VERIFY_DESTINATION = "verify-destination"
SIGNUP = "signup"
INVITE = "invite"
TOKEN_LIFETIMES = {
    SET_PASSWORD: timedelta(hours=24),
    RESET_PASSWORD: timedelta(hours=1),
    VERIFY_DESTINATION: timedelta(hours=1),
    SIGNUP: timedelta(hours=1),
    INVITE: timedelta(days=7),
}
RESEND_AFTER = timedelta(minutes=1)      # a verification mail at most once a minute
RECOVERY_CODES = 10


class AccountError(ValueError):
    """A request the rules refuse; the message says why."""


class NotAllowed(AccountError):
    """Not this user's to do (a domain not theirs, a disabled account)."""


class LimitReached(AccountError):
    """The user has as many active addresses as they may."""


class TooFast(AccountError):
    """The user created as many addresses this hour as they may."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    is_admin: bool = False
    enabled: bool = True
    max_aliases: int | None = None
    max_per_hour: int | None = None
    password_hash: str | None = None
    totp_secret: str | None = None
    created_at: datetime | None = None
    password_changed_at: datetime | None = None
    last_login_at: datetime | None = None
    domains: tuple[str, ...] = ()          # given to this user (shared ones come on top)
    # addresses made through the API (a password manager's): these, not the
    # domain's defaults; None is no expiry, and the first usable domain
    api_ttl: timedelta | None = None
    api_domain: str | None = None

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None


@dataclass(frozen=True)
class Destination:
    id: int
    user_id: int
    address: str
    created_at: datetime | None = None
    verified_at: datetime | None = None
    last_sent_at: datetime | None = None

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


def new_token() -> tuple[str, str]:
    """(token, its hash): the token goes into a link once, the hash is kept."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes a person writes down: 10 characters from an unambiguous alphabet."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return ["".join(secrets.choice(alphabet) for _ in range(10)) for _ in range(count)]


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password may have at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise AccountError("a password cannot be only spaces")
    return password


def check_account_address(address: str) -> str:
    """An address that can name an account. Accounts compare case-folded,
    and letters that fold to other letters (ß to ss, ſ to s, ligatures)
    would let one mailbox's owner take another's account name (boß@
    verified, boss@ taken): refused, with a word on what to use."""
    local = address.rpartition("@")[0]
    if local.casefold() != local.lower():
        raise AccountError(f"{address} has letters that mail systems fold in different ways "
                           "(such as ß or ſ); use the address spelt without them")
    return address


def usable_domains(user: User, shared: frozenset[str]) -> tuple[str, ...]:
    """The domains a user may create addresses at: theirs, and the shared ones."""
    return tuple(sorted(set(user.domains) | shared))


def check_new_alias(user: User, domain: str, shared: frozenset[str], *, active: int,
                    created_last_hour: int, default_max: int, default_per_hour: int) -> None:
    """Refuse an address the user may not create now (AccountError)."""
    if not user.enabled:
        raise NotAllowed("this account is disabled")
    if domain not in usable_domains(user, shared):
        raise NotAllowed(f"you cannot create addresses at {domain}")
    limit = user.max_aliases if user.max_aliases is not None else default_max
    if active >= limit:
        raise LimitReached(f"you have {active} active addresses, the most you may have; "
                           "disable or delete one first")
    per_hour = user.max_per_hour if user.max_per_hour is not None else default_per_hour
    if created_last_hour >= per_hour:
        raise TooFast(f"you created {created_last_hour} addresses in the last hour, "
                           "the most you may; try again later")
