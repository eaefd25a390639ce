"""Attacks on tmail's own DKIM signatures and ARC sets (tmail.core.signer),
from outside: a sender who controls the header block (and the DNS of a
domain of their own), and a receiver who verifies what tmail sends with
dkimpy. Each test here failed against the signer as it was first written."""
import base64
import hashlib
import re

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_private_key
from dkim import RE_BTAG, hash_headers, rfc822_parse
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value
from helpers import d_test_keys

from tmail.core import headers as hdr
from tmail.core.authresults import Spf
from tmail.core.signer import Signer, relaxed
from tmail.keys import generate_private, public_record
from tmail.mailpath.deliverability import Deliverability

RSA = generate_private("rsa", 1024)
ED = generate_private("ed25519")
EVIL = generate_private("rsa", 1024)       # the sender's own key, for the chains it crafts
ZONE = {
    "rsa._domainkey.sign.test": public_record("rsa", RSA).encode(),
    "ed._domainkey.sign.test": public_record("ed25519", ED).encode(),
    "e._domainkey.evil.test": public_record("rsa", EVIL).encode(),
}


def dnsfunc(name, timeout=5):
    return ZONE.get(name.decode().rstrip("."))


def wire(message: bytes) -> bytes:
    """What the reinjection client sends (tmail.mailpath.smtp): every line end CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- 1. values whose ends dkimpy (and OpenDKIM) canonicalise differently -------------

AMBIGUOUS = [b"Subject: hello\x0c\n", b"Subject: hello\x0b\n", b"Subject:\x0chello\n",
             b"Subject: hello\r\r\n", b"Subject: a\rFrom: evil@x.test\n",
             b"SUBJECT: hello\x0c\n", b"Subject : hello\x0c\n", b"Subject: a\n \x0cb\n"]
AMBIGUOUS_IDS = ["ff-end", "vt-end", "ff-start", "cr-end", "cr-mid", "upper-case-name",
                 "blank-before-colon", "continuation-line"]


@pytest.mark.parametrize("field", AMBIGUOUS, ids=AMBIGUOUS_IDS)
def test_a_signed_field_verifiers_read_differently_is_not_signed(field):
    """relaxed canonicalisation per RFC 6376 strips SP and HTAB; dkimpy
    strips every ASCII blank at a value's ends (CR, VT, FF too), OpenDKIM
    turns them into blanks anywhere, and a bare CR is a line end to some
    readers (a hidden second From): no signature verifies everywhere."""
    assert "subject field holds a bare CR, a VT or an FF" in Signer(
        hdr.split_fields(b"From: a@sign.test\n" + field)).unsignable()
    assert Signer(hdr.split_fields(b"From: a@sign.test\nX-Other: a\x0c\n")).unsignable() == ""


# -- deliverability with a real key directory, the sender's zone beside it ------------

@pytest.fixture
def deliverability(tmp_path):
    store, zone = d_test_keys(tmp_path / "dkim")
    zone.update({name: [value] for name, value in ZONE.items()})
    d = Deliverability(store, lambda name: zone.get(name, []), "mx.d.test")
    d.zone = zone
    return d


def forward(deliverability, header: bytes, spf=None) -> bytes:
    prepared = deliverability.prepare_forward(header, iter([b"\n" + BODY_LF]), alias_address="shop@d.test",
                                              from_rewrite="never", sign_domains=("d.test",), spf=spf)
    return prepared.header + b"".join(prepared.body)


def zone_dns(deliverability):
    return lambda name, timeout=5: (deliverability.zone.get(name.decode().rstrip("."), [None]))[0]


# -- crafting chains as dkimpy verifies them ------------------------------------------

BODY_LF = b"hi\n"
BH = base64.b64encode(hashlib.sha256(b"hi\r\n").digest()).decode()   # relaxed body hash of "hi"
POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


class _Recorder:
    def __init__(self):
        self.data = b""

    def update(self, data):
        self.data += data


def _fill(message: bytes, index: int) -> bytes:
    """Put in b= of header `index` (dkimpy's parse) what dkimpy's ARC
    verifier checks: the AMS over its h=, the AS over the ARC fields whose
    i= (dkimpy's regex) is at most its own, picked by name from the bottom."""
    headers, _ = rfc822_parse(message)
    name, value = headers[index]
    canonical = POLICY.canonicalize_headers(headers)
    record = _Recorder()
    if name.lower() == b"arc-message-signature":
        include = [x.lower() for x in re.split(rb"\s*:\s*", parse_tag_value(value)[b"h"])] + [b"from"]
        hash_headers(record, POLICY, canonical, include, (name, value), {})
    else:
        relaxed_value = POLICY.canonicalize_headers([(name, value)])[0][1]
        instance = int(dkim.ARC.INSTANCE_RE.search(relaxed_value).group(1))
        _, arc = dkim.ARC(message).sorted_arc_headers()
        include = [h[0].lower() for i, h in arc if i <= instance][::-1]
        hash_headers(record, POLICY, canonical, include[:-1], (b"ARC-Seal", b" " + relaxed_value), {})
    b = base64.b64encode(load_pem_private_key(EVIL, None).sign(record.data, padding.PKCS1v15(), hashes.SHA256()))
    lines = message.split(b"\r\n")
    starts = [i for i, line in enumerate(lines) if line and line[:1] not in (b" ", b"\t")]
    at = starts[index]
    assert lines[at].endswith(b"b=")
    lines[at] += b
    return b"\r\n".join(lines)


def crafted(arc_fields: str) -> bytes:
    """A message (CRLF) under `arc_fields` (no b= yet), every b= filled from the bottom up."""
    message = (arc_fields + "From: a@orig.test\r\nSubject: x\r\n\r\nhi\r\n").encode()
    while True:
        todo = [i for i, (_, v) in enumerate(rfc822_parse(message)[0]) if v.rstrip().endswith(b"b=")]
        if not todo:
            return message
        message = _fill(message, todo[-1])


def AS(tags):
    return f"ARC-Seal: {tags}; a=rsa-sha256; d=evil.test; s=e; b=\r\n"


def AMS(tags):
    return (f"ARC-Message-Signature: {tags}; a=rsa-sha256; c=relaxed/relaxed; d=evil.test; s=e;"
            f" h=from:subject; bh={BH}; b=\r\n")


def AAR(text):
    return f"ARC-Authentication-Results: {text}\r\n"


def rfc_chain_valid(header: bytes, txt) -> bool:
    """The chain read as RFC 8617 says (s5.2 steps 1-3 and 6): each AAR
    begins with i=N (s4.1.1: arc-info = arc-instance ";" authres-payload),
    the AMS and AS carry i= as a tag, instances 1*2DIGIT from 1 with no gap,
    one of each field per set, cv=none at 1 and pass above, and every
    ARC-Seal verifies over the sets 1..N by instance (AAR, AMS, AS; its own
    b= empty), relaxed (s5.1.1)."""
    sets = {}
    for field in hdr.split_fields(header):
        name, value = hdr.name_of(field), hdr.raw_value(field)
        if not name.startswith("arc-"):
            continue
        if name == "arc-authentication-results":
            m = re.match(rb"i[ \t]*=[ \t]*([0-9]{1,2})[ \t]*;", value)
            instance = int(m.group(1)) if m else None
        else:
            tag = parse_tag_value(value).get(b"i", b"")
            instance = int(tag) if re.fullmatch(rb"[0-9]{1,2}", tag) else None
        if instance is None or name in sets.setdefault(instance, {}):
            return False
        sets[instance][name] = field
    if sorted(sets) != list(range(1, len(sets) + 1)) or any(len(s) != 3 for s in sets.values()):
        return False
    order = ("arc-authentication-results", "arc-message-signature", "arc-seal")
    for k in sets:
        tags = parse_tag_value(hdr.raw_value(sets[k]["arc-seal"]))
        if tags.get(b"cv") != (b"none" if k == 1 else b"pass"):
            return False
        data = b"".join(relaxed(sets[j][n]) + b"\r\n" for j in range(1, k) for n in order)
        data += relaxed(sets[k][order[0]]) + b"\r\n" + relaxed(sets[k][order[1]]) + b"\r\n"
        data += relaxed(RE_BTAG.sub(rb"\1", sets[k]["arc-seal"].rstrip(b"\r\n")))
        record = txt(f"{tags[b's'].decode()}._domainkey.{tags[b'd'].decode()}")
        key = load_der_public_key(base64.b64decode(parse_tag_value(record[0])[b"p"]))
        try:
            key.verify(base64.b64decode(re.sub(rb"\s+", b"", tags[b"b"])), data,
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
    return True


CHAINS = {
    # one set; the AAR's i= is not its first part
    "aar-i-not-first": AS("i=1; cv=none") + AMS("i=1") + AAR("mx.evil.test; i=1; spf=pass"),
    # two AARs whose i= dkimpy reads from inside the results ("x=y i=N"), tmail from the last part
    "aar-swap": (AS("i=2; cv=pass") + AMS("i=2") + AAR("mx.evil.test; x=y i=2; i=1")
                 + AS("i=1; cv=none") + AMS("i=1") + AAR("mx.evil.test; x=y i=1; i=2")),
    # well-formed tag lists with an unknown tag "xi": dkimpy's regex reads its value as the instance
    "as-unknown-tag-xi": (AS("xi=2; i=1; cv=pass") + AMS("i=2") + AAR("i=2; mx.evil.test; arc=pass")
                          + AS("xi=1; i=2; cv=none") + AMS("i=1") + AAR("i=1; mx.evil.test; spf=pass")),
    "ams-unknown-tag-xi": (AS("i=2; cv=pass") + AMS("xi=2; i=1") + AAR("i=2; mx.evil.test; arc=pass")
                           + AS("i=1; cv=none") + AMS("xi=1; i=2") + AAR("i=1; mx.evil.test; spf=pass")),
}


def _added_seal(out: bytes):
    m = re.match(rb"ARC-Seal: i=(\d+); cv=(\w+)", out)
    return (int(m.group(1)), m.group(2).decode()) if m else None


# -- 2. cv=pass over a chain that does not validate ----------------------------------

@pytest.mark.parametrize("case", sorted(CHAINS))
def test_no_cv_pass_set_over_a_chain_rfc_8617_rejects(deliverability, case):
    message = crafted(CHAINS[case])
    header = message.split(b"\r\n\r\n")[0] + b"\r\n"
    assert dkim.arc_verify(message, dnsfunc=zone_dns(deliverability))[0] == dkim.CV_Pass   # dkimpy: pass
    txt = lambda name: deliverability.zone.get(name, [])  # noqa: E731
    assert not rfc_chain_valid(header, txt)                                            # RFC 8617: fail
    out = forward(deliverability, header.replace(b"\r\n", b"\n"))
    seal = _added_seal(out)
    assert seal is None or seal[1] != "pass", f"tmail vouched for the chain: {seal}"


def test_a_chain_with_a_field_verifiers_read_differently_fails(deliverability):
    """An earlier set whose AAR ends in a form feed passes in dkimpy, but
    other verifiers canonicalise it otherwise: tmail does not vouch for it."""
    message = crafted(AS("i=1; cv=none") + AMS("i=1") + AAR("i=1; mx.evil.test; spf=pass\x0c"))
    dns = zone_dns(deliverability)
    assert dkim.arc_verify(message, dnsfunc=dns)[0] == dkim.CV_Pass
    out = forward(deliverability, message.split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n")
    assert _added_seal(out) == (2, "fail") and b"arc=fail" in out


# -- 3. what a sender's values make of the lines tmail adds --------------------------

def _added_fields(out: bytes, header: bytes) -> bytes:
    """tmail's own fields: everything above the first line of the header that arrived."""
    return out[:out.index(header.split(b"\n")[0])]


LONG_DOMAIN = ".".join(["a" * 60] * 20) + ".test"        # 1225 characters, printable ASCII


@pytest.mark.parametrize("header,spf", [
    (f"DKIM-Signature: v=1; a=rsa-sha256; d={LONG_DOMAIN}; s=s; h=from; bh=AAAA; b=BBBB\n"
     "From: alice@orig.test\nSubject: x\n", None),
    ("DKIM-Signature: v=1; a=rsa-sha256; d=orig.test; s=" + ".".join(["s" * 60] * 20)
     + "; h=from; bh=AAAA; b=BBBB\nFrom: alice@orig.test\nSubject: x\n", None),
    ("From: alice@orig.test\nSubject: x\n", Spf("pass", "alice@orig.test", "h" * 1200 + ".orig.test")),
    ("From: alice@orig.test\nSubject: x\n", Spf("pass", "a" * 1200 + "@orig.test", "mx.orig.test")),
], ids=["dkim-d", "dkim-s", "helo", "mail-from"])
def test_no_line_tmail_adds_is_longer_than_998(deliverability, header, spf):
    """RFC 5322 s2.1.1: a line MUST be no longer than 998 characters. The
    header.d=, header.s= and smtp.helo= a sender chose are copied whole into
    one line of the Authentication-Results field and of the
    ARC-Authentication-Results the seal covers; Postfix's smtp client
    (smtp_line_length_limit = 998) breaks such a line by inserting CRLF SP,
    which relaxed canonicalisation keeps as a space: the seal breaks on the
    way."""
    out = forward(deliverability, header.encode(), spf=spf)
    added = _added_fields(out, header.encode()).replace(b"\r\n", b"\n").split(b"\n")
    assert max(len(line) for line in added) <= 998


def test_seal_survives_postfix_breaking_long_lines(deliverability):
    header = (f"DKIM-Signature: v=1; a=rsa-sha256; d={LONG_DOMAIN}; s=s; h=from; bh=AAAA; b=BBBB\n"
              "From: alice@orig.test\nSubject: x\n").encode()
    sent = wire(forward(deliverability, header))
    broken = []
    for line in sent.split(b"\r\n"):       # smtp(8), smtp_line_length_limit = 998
        while len(line) > 998:
            broken.append(line[:998])
            line = b" " + line[998:]
        broken.append(line)
    assert dkim.arc_verify(b"\r\n".join(broken), dnsfunc=zone_dns(deliverability))[0] == dkim.CV_Pass


def test_the_rfc_reading_passes_an_ordinary_chain(deliverability):
    """The reference the tests above use agrees with dkimpy on a plain chain
    (and on tmail's own sets)."""
    message = crafted(AS("i=2; cv=pass") + AMS("i=2") + AAR("i=2; mx.evil.test; arc=pass")
                      + AS("i=1; cv=none") + AMS("i=1") + AAR("i=1; mx.evil.test; spf=pass"))
    txt = lambda name: deliverability.zone.get(name, [])  # noqa: E731
    header = message.split(b"\r\n\r\n")[0] + b"\r\n"
    assert rfc_chain_valid(header, txt)
    out = wire(forward(deliverability, header.replace(b"\r\n", b"\n")))
    assert _added_seal(out) == (3, "pass")
    assert rfc_chain_valid(out.split(b"\r\n\r\n")[0] + b"\r\n", txt)
    assert dkim.arc_verify(out, dnsfunc=zone_dns(deliverability))[0] == dkim.CV_Pass


@pytest.mark.parametrize("field", AMBIGUOUS, ids=AMBIGUOUS_IDS)
def test_such_a_message_is_forwarded_unsigned_and_unsealed(deliverability, field, caplog):
    out = forward(deliverability, b"From: alice@orig.test\nTo: b@x.test\n" + field)
    assert b"DKIM-Signature" not in out and b"ARC-Seal" not in out
    assert out.endswith(b"To: b@x.test\n" + field + b"\n" + BODY_LF)
    assert "sent unsigned and unsealed" in caplog.text
