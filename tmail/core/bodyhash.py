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
        self._partial = b""       # held back: what the next bytes may still change
        self._in_line = False     # part of the current line is hashed already
        self._any_line = False

    def update(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._end_line(data[start:end])
            start = end + 1
        if start < len(data):
            self._continue_line(data[start:])

    def _continue_line(self, data: bytes) -> None:
        """Hash what of an unfinished line can no longer change and hold back
        only the rest (a CR that may precede LF; for relaxed, a whitespace
        run, as one space): a body that is one 20 MB line costs no more than
        20 MB of short ones (holding the whole line and copying it for every
        chunk was quadratic)."""
        data = self._partial + data
        if self.relaxed:
            data = _WSP_RUN.sub(b" ", data)
        tail = len(data) - 1 if data.endswith(b"\r") else len(data)
        if self.relaxed and data[:tail].endswith(b" "):
            tail -= 1     # one space (a run, compressed) that a line end would remove
        done, self._partial = data[:tail], data[tail:]
        if done:
            self._content(done)

    def _end_line(self, data: bytes) -> None:
        line = self._partial + data
        self._partial = b""
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.relaxed:
            line = _WSP_RUN.sub(b" ", line).rstrip(b" ")
        if line or self._in_line:
            if line:
                self._content(line)
            self._feed(b"\r\n")
            self._any_line = True
        else:
            self._pending_empty += 1
        self._in_line = False

    def _content(self, data: bytes) -> None:
        if self._pending_empty:     # empty lines count only when text follows
            self._feed(b"\r\n" * self._pending_empty)
            self._pending_empty = 0
        self._feed(data)
        self._in_line = True

    def _feed(self, data: bytes) -> None:
        if self._limit is not None:
            data = data[: max(0, self._limit - self._hashed)]
        self._hashed += len(data)
        self._hash.update(data)

    def digest(self) -> bytes:
        """The body hash; the hasher takes no more data after this."""
        if self._partial or self._in_line:
            # the last line lacked its line end; the wire adds one (a CR
            # there is a bare CR: no LF followed it)
            partial, self._partial = self._partial, b""
            if self.relaxed:
                partial = partial.rstrip(b" ")
            if partial:
                self._content(partial)
            self._end_line(b"")
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
