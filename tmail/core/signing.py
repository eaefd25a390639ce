"""DKIM signatures and ARC seals over a header block and streamed body hashes.

dkimpy does the header canonicalisation, the tag lists, the folding and
the cryptography; tmail gives it only the header block, with the body hashes
computed while the body streamed (tmail.core.bodyhash). Two dkimpy methods
are where a body hash is made or checked (gen_header for signing,
verify_sig_process for verifying); _Prehashed puts the streamed digest there.

DNS lookups go through the `txt` function the caller passes (the port to
tmail's one resolver), so nothing here knows where DNS answers come from.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import re
from typing import Callable

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from . import headers as hdr
from .bodyhash import BodyHashes

log = logging.getLogger("tmail.signing")

TxtLookup = Callable[[str], list[bytes] | None]   # None: temporary DNS failure

SIGN_BODY = (b"simple", b"sha256", None)     # tmail's DKIM: relaxed/simple
ARC_BODY = (b"relaxed", b"sha256", None)     # ARC: relaxed/relaxed only


@dataclasses.dataclass(frozen=True)
class Key:
    domain: str
    selector: str
    algorithm: str          # "rsa" or "ed25519"
    private: bytes          # PEM (rsa) or base64 seed (ed25519), as dkimpy takes them

    @property
    def dkim_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"


@dataclasses.dataclass(frozen=True)
class DkimResult:
    result: str             # pass | fail | neutral | temperror | permerror (RFC 8601)
    domain: str
    selector: str
    signed_headers: tuple[str, ...] = ()
    reason: str = ""


def _body_key(tags: dict, default_c: bytes) -> tuple:
    c = tags.get(b"c", default_c)
    body_c = c.split(b"/")[1] if b"/" in c else b"simple"
    algorithm = tags.get(b"a", b"rsa-sha256").rpartition(b"-")[2]
    limit = tags.get(b"l")
    return body_c.strip().lower(), algorithm.strip().lower(), int(limit) if limit else None


def body_hashes_for(header: bytes) -> BodyHashes:
    """The body hashes this header block's signatures need, plus tmail's own."""
    hashes = BodyHashes()
    hashes.want(*SIGN_BODY)
    hashes.want(*ARC_BODY)
    for field in hdr.split_fields(header):
        name = hdr.name_of(field)
        if name not in ("dkim-signature", "arc-message-signature"):
            continue
        try:
            tags = parse_tag_value(hdr.raw_value(field))
            key = _body_key(tags, b"simple/simple" if name == "dkim-signature" else b"relaxed/relaxed")
            hashes.want(*key)
        except (InvalidTagValueList, ValueError, KeyError):
            continue  # a broken signature fails on its own when verified
    return hashes


class _Prehashed:
    """Makes a dkimpy signer use streamed body hashes instead of self.body."""

    body_hashes: dict

    def verify_sig_process(self, sig, include_headers, sig_header, dnsfunc):
        if b"bh" in sig:
            default_c = b"relaxed/relaxed" if sig_header[0].lower().startswith(b"arc") else b"simple/simple"
            try:
                key = _body_key(sig, default_c)
                claimed = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except (ValueError, TypeError) as exc:
                raise dkim.MessageFormatError(str(exc))
            if self.body_hashes.get(key) != claimed:
                raise dkim.ValidationError("body hash mismatch")
            sig = {k: v for k, v in sig.items() if k != b"bh"}
        return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, standardize=False):
        algorithm = self.signature_algorithm.rpartition(b"-")[2]
        key = (canon_policy.body_algorithm.name, algorithm, None)
        fields = [(k, base64.b64encode(self.body_hashes[key]) if k == b"bh" else v) for k, v in fields]
        if self.signature_algorithm != b"rsa-sha256" or not isinstance(pk, dict):
            return super().gen_header(fields, include_headers, canon_policy, header_name, pk, standardize)
        # dkimpy signs RSA in pure Python (about 5 ms for 2048 bits, holding
        # the GIL: three signatures a message capped the daemon near 60
        # msg/s); OpenSSL takes a fraction of that. dkimpy's ed25519 branch
        # signs the same SHA-256 header digest through pk.sign(digest), so
        # an OpenSSL RSA key goes in behind that interface; the a= tag in
        # `fields` still says rsa-sha256.
        self.signature_algorithm = b"ed25519-sha256"
        try:
            return super().gen_header(fields, include_headers, canon_policy, header_name,
                                      _openssl_rsa(pk), standardize)
        finally:
            self.signature_algorithm = b"rsa-sha256"


class _Signature(bytes):
    @property
    def signature(self) -> bytes:
        return bytes(self)


class _OpenSslRsa:
    """An RSA private key (OpenSSL) with the sign(digest) interface dkimpy
    uses for ed25519 keys: RSASSA-PKCS1-v1_5 over a SHA-256 digest."""

    def __init__(self, numbers: dict):
        from cryptography.hazmat.primitives.asymmetric import rsa
        public = rsa.RSAPublicNumbers(numbers["publicExponent"], numbers["modulus"])
        self._key = rsa.RSAPrivateNumbers(
            numbers["prime1"], numbers["prime2"], numbers["privateExponent"], numbers["exponent1"],
            numbers["exponent2"], numbers["coefficient"], public).private_key()

    def sign(self, digest: bytes) -> _Signature:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils
        return _Signature(self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())))


_RSA_KEYS: dict[int, _OpenSslRsa] = {}


def _openssl_rsa(numbers: dict) -> _OpenSslRsa:
    key = _RSA_KEYS.get(numbers["modulus"])
    if key is None:
        if len(_RSA_KEYS) > 100:   # keys are few; a rotated one is dropped eventually
            _RSA_KEYS.clear()
        key = _RSA_KEYS[numbers["modulus"]] = _OpenSslRsa(numbers)
    return key


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
    """Every DKIM-Signature in the header block, verified (topmost first)."""
    try:
        verifier = _signer(_DKIM, header, body_hashes)
    except dkim.DKIMException as exc:
        return [DkimResult("permerror", "", "", reason=str(exc))] if b"dkim-signature" in header.lower() else []
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(count):
        dns = _Dns(txt)
        malformed = False
        try:
            ok = verifier.verify(idx=index, dnsfunc=dns)
            reason = "" if ok else "signature did not verify"
        except dkim.ValidationError as exc:        # e.g. the body hash
            ok, reason = False, str(exc)
        except dkim.DKIMException as exc:          # malformed tags, unusable key
            ok, reason, malformed = False, str(exc), True
        fields = verifier.signature_fields or {}
        if ok:
            result = "pass"
        elif dns.failed:
            result = "temperror"
        elif malformed or dns.missing:
            result = "permerror"
        else:
            result = "fail"
        results.append(DkimResult(
            result, _text(fields.get(b"d", b"")).lower(), _text(fields.get(b"s", b"")),
            tuple(_text(h).lower() for h in getattr(verifier, "include_headers", ()) or ()), reason))
    return results


def verify_arc(header: bytes, body_hashes: dict, txt: TxtLookup) -> str:
    """The incoming ARC chain: 'none', 'pass' or 'fail' (RFC 8617 s5.2)."""
    if b"arc-seal" not in header.lower():
        return "none"
    try:
        verifier = _signer(_ARC, header, body_hashes)
        cv, _, reason = verifier.verify(dnsfunc=_Dns(txt))
    except dkim.DKIMException as exc:
        log.info("ARC chain unusable: %s", exc)
        return "fail"
    return {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")


def dkim_sign(header: bytes, body_hashes: dict, key: Key) -> bytes:
    """A DKIM-Signature header field (relaxed/simple, RFC 6376's header list)."""
    signer = _signer(_DKIM, header, body_hashes)
    return signer.sign(key.selector.encode(), key.domain.encode("idna"), key.private,
                       signature_algorithm=key.dkim_algorithm,
                       canonicalize=(b"relaxed", b"simple"))


def arc_seal(header: bytes, body_hashes: dict, key: Key, authserv_id: str) -> list[bytes]:
    """The next ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results),
    continuing the chain the Authentication-Results for authserv_id describes.
    Empty when the chain has ended (an earlier hop reported it failed)."""
    signer = _signer(_ARC, header, body_hashes)
    return signer.sign(key.selector.encode(), key.domain.encode("idna"), key.private,
                       authserv_id.encode())


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
