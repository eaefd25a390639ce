"""How often someone may try: sign-in per account and per client address,
and the mails someone can make tmail send (sign-up, password-reset and
destination links). Counted in the database (login_failures), since the app runs as
several gunicorn processes.

An unknown account is counted like a known one, under the address typed,
so the answers for both stay the same, lockout included.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..db.accounts import Accounts


@dataclass(frozen=True)
class Limit:
    prefix: str
    attempts: int
    window: timedelta

    def key(self, value: str) -> str:
        return f"{self.prefix}:{value.casefold()}"


# Five wrong passwords (or codes) an account in 15 minutes: guessing takes
# years; the person who forgot theirs waits a quarter of an hour.
SIGN_IN_ACCOUNT = Limit("account", 5, timedelta(minutes=15))
# One address behind which many people may sit (a NAT) gets more.
SIGN_IN_CLIENT = Limit("client", 20, timedelta(minutes=15))
# Links sent by mail: to one address (sign-up, reset and destination links
# together, from every account), and asked for from one client or account:
# tmail cannot be made to flood a mailbox that never asked for anything.
MAIL_TO_ADDRESS = Limit("mail-to", 3, timedelta(hours=1))
MAIL_FROM_CLIENT = Limit("mail-from", 10, timedelta(hours=1))
MAIL_FROM_USER = Limit("mail-from-user", 10, timedelta(hours=1))
# API requests: a password manager makes one now and then; a script that
# loops is slowed down, and one token cannot use up its user's share.
API_TOKEN = Limit("api-token", 60, timedelta(minutes=1))
API_USER = Limit("api-user", 120, timedelta(minutes=1))
# Wrong API tokens from one client address (counted in each process, see
# LocalWindow): 256-bit tokens are not guessed; this bounds the work.
API_BAD_TOKEN = Limit("api-bad-token", 20, timedelta(minutes=1))


def exceeded(accounts: Accounts, now: datetime, *checks: tuple[Limit, str]) -> bool:
    return any(accounts.failures(limit.key(value), now - limit.window) >= limit.attempts
               for limit, value in checks)


def note(accounts: Accounts, now: datetime, *checks: tuple[Limit, str]) -> list[int]:
    return accounts.note_failure([limit.key(value) for limit, value in checks], now)


def reserve(accounts: Accounts, now: datetime, *checks: tuple[Limit, str]) -> list[int] | None:
    """Count an attempt as failed before it is tried, so that requests made
    at once cannot all slip under the limit: the rows to drop if it
    succeeds, or None (nothing noted) when a limit is reached already."""
    if exceeded(accounts, now, *checks):
        return None
    return note(accounts, now, *checks)


def clear(accounts: Accounts, limit: Limit, value: str) -> None:
    accounts.clear_failures(limit.key(value))


def retry_after(accounts: Accounts, now: datetime, *checks: tuple[Limit, str]) -> int:
    """Seconds until every limit reached has a free place again."""
    waits = [1]
    for limit, value in checks:
        since = now - limit.window
        if accounts.failures(limit.key(value), since) >= limit.attempts:
            oldest = accounts.oldest_failure(limit.key(value), since) or now
            waits.append(int((oldest + limit.window - now).total_seconds()) + 1)
    return max(waits)


class LocalWindow:
    """Attempts counted in memory, in this process: for what anyone on the
    network can send (a wrong API token), counting must not cost a database
    write, which on SQLite would wait for the mail path's writers. Bounded:
    past MAX_KEYS values the oldest are forgotten."""

    MAX_KEYS = 10_000

    def __init__(self, limit: Limit):
        self.limit = limit
        self._seen: dict[str, list[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, value: str, now: datetime) -> list[datetime]:
        times = [t for t in self._seen.get(value, []) if t > now - self.limit.window]
        if times:
            self._seen[value] = times
        else:
            self._seen.pop(value, None)
        return times

    def retry_after(self, value: str, now: datetime) -> int | None:
        """None while under the limit, else seconds until a place frees."""
        with self._lock:
            times = self._recent(value, now)
            if len(times) < self.limit.attempts:
                return None
            return int((times[0] + self.limit.window - now).total_seconds()) + 1

    def note(self, value: str, now: datetime) -> None:
        with self._lock:
            if value not in self._seen and len(self._seen) >= self.MAX_KEYS:
                self._seen.pop(next(iter(self._seen)))
            self._seen.setdefault(value, []).append(now)
