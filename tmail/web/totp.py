"""The second factor: TOTP (RFC 6238, pyotp), 6 digits every 30 seconds,
one step either side accepted for clock drift. The step a code matched is
returned, so that the caller can refuse the same code twice."""
from __future__ import annotations

from datetime import datetime, timedelta

import pyotp

ISSUER = "tmail"
DRIFT = 1                           # steps accepted either side of now
STEP_KEPT = timedelta(minutes=3)    # a used step is remembered longer than it is valid


def new_secret() -> str:
    return pyotp.random_base32()


def setup_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app takes (or the secret typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def looks_like_code(text: str) -> bool:
    return len(text) == 6 and text.isdigit()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step `code` belongs to, or None."""
    if not looks_like_code(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - DRIFT, current + DRIFT + 1):
        if pyotp.utils.strings_equal(code, totp.generate_otp(step)):
            return step
    return None
