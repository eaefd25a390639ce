"""Sender Rewriting Scheme, compatible with postsrsd/libsrs2.

SRS0=HHHH=TT=orig.domain=local@srs.domain
SRS1=HHHH=first.hop==HHHH=TT=orig.domain=local@srs.domain

HHHH: the first 4 characters of base64(HMAC-SHA1(secret, lower(text))), where
text is TT+domain+local (SRS0) or hop+rest (SRS1). TT: days since the epoch
mod 1024 in two base32 characters. Hashes compare case-insensitively (mail
systems may fold the case of local parts) and in constant time; the first
secret signs, every secret verifies. The full 4 characters are required:
accepting a shorter hash would make forgery a matter of a few tries.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

HASH_LENGTH = 4
TIME_SLOTS = 1024
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PREFIX = re.compile(r"(SRS[01])([-+=])(.*)\Z", re.IGNORECASE | re.DOTALL)


class SrsError(ValueError):
    """Not a valid SRS address of ours (forged, malformed or too old)."""


def day_number(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 86400)


def encode_timestamp(day: int) -> str:
    day %= TIME_SLOTS
    return _B32[day >> 5] + _B32[day & 31]


def decode_timestamp(text: str) -> int:
    if len(text) != 2:
        raise SrsError("the timestamp is not two characters")
    try:
        return (_B32.index(text[0].upper()) << 5) | _B32.index(text[1].upper())
    except ValueError:
        raise SrsError("the timestamp is not base32") from None


def is_srs(local: str) -> bool:
    return bool(_PREFIX.match(local))


class SrsCodec:
    def __init__(self, secrets: list[bytes], domain: str, max_age_days: int = 21,
                 separator: str = "="):
        if not secrets or not all(secrets):
            raise ValueError("SRS needs at least one non-empty secret")
        if separator not in "-+=":
            raise ValueError("the SRS separator must be one of - + =")
        self.secrets = list(secrets)
        self.domain = domain.lower()
        self.max_age_days = max_age_days
        self.sep = separator

    def _hash(self, secret: bytes, *parts: str) -> str:
        text = "".join(parts).lower().encode("utf-8")
        digest = hmac.new(secret, text, hashlib.sha1).digest()
        return base64.b64encode(digest)[:HASH_LENGTH].decode("ascii")

    def _check_hash(self, given: str, *parts: str) -> None:
        if len(given) != HASH_LENGTH:
            raise SrsError("the hash is not 4 characters long")
        wanted = given.lower().encode("ascii", "replace")
        ok = False
        for secret in self.secrets:  # no early exit: constant time per call
            ok |= hmac.compare_digest(self._hash(secret, *parts).lower().encode(), wanted)
        if not ok:
            raise SrsError("the hash does not match")

    def _check_age(self, stamp: str, now: float | None) -> None:
        age = (day_number(now) - decode_timestamp(stamp)) % TIME_SLOTS
        if age > self.max_age_days:
            raise SrsError(f"the address is {age} days old (at most {self.max_age_days})")

    def forward(self, local: str, domain: str, now: float | None = None) -> str:
        """Rewrite the sender local@domain to an address at the SRS domain."""
        match = _PREFIX.match(local)
        if match and match.group(1).upper() == "SRS1":
            # Already SRS1: keep the first hop, re-sign it as ours.
            parts = match.group(3).split("=", 2)
            if len(parts) == 3 and parts[1] and parts[2][:1] in ("-", "+", "="):
                return self._srs1(parts[1], parts[2])
        if match and match.group(1).upper() == "SRS0":
            # SRS0 from another forwarder: bounces go back through it.
            return self._srs1(domain, match.group(2) + match.group(3))
        stamp = encode_timestamp(day_number(now))
        secret = self.secrets[0]
        digest = self._hash(secret, stamp, domain, local)
        return f"SRS0{self.sep}{digest}={stamp}={domain}={local}@{self.domain}"

    def _srs1(self, hop: str, rest: str) -> str:
        digest = self._hash(self.secrets[0], hop, rest)
        return f"SRS1{self.sep}{digest}={hop}={rest}@{self.domain}"

    def reverse(self, local: str, now: float | None = None) -> tuple[str, str]:
        """The (local, domain) an SRS local part of ours leads back to.

        For SRS1 that is the SRS0 address at the first hop.
        """
        match = _PREFIX.match(local)
        if not match:
            raise SrsError("not an SRS address")
        tag, body = match.group(1).upper(), match.group(3)
        if tag == "SRS0":
            parts = body.split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError("malformed SRS0 address")
            digest, stamp, domain, orig_local = parts
            self._check_hash(digest, stamp, domain, orig_local)
            self._check_age(stamp, now)
            return orig_local, domain
        parts = body.split("=", 2)
        if len(parts) != 3 or not parts[0] or not parts[1] or len(parts[2]) < 2:
            raise SrsError("malformed SRS1 address")
        digest, hop, rest = parts
        if rest[0] not in "-+=":
            raise SrsError("malformed SRS1 address")
        self._check_hash(digest, hop, rest)
        return "SRS0" + rest, hop


# An SRS address must fit on an SMTP command line when the forwarded copy
# is sent (Postfix's line_length_limit is 2048 octets, MAIL FROM:<...> and
# its parameters included): RFC 5321's 256 octets are exceeded routinely
# by SRS, and accepted by real MTAs, but not without bound.
MAX_SRS_PATH = 1000


def forwardable_sender(codec: "SrsCodec | None", sender: str) -> bool:
    """Whether a message from this envelope sender can be forwarded: the
    null sender always, any other sender if its SRS form is short enough.
    Checked at RCPT time, so that a message is never accepted that the
    delivery could not send (it would wait in the queue until it expired)."""
    from .address import parse_sender, smtp_path
    parsed = parse_sender(sender)   # AddressError: the caller checked it first
    if parsed is None or codec is None:
        return True
    local, _, domain = codec.forward(parsed.local, parsed.domain).rpartition("@")
    return len(smtp_path(local, domain).encode("utf-8")) <= MAX_SRS_PATH
