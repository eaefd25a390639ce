"""Verifying the DKIM signatures and ARC chain that arrived, over a header
block and streamed body hashes (tmail's own signatures and seals:
tmail.core.signer).

dkimpy verifies; tmail gives it only the header block, with the body
hashes computed while the body streamed (tmail.core.bodyhash). One dkimpy
method is where a body hash is checked (verify_sig_process); _Prehashed
puts the streamed digest there.

DNS lookups go through the `txt` function the caller passes (the port to
tmail's one resolver), so nothing here knows where DNS answers come from.

What one message can cost is bounded: at most MAX_DKIM_SIGNATURES
signatures are verified and hashed (600 signatures with distinct l= over
2 MB once took a minute of CPU), an ARC chain longer than MAX_ARC_SETS is
not verified at all, and all of a message's lookups share one deadline
(DnsBudget), so a DNS server that never answers costs VERIFY_SECONDS, not
a timeout per signature.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import inspect
import logging
import re
import time
from collections.abc import Callable

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from . import headers as hdr
from .bodyhash import BodyHashes
from .signer import ARC_BODY, ARC_FIELDS, SIGN_BODY, ambiguous, arc_instance, relaxed

log = logging.getLogger("tmail.signing")

# txt(name) or txt(name, timeout=seconds) -> the records; None: temporary DNS failure
TxtLookup = Callable[..., list[bytes] | None]

# Verified per message, topmost first; the rest are reported as dkim=policy
# (RFC 8601 s2.7.1: signed, but not acceptable to the verifier's policy).
# Large receivers stop at about as many.
MAX_DKIM_SIGNATURES = 10
# RFC 8617 s4.2.1 allows 50 ARC sets; a longer chain than this is arc=fail
# without verifying (real chains have a few: one set per forwarding hop).
MAX_ARC_SETS = 10
# A signature naming more header fields than this in h= is not verified
# (permerror): each name costs a search of the header block, and 7000 names
# over 12,000 small fields took 9 s of CPU. Real signatures name 10 to 40.
MAX_SIGNED_FIELDS = 100
VERIFY_SECONDS = 10.0    # for all of a message's DNS lookups together
DEADLINE_REASON = "DNS time limit for the message reached"



@dataclasses.dataclass(frozen=True)
class DkimResult:
    result: str             # pass | fail | neutral | temperror | permerror (RFC 8601)
    domain: str
    selector: str
    signed_headers: tuple[str, ...] = ()
    reason: str = ""
    partial_body: bool = False   # an l= tag: what follows the signed length is anyone's


def _body_key(tags: dict, default_c: bytes) -> tuple:
    c = tags.get(b"c", default_c)
    body_c = c.split(b"/")[1] if b"/" in c else b"simple"
    algorithm = tags.get(b"a", b"rsa-sha256").rpartition(b"-")[2]
    limit = tags.get(b"l")
    return body_c.strip().lower(), algorithm.strip().lower(), int(limit) if limit else None


def body_hashes_for(header: bytes) -> BodyHashes:
    """The body hashes the signatures that will be verified need (the first
    MAX_DKIM_SIGNATURES, an ARC chain no longer than MAX_ARC_SETS), plus
    tmail's own."""
    hashes = BodyHashes()
    hashes.want(*SIGN_BODY)
    hashes.want(*ARC_BODY)
    fields = hdr.split_fields(header)
    wanted = [f for f in fields if hdr.name_of(f) == "dkim-signature"][:MAX_DKIM_SIGNATURES]
    if not _arc_too_long(fields):
        # only the newest ARC-Message-Signature must validate (RFC 8617
        # s5.2): older ones' bodies are not hashed (and count as not valid)
        wanted += _newest_ams(fields)
    for field in wanted:
        default_c = b"simple/simple" if hdr.name_of(field) == "dkim-signature" else b"relaxed/relaxed"
        try:
            hashes.want(*_body_key(parse_tag_value(hdr.raw_value(field)), default_c))
        except (InvalidTagValueList, ValueError, KeyError):
            continue  # a broken signature fails on its own when verified
    return hashes


def _newest_ams(fields: list[bytes]) -> list[bytes]:
    def instance(field: bytes) -> int:
        try:
            return int(parse_tag_value(hdr.raw_value(field)).get(b"i", b"0"))
        except (InvalidTagValueList, ValueError):
            return 0
    signatures = [f for f in fields if hdr.name_of(f) == "arc-message-signature"]
    return [max(signatures, key=instance)] if signatures else []


def _too_many_signed(signature: bytes) -> bool:
    try:
        signed = parse_tag_value(signature).get(b"h", b"")
    except (InvalidTagValueList, ValueError):
        return False       # dkimpy reports the malformed signature itself
    return signed.count(b":") + 1 > MAX_SIGNED_FIELDS


def _arc_too_long(fields: list[bytes]) -> bool:
    counts = hdr.counts(fields)
    return max(counts.get("arc-seal", 0), counts.get("arc-message-signature", 0)) > MAX_ARC_SETS


class DnsBudget:
    """A TXT lookup with one deadline for all of a message's lookups: each
    gets at most the time left (when the lookup takes a timeout), and once
    it is spent every lookup is a temporary failure, DNS not asked."""

    def __init__(self, txt: TxtLookup, seconds: float = VERIFY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.txt, self.clock = txt, clock
        self.deadline = clock() + seconds
        self.lookups = 0
        self._takes_timeout = _takes_timeout(txt)

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    @property
    def expired(self) -> bool:
        return self.left() <= 0

    def __call__(self, name: str) -> list[bytes] | None:
        left = self.left()
        if left <= 0:
            return None
        self.lookups += 1
        return self.txt(name, timeout=left) if self._takes_timeout else self.txt(name)


@functools.lru_cache(maxsize=32)    # inspect.signature, once a lookup function, not a message
def _takes_timeout(txt: TxtLookup) -> bool:
    try:
        parameters = inspect.signature(txt).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "timeout" or p.kind is p.VAR_KEYWORD for p in parameters)


class _Prehashed:
    """Makes a dkimpy verifier use streamed body hashes instead of self.body."""

    body_hashes: dict

    def verify_sig_process(self, sig, include_headers, sig_header, dnsfunc):
        if b"bh" in sig:
            default_c = b"relaxed/relaxed" if sig_header[0].lower().startswith(b"arc") else b"simple/simple"
            try:
                key = _body_key(sig, default_c)
                claimed = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except (ValueError, TypeError) as exc:
                raise dkim.MessageFormatError(str(exc)) from None
            if self.body_hashes.get(key) != claimed:
                raise dkim.ValidationError("body hash mismatch")
            sig = {k: v for k, v in sig.items() if k != b"bh"}
        return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)

class _DKIM(_Prehashed, dkim.DKIM):
    pass


class _ARC(_Prehashed, dkim.ARC):
    pass


def _signer(cls, header: bytes, body_hashes: dict, **kw):
    signer = cls(_as_message(header), logger=log, **kw)
    signer.body_hashes = body_hashes
    return signer


def _as_message(header: bytes) -> bytes:
    return header.rstrip(b"\r\n") + b"\r\n\r\n"


class _Dns:
    """dkimpy's dnsfunc over the caller's TXT lookup; remembers temporary failures."""

    def __init__(self, txt: TxtLookup):
        self.txt, self.failed, self.missing = txt, False, False

    def __call__(self, name, timeout=5):
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        records = self.txt(name.rstrip("."))
        if records is None:
            self.failed = True
        elif not records:
            self.missing = True
        return records[0] if records else None


def verify_dkim(header: bytes, body_hashes: dict, txt: TxtLookup) -> list[DkimResult]:
    """The first MAX_DKIM_SIGNATURES DKIM-Signature fields verified (topmost
    first) within one DNS deadline (txt: a DnsBudget, or a lookup given
    VERIFY_SECONDS); one `policy` result stands for any further ones."""
    if b"dkim-signature" not in header.lower():
        return []          # nothing to verify: dkimpy need not parse the header block
    budget = txt if isinstance(txt, DnsBudget) else DnsBudget(txt)
    try:
        verifier = _signer(_DKIM, header, body_hashes)
    except Exception as exc:   # dkimpy's own errors and its bugs alike: a message, not an outage
        return [DkimResult("permerror", "", "", reason=str(exc))] if b"dkim-signature" in header.lower() else []
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(signatures[:MAX_DKIM_SIGNATURES]):
        if budget.expired:
            results.append(DkimResult("temperror", *_identity(value), reason=DEADLINE_REASON))
            continue
        if _too_many_signed(value):
            results.append(DkimResult("permerror", *_identity(value),
                                      reason=f"signs more than {MAX_SIGNED_FIELDS} header fields"))
            continue
        dns = _Dns(budget)
        malformed = False
        try:
            ok = verifier.verify(idx=index, dnsfunc=dns)
            reason = "" if ok else "signature did not verify"
        except dkim.ValidationError as exc:        # e.g. the body hash
            ok, reason = False, str(exc)
        except dkim.DKIMException as exc:          # malformed tags, unusable key
            ok, reason, malformed = False, str(exc), True
        except Exception as exc:   # a crafted field dkimpy trips over: the message's fault
            log.info("DKIM signature %d unverifiable: %s: %s", index, type(exc).__name__, exc)
            ok, reason, malformed = False, "signature not parseable", True
        fields = verifier.signature_fields or {}
        if ok:
            result = "pass"
        elif dns.failed:
            result = "temperror"
            reason = DEADLINE_REASON if budget.expired else "DNS lookup of the key failed"
        elif malformed or dns.missing:
            result = "permerror"
            reason = "no key published" if dns.missing else reason
        else:
            result = "fail"
        results.append(DkimResult(
            result, _text(fields.get(b"d", b"")).lower(), _text(fields.get(b"s", b"")),
            tuple(_text(h).lower() for h in getattr(verifier, "include_headers", ()) or ()), reason,
            partial_body=b"l" in fields))
    unverified = len(signatures) - MAX_DKIM_SIGNATURES
    if unverified > 0:
        results.append(DkimResult("policy", "", "", reason=f"{unverified} more signatures not verified"
                                                           f" (at most {MAX_DKIM_SIGNATURES} are)"))
    return results


def _identity(signature: bytes) -> tuple[str, str]:
    """d= and s= of a signature that is not verified, for the report."""
    try:
        tags = parse_tag_value(signature)
    except (InvalidTagValueList, ValueError):
        return "", ""
    return _text(tags.get(b"d", b"")).lower(), _text(tags.get(b"s", b""))


def verify_arc(header: bytes, body_hashes: dict, txt: TxtLookup) -> str:
    """The incoming ARC chain: 'none', 'pass' or 'fail' (RFC 8617 s5.2);
    a chain of more than MAX_ARC_SETS sets fails unverified."""
    if b"arc-seal" not in header.lower():
        return "none"
    fields = hdr.split_fields(header)
    if _arc_too_long(fields):
        log.info("ARC chain of more than %d sets: not verified", MAX_ARC_SETS)
        return "fail"
    arc = [(name, f) for f in fields if (name := hdr.name_of(f)) in ARC_FIELDS]
    if any(_too_many_signed(hdr.raw_value(f)) for name, f in arc if name == "arc-message-signature"):
        log.info("ARC-Message-Signature signs more than %d fields: not verified", MAX_SIGNED_FIELDS)
        return "fail"
    unclear = next((f for name, f in arc if not _read_alike(name, f)), None)
    if unclear is not None:
        log.info("ARC field read otherwise by RFC 8617 than by dkimpy, or by dkimpy than by other "
                 "verifiers (%r...): the chain fails", unclear[:60])
        return "fail"
    budget = txt if isinstance(txt, DnsBudget) else DnsBudget(txt)
    try:
        verifier = _signer(_ARC, header, body_hashes)
        cv = verifier.verify(dnsfunc=_Dns(budget))[0]
    except Exception as exc:   # dkimpy's errors, and its IndexError on a crafted i= tag
        log.info("ARC chain unusable: %s: %s", type(exc).__name__, exc)
        return "fail"
    return {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")


def _read_alike(name: str, field: bytes) -> bool:
    """Whether dkimpy, which gives the chain its verdict, reads this ARC
    field as tmail's seal will (tmail.core.signer): the instance RFC 8617
    says (dkimpy takes the first i=<digits> anywhere, even inside another
    tag or a result), and bytes every verifier canonicalises alike. Where
    they differ, a chain dkimpy passes could be sealed by tmail over other
    fields, or in another order, than it verified."""
    strict = arc_instance(name, hdr.raw_value(field))
    found = dkim.ARC.INSTANCE_RE.search(relaxed(field).partition(b":")[2])
    return strict is not None and found is not None and int(found.group(1)) == strict \
        and not ambiguous(field)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
