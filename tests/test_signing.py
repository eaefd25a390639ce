"""Streamed body hashes, DKIM signing/verification and ARC sealing, checked
against dkimpy working on the whole message (the reference)."""
import base64
import hashlib

import dkim
import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.core import signing
from tmail.core.bodyhash import BodyHasher
from tmail.keys import generate_private, public_record

RSA = generate_private("rsa", 1024)
ED = generate_private("ed25519")
ZONE = {
    "rsa._domainkey.sign.test": public_record("rsa", RSA).encode(),
    "ed._domainkey.sign.test": public_record("ed25519", ED).encode(),
}


def txt(name):
    return [ZONE[name]] if name in ZONE else []


def dnsfunc(name, timeout=5):
    return ZONE.get(name.decode().rstrip("."))


lines = st.lists(st.text(alphabet=" \tab\r", max_size=8), max_size=8)


@settings(max_examples=300, deadline=None)
@given(lines, st.integers(min_value=1, max_value=7))
def test_streamed_body_hash_matches_dkimpy(body_lines, cut):
    # pipe(8) hands over LF line ends; the reinjection sends CRLF, and the
    # receiver hashes what arrived
    lf_body = "\n".join(body_lines).encode()
    wire = lf_body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    wire = wire + b"\r\n" if wire and not wire.endswith(b"\r\n") else wire
    for canon, name in ((Simple, b"simple"), (Relaxed, b"relaxed")):
        expected = hashlib.sha256(canon.canonicalize_body(wire)).digest()
        hasher = BodyHasher(name)
        for start in range(0, len(lf_body), cut):
            hasher.update(lf_body[start:start + cut])
        assert hasher.digest() == expected, (name, wire)


def test_length_limit_hashes_a_prefix():
    body = b"line one\r\nline two\r\n"
    hasher = BodyHasher(b"simple", b"sha256", limit=5)
    hasher.update(body)
    assert hasher.digest() == hashlib.sha256(body[:5]).digest()


MESSAGE = (b"From: Alice <alice@sign.test>\r\nTo: shop@d.test\r\nSubject: hello\r\n"
           b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@sign.test>\r\n\r\n"
           b"Hello  there \r\n\r\nbye\r\n\r\n")


def split(message):
    header, _, body = message.partition(b"\r\n\r\n")
    hashes = signing.body_hashes_for(header + b"\r\n")
    hashes.update(body)
    return header + b"\r\n", body, hashes.finish()


@pytest.mark.parametrize("algorithm,private,selector", [("rsa", RSA, "rsa"), ("ed25519", ED, "ed")])
def test_signature_over_streamed_hash_verifies_with_dkimpy(algorithm, private, selector):
    header, body, digests = split(MESSAGE)
    field = signing.dkim_sign(header, digests, signing.Key("sign.test", selector, algorithm, private))
    assert b"c=relaxed/simple" in field and b"d=sign.test" in field
    assert dkim.verify(field + MESSAGE, dnsfunc=dnsfunc)
    assert not dkim.verify(field + MESSAGE.replace(b"bye", b"BYE"), dnsfunc=dnsfunc)


def test_verification_reports_pass_fail_and_missing_key():
    signed = dkim.sign(MESSAGE, b"rsa", b"sign.test", RSA, canonicalize=(b"relaxed", b"relaxed"))
    header, _, digests = split(signed + MESSAGE)
    [result] = signing.verify_dkim(header, digests, txt)
    assert (result.result, result.domain, result.selector) == ("pass", "sign.test", "rsa")
    assert "from" in result.signed_headers

    _, _, tampered = split(signed + MESSAGE.replace(b"bye", b"ciao"))
    assert signing.verify_dkim(header, tampered, txt)[0].result == "fail"
    assert signing.verify_dkim(header, digests, lambda name: [])[0].result == "permerror"
    assert signing.verify_dkim(header, digests, lambda name: None)[0].result == "temperror"


def test_arc_seal_starts_and_continues_a_chain():
    key = signing.Key("sign.test", "rsa", "rsa", RSA)
    ar = b"Authentication-Results: mx.sign.test; dkim=none; arc=none\r\n"
    header, body, digests = split(ar + MESSAGE)
    first = b"".join(signing.arc_seal(header, digests, key, "mx.sign.test"))
    assert b"i=1" in first and b"cv=none" in first
    once = first + ar + MESSAGE
    assert dkim.arc_verify(once, dnsfunc=dnsfunc)[0] == dkim.CV_Pass

    header2, _, digests2 = split(once)
    assert signing.verify_arc(header2, digests2, txt) == "pass"
    ar2 = b"Authentication-Results: mx2.sign.test; arc=pass\r\n"
    second = b"".join(signing.arc_seal(ar2 + header2, digests2, key, "mx2.sign.test"))
    assert b"i=2" in second and b"cv=pass" in second
    assert dkim.arc_verify(second + ar2 + once, dnsfunc=dnsfunc)[0] == dkim.CV_Pass

    _, _, changed = split(once.replace(b"bye", b"ciao"))
    assert signing.verify_arc(header2, changed, txt) == "fail"


def test_body_hashes_cover_what_incoming_signatures_ask_for():
    header = (b"DKIM-Signature: v=1; a=rsa-sha1; c=simple/relaxed; l=10; d=x.test; s=s; h=from; "
              b"bh=" + base64.b64encode(b"x") + b"; b=abc\r\nFrom: a@x.test\r\n")
    hashes = signing.body_hashes_for(header)
    hashes.update(b"body\r\n")
    assert set(hashes.finish()) == {signing.SIGN_BODY, signing.ARC_BODY, (b"relaxed", b"sha1", 10)}
