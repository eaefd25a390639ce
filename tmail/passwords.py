"""Password hashes: argon2id (argon2-cffi), rehashed when its parameters
change. A made-up hash is checked for unknown accounts, so that a wrong
password and an unknown account cost the same time."""
from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults (RFC 9106's second recommendation): 3 passes over
# 64 MiB with 4 lanes; about 50 ms a check on this project's machines.
HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return HASHER.hash(password)


@functools.lru_cache(maxsize=1)
def _dummy() -> str:
    return HASHER.hash("not the password of any account")


def check(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash to store when the parameters changed). With no
    stored hash (unknown account, password not set), a dummy is checked."""
    try:
        HASHER.verify(stored or _dummy(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, (HASHER.hash(password) if HASHER.check_needs_rehash(stored) else None)
