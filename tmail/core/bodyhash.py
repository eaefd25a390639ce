"""DKIM body hashes computed while the body streams past (RFC 6376 s3.4.3-3.4.5).

dkimpy hashes a body it holds whole, and its relaxed canonicalisation takes
about 30 times the body's size in memory; tmail forwards messages of any
size, so it hashes as the body streams to the spool and hands dkimpy only
the header block plus these digests (see tmail.core.signing).

Lines may end in LF (what pipe(8) hands over) or CRLF; both are the same
line end on the wire, where the reinjection client sends CRLF.
"""
from __future__ import annotations

import hashlib
import re

HASHES = {b"sha256": hashlib.sha256, b"sha1": hashlib.sha1}
_WSP_RUN = re.compile(rb"[ \t]+")


class BodyHasher:
    """One body hash: canonicalisation 'simple' or 'relaxed', sha256 or
    sha1, optionally only the first `limit` canonical bytes (the l= tag)."""

    def __init__(self, canonicalization: bytes = b"simple", algorithm: bytes = b"sha256",
                 limit: int | None = None):
        if canonicalization not in (b"simple", b"relaxed"):
            raise ValueError(f"unknown body canonicalisation {canonicalization!r}")
        self.relaxed = canonicalization == b"relaxed"
        self._hash = HASHES[algorithm]()
        self._limit = limit
        self._hashed = 0
        self._pending_empty = 0   # empty lines held back: trailing ones do not count
        self._partial = b""       # a line not yet ended
        self._any_line = False

    def update(self, data: bytes) -> None:
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line[:-1] if line.endswith(b"\r") else line)

    def _line(self, line: bytes) -> None:
        if self.relaxed:
            line = _WSP_RUN.sub(b" ", line).rstrip(b" ")
        if not line:
            self._pending_empty += 1
            return
        if self._pending_empty:
            self._feed(b"\r\n" * self._pending_empty)
            self._pending_empty = 0
        self._feed(line + b"\r\n")
        self._any_line = True

    def _feed(self, data: bytes) -> None:
        if self._limit is not None:
            data = data[: max(0, self._limit - self._hashed)]
        self._hashed += len(data)
        self._hash.update(data)

    def digest(self) -> bytes:
        """The body hash; the hasher takes no more data after this."""
        if self._partial:
            # the last line lacked its line end; the wire adds one (a CR
            # there is a bare CR: no LF followed it)
            partial, self._partial = self._partial, b""
            self._line(partial)
        if not self._any_line and not self.relaxed:
            self._feed(b"\r\n")   # simple: an empty body is one CRLF
        return self._hash.digest()


class BodyHashes:
    """Several body hashes fed from one pass over the body."""

    def __init__(self):
        self._hashers: dict[tuple, BodyHasher] = {}

    def want(self, canonicalization: bytes, algorithm: bytes, limit: int | None = None) -> None:
        key = (canonicalization, algorithm, limit)
        if key not in self._hashers:
            self._hashers[key] = BodyHasher(canonicalization, algorithm, limit)

    def __len__(self) -> int:
        """How many hashes the body goes through."""
        return len(self._hashers)

    def update(self, data: bytes) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)

    def finish(self) -> dict[tuple, bytes]:
        return {key: hasher.digest() for key, hasher in self._hashers.items()}
