"""The DKIM-Signature fields and ARC sets tmail adds (RFC 6376, RFC 8617).

Signing is tmail's own; verifying what arrived stays dkimpy's
(tmail.core.signing). A forward gets four signatures over one header
block: DKIM with RSA and with ed25519, the ARC-Message-Signature and the
ARC-Seal. dkimpy parsed and canonicalised the block again for each (and
parsed tmail's own Authentication-Results back for the seal): a third of a
forward's CPU. A Signer canonicalises each field once for all four.

All four use relaxed header canonicalisation (RFC 6376 s3.4.2), so a
field's canonical form follows from its bytes alone. tmail's own fields
are one logical line, folded only at single spaces and inside b='s
base64 (where folding is ignored): what is hashed for the field being
signed is that line with b= empty, the same however it is folded.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterable

from . import headers as hdr

CRLF = b"\r\n"
LINE = 78                  # RFC 5322 s2.1.1: lines SHOULD NOT be longer
MAX_ARC_INSTANCE = 50      # RFC 8617 s4.2.1

# What DKIM and the ARC-Message-Signature sign: RFC 6376 s5.4.1's list.
# From is signed once more than it appears (RFC 6376 s8.15): a From field
# added on the way breaks the signature instead of being shown.
SIGNED = frozenset((
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version",
    "content-type", "content-transfer-encoding", "content-id", "content-description",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id",
    "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe", "list-subscribe",
    "list-post", "list-owner", "list-archive"))
OVERSIGNED = frozenset(("from",))

SIGN_BODY = (b"simple", b"sha256", None)     # the body hash of tmail's DKIM (relaxed/simple)
ARC_BODY = (b"relaxed", b"sha256", None)     # of the ARC-Message-Signature (relaxed/relaxed)
ARC_FIELDS = ("arc-authentication-results", "arc-message-signature", "arc-seal")   # a set's order

_LINE_END = re.compile(rb"\r?\n")
_AMBIGUOUS = re.compile(rb"\r(?!\n)|[\x0b\x0c]")
_BLANKS = re.compile(rb"[ \t]+")


@dataclasses.dataclass(frozen=True)
class Key:
    domain: str
    selector: str
    algorithm: str          # "rsa" or "ed25519"
    private: bytes          # PEM (rsa) or base64 of the 32-byte seed (ed25519)

    @property
    def dkim_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"


def relaxed(field: bytes) -> bytes:
    """A field in relaxed canonical form, without its line end: the name in
    lower case, the value unfolded, each run of blanks one space, no blanks
    around the colon or at the ends."""
    name, _, value = field.partition(b":")
    value = _BLANKS.sub(b" ", _LINE_END.sub(b"", value)).strip(b" \t")
    return name.rstrip(b" \t").lower() + b":" + value


class Signer:
    """Signatures over one header block (its fields, as tmail.core.headers
    splits them), each field canonicalised at most once."""

    def __init__(self, fields: list[bytes]):
        self.fields = fields
        self.names = [hdr.name_of(field) for field in fields]
        self._signed: tuple[bytes, bytes] | None = None

    def unsignable(self) -> str:
        """Why this block cannot be signed ("" when it can): a line that is
        no field (receivers disagree where such a header ends), or a field
        DKIM signs that verifiers canonicalise differently."""
        for name, field in zip(self.names, self.fields, strict=True):
            if not name:
                return "a line in the header is no header field"
            if name in SIGNED and ambiguous(field):
                return f"the {name} field holds a bare CR, a VT or an FF"
        return ""

    def _signed_fields(self) -> tuple[bytes, bytes]:
        """h= (each signed field's name once per occurrence, top to bottom,
        then the oversigned ones again), and the canonical fields it names,
        each name taking its fields from the bottom up (RFC 6376 s5.4.2; a
        name with none left adds nothing). The same for DKIM's two
        signatures and the ARC-Message-Signature: made once."""
        if self._signed is None:
            by_name: dict[str, list[bytes]] = {}
            for name, field in zip(self.names, self.fields, strict=True):
                if name in SIGNED:
                    by_name.setdefault(name, []).append(relaxed(field))
            names = [n for n in self.names if n in SIGNED]
            names += [n for n in names if n in OVERSIGNED]
            self._signed = (" : ".join(names).encode(),
                            b"".join(by_name[n].pop() + CRLF for n in names if by_name.get(n)))
        return self._signed

    def dkim(self, key: Key, body_hashes: dict, now: int) -> bytes:
        """A DKIM-Signature field: relaxed/simple, RFC 6376's fields."""
        names, hashed = self._signed_fields()
        domain = _domain(key)
        tags = [b"v=1", b"a=" + key.dkim_algorithm, b"c=relaxed/simple", b"d=" + domain,
                b"i=@" + domain, b"q=dns/txt", b"s=" + key.selector.encode(), b"t=%d" % now,
                b"h=" + names, b"bh=" + _bh(body_hashes, SIGN_BODY)]
        return _signed_field(b"DKIM-Signature", tags, hashed, key)

    def arc_set(self, key: Key, body_hashes: dict, authserv_id: str, results: list[str],
                now: int) -> list[bytes]:
        """The next ARC set (ARC-Seal, ARC-Message-Signature,
        ARC-Authentication-Results, as they go on top), continuing the
        chain; `results`: the clauses of tmail's Authentication-Results,
        whose arc= says how the chain that arrived validated. Empty where
        no set may be added: a chain that ended (cv=none above instance 1),
        one at RFC 8617's limit, or sets that arrived unusable."""
        cv = _chain_validation(results)
        highest, sets = self._arc_chain()
        if cv == b"fail":
            instance = highest + 1     # the seal covers only the set it completes
        elif sets is None:
            return []                  # sets that cannot be sealed over, yet not known to fail
        else:
            instance = len(sets) + 1
        if instance > MAX_ARC_INSTANCE or (instance > 1 and cv == b"none") \
                or (instance == 1 and cv != b"none"):
            return []
        aar = (b"ARC-Authentication-Results: i=%d; " % instance + authserv_id.encode()
               + b"".join(b";" + CRLF + b" " + r.encode() for r in results) + CRLF)
        names, hashed = self._signed_fields()
        domain = _domain(key)
        ams = _signed_field(b"ARC-Message-Signature", [
            b"i=%d" % instance, b"a=rsa-sha256", b"c=relaxed/relaxed", b"d=" + domain,
            b"s=" + key.selector.encode(), b"t=%d" % now, b"h=" + names,
            b"bh=" + _bh(body_hashes, ARC_BODY)], hashed, key)
        # The seal covers every set in order of instance, each AAR, AMS,
        # AS, then its own (RFC 8617 s5.1.1); after a failed chain, only
        # the set it completes.
        earlier = b"" if cv == b"fail" or not sets else b"".join(
            relaxed(sets[i][name]) + CRLF for i in range(len(sets)) for name in ARC_FIELDS)
        seal = _signed_field(b"ARC-Seal", [
            b"i=%d" % instance, b"cv=" + cv, b"a=rsa-sha256", b"d=" + domain,
            b"s=" + key.selector.encode(), b"t=%d" % now],
            earlier + relaxed(aar) + CRLF + relaxed(ams) + CRLF, key)
        return [seal, ams, aar]

    def _arc_chain(self) -> tuple[int, list[dict[str, bytes]] | None]:
        """The highest i= of the ARC fields that arrived, and their sets by
        instance from 1 (None: not a sequence of complete sets, each field
        once; such a chain validates as fail, and is not sealed over)."""
        found: dict[int, dict[str, bytes]] = {}
        complete = True
        for name, field in zip(self.names, self.fields, strict=True):
            if name not in ARC_FIELDS:
                continue
            instance = arc_instance(name, hdr.raw_value(field))
            if instance is None or name in found.setdefault(instance, {}):
                complete = False
                continue
            found[instance][name] = field
        highest = max(found, default=0)
        if not complete or sorted(found) != list(range(1, highest + 1)) or \
                any(len(fields) != len(ARC_FIELDS) for fields in found.values()):
            return highest, None
        return highest, [found[i] for i in range(1, highest + 1)]


def arc_instance(name: str, value: bytes) -> int | None:
    """An ARC field's instance as RFC 8617 reads it (s4.1): the AAR's value
    begins with i=N; the AMS and AS carry an i= tag. None: none, or not
    1 to 3 digits."""
    parts = value.split(b";")
    for part in parts[:1] if name == "arc-authentication-results" else parts:
        tag, equals, number = part.partition(b"=")
        number = number.strip(b" \t\r\n")
        if tag.strip(b" \t\r\n") == b"i" and equals:
            return int(number) if number.isdigit() and len(number) <= 3 else None
    return None


def ambiguous(field: bytes) -> bool:
    """A field verifiers canonicalise differently: a CR that ends no line, a
    VT or an FF (dkimpy strips them at a value's ends, OpenDKIM makes them
    blanks anywhere, RFC 6376 neither); some readers even take a bare CR
    for a line end. No signature over it would verify everywhere."""
    return bool(_AMBIGUOUS.search(field))


def _chain_validation(results: Iterable[str]) -> bytes:
    """cv= from the arc= clause: none without one, fail with several."""
    found = []
    for clause in results:
        method, _, rest = clause.partition("=")
        if method.strip().lower() == "arc" and rest.split():
            found.append(rest.split()[0].lower())
    if not found:
        return b"none"
    return found[0].encode() if len(found) == 1 and found[0] in ("pass", "fail", "none") else b"fail"


def _domain(key: Key) -> bytes:
    return key.domain.encode("idna")


def _bh(body_hashes: dict, which: tuple) -> bytes:
    return base64.b64encode(body_hashes[which])


def _signed_field(name: bytes, tags: list[bytes], hashed: bytes, key: Key) -> bytes:
    """`name: tags; b=signature`, folded. `hashed`: the canonical fields the
    signature covers, to which the field itself (b= empty) is added."""
    unsigned = name + b": " + b"; ".join(tags + [b"b="])
    data = hashed + relaxed(unsigned)
    return _fold(name + b": " + b"; ".join(tags) + b";") + CRLF + _fold_base64(
        b" b=" + base64.b64encode(_sign(key, data))) + CRLF


def _fold(line: bytes) -> bytes:
    """A line folded at spaces (a space becomes a line end and that space)
    so that no part is longer than LINE where a space allows it; never
    right after the field's name."""
    name, *words = line.split(b" ")
    out: list[bytes] = []
    current = name + b" " + words.pop(0) if words else name
    for word in words:
        if len(current) + 1 + len(word) > LINE:
            out.append(current)
            current = b" " + word
        else:
            current += b" " + word
    out.append(current)
    return CRLF.join(out)


def _fold_base64(line: bytes) -> bytes:
    """b= and its base64 in lines of LINE: folding white space inside the
    value is ignored by verifiers (RFC 6376 s3.5)."""
    parts = [line[:LINE]]
    parts += [b" " + line[i:i + LINE - 1] for i in range(LINE, len(line), LINE - 1)]
    return CRLF.join(parts)


@functools.lru_cache(maxsize=128)     # keys are few; parsing a PEM costs more than a signature
def _private_key(algorithm: str, private: bytes):
    if algorithm == "ed25519":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(private))
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    return load_pem_private_key(private, password=None)


def _sign(key: Key, data: bytes) -> bytes:
    private = _private_key(key.algorithm, key.private)
    if key.algorithm == "ed25519":
        # RFC 8463: Ed25519 over the SHA-256 digest of the signed data
        return private.sign(hashlib.sha256(data).digest())
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
