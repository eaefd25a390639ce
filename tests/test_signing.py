"""Streamed body hashes, DKIM signing/verification and ARC sealing, checked
against dkimpy working on the whole message (the reference)."""
import base64
import hashlib
import time

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


def _unfiltered(cls, header, digests, key, *args, **kw):
    """What dkimpy makes of the whole header block (tmail gives it less)."""
    return signing._signer(cls, header, digests).sign(key.selector.encode(), key.domain.encode(),
                                                      key.private, *args, **kw)


def test_fields_dkimpy_would_not_sign_are_left_out_without_changing_a_signature(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000)    # t= is part of what is signed
    rsa, ed = signing.Key("sign.test", "rsa", "rsa", RSA), signing.Key("sign.test", "ed", "ed25519", ED)
    earlier_ar = b"Authentication-Results: mx.sign.test; dkim=none; arc=none\r\n"
    header, _, digests = split(earlier_ar + MESSAGE)
    earlier_set = b"".join(signing.arc_seal(header, digests, rsa, "mx.sign.test"))
    extra = (b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=AAAA; b=BBBB\r\n"
             b"Received: from a by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n"
             b"X-Spam: no\r\nSUBJECT: case\r\nCc: x@y.test,\r\n\tz@y.test\r\n"
             b"List-Id: <l.y.test>\r\nDelivered-To: shop@d.test\r\nReceived: from c by d\r\n"
             b"Authentication-Results: other.test; spf=pass smtp.mailfrom=a@b.test\r\n"
             b"Authentication-Results: broken\r\nReply-To: r@y.test\r\n")
    ours = b"Authentication-Results: mx2.sign.test; spf=none; dkim=none; dmarc=none; arc=pass\r\n"
    whole = ours + extra + earlier_set + earlier_ar + MESSAGE
    header, _, digests = split(whole)
    for key in (rsa, ed):
        assert signing.dkim_sign(header, digests, key) == _unfiltered(
            signing._DKIM, header, digests, key, signature_algorithm=key.dkim_algorithm,
            canonicalize=(b"relaxed", b"simple"))
    sealed = signing.arc_seal(header, digests, rsa, "mx2.sign.test")
    assert b"i=2" in sealed[0] and b"cv=pass" in sealed[0]
    assert sealed == _unfiltered(signing._ARC, header, digests, rsa, b"mx2.sign.test")
    assert dkim.arc_verify(b"".join(sealed) + whole, dnsfunc=dnsfunc)[0] == dkim.CV_Pass
    assert b"Received" not in signing._only(header, signing._SEALED)
    for odd in (b"X-Odd : blank before the colon\r\n", b"not a field\r\n"):
        # dkimpy refuses these: it gets the whole header, and its refusal stands
        assert signing._only(odd + header, signing._SEALED) == odd + header


def test_body_hashes_cover_what_incoming_signatures_ask_for():
    header = (b"DKIM-Signature: v=1; a=rsa-sha1; c=simple/relaxed; l=10; d=x.test; s=s; h=from; "
              b"bh=" + base64.b64encode(b"x") + b"; b=abc\r\nFrom: a@x.test\r\n")
    hashes = signing.body_hashes_for(header)
    hashes.update(b"body\r\n")
    assert set(hashes.finish()) == {signing.SIGN_BODY, signing.ARC_BODY, (b"relaxed", b"sha1", 10)}


# -- what one message may cost ----------------------------------------------------

def junk_signatures(count: int, limit=lambda i: i + 1) -> bytes:
    bh = base64.b64encode(b"x" * 32)
    return b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sign.test; s=s%d; l=%d;"
                    b" h=from; bh=%s; b=AAAA\r\n" % (i, limit(i), bh) for i in range(count))


def test_only_the_first_signatures_are_hashed_and_verified():
    header = junk_signatures(600) + MESSAGE.partition(b"\r\n\r\n")[0] + b"\r\n"
    hashes = signing.body_hashes_for(header)
    assert len(hashes) == signing.MAX_DKIM_SIGNATURES + 2     # and tmail's own two
    hashes.update(b"body\r\n")
    results = signing.verify_dkim(header, hashes.finish(), txt)
    assert [r.selector for r in results[:-1]] == [f"s{i}" for i in range(signing.MAX_DKIM_SIGNATURES)]
    assert results[-1].result == "policy" and "590 more signatures not verified" in results[-1].reason


def test_an_overlong_arc_chain_fails_unverified():
    sets = b"".join(b"ARC-Seal: i=%d; a=rsa-sha256; cv=pass; d=sign.test; s=rsa; b=AAAA\r\n"
                    b"ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed; d=sign.test; s=rsa;"
                    b" l=%d; h=from; bh=AAAA; b=AAAA\r\n" % (i, i, i)
                    for i in range(signing.MAX_ARC_SETS + 1, 0, -1))
    header = sets + MESSAGE.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert len(signing.body_hashes_for(header)) == 2      # no ARC-Message-Signature hashed
    lookups = []
    assert signing.verify_arc(header, {}, lambda name: lookups.append(name) or []) == "fail"
    assert lookups == []


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_one_deadline_for_all_lookups_of_a_message():
    signed = dkim.sign(MESSAGE, b"rsa", b"sign.test", RSA, canonicalize=(b"relaxed", b"relaxed"))
    header, _, digests = split(signed * 30 + MESSAGE)
    clock = FakeClock()
    timeouts = []

    def slow_txt(name, timeout=None):     # every lookup takes 0.4 s of the budget
        timeouts.append(timeout)
        clock.now += 0.4
        return txt(name)

    budget = signing.DnsBudget(slow_txt, 1.0, clock=clock)
    results = signing.verify_dkim(header, digests, budget)
    assert budget.lookups == 3 and timeouts == pytest.approx([1.0, 0.6, 0.2])
    assert [r.result for r in results[:3]] == ["pass"] * 3
    assert all(r.result == "temperror" and r.reason == signing.DEADLINE_REASON
               and (r.domain, r.selector) == ("sign.test", "rsa") for r in results[3:10])
    assert results[10].result == "policy" and len(results) == 11
    assert budget("_dmarc.sign.test") is None and budget.lookups == 3   # DMARC too, DNS not asked


def test_a_dns_server_that_never_answers_costs_the_deadline_once():
    signed = dkim.sign(MESSAGE, b"rsa", b"sign.test", RSA, canonicalize=(b"relaxed", b"relaxed"))
    header, _, digests = split(signed * 30 + MESSAGE)
    asked = []

    def blocking_txt(name, timeout=None):     # then None: the resolver's answer to a timeout
        asked.append(timeout)
        time.sleep(min(timeout, 30))

    started = time.monotonic()
    results = signing.verify_dkim(header, digests, signing.DnsBudget(blocking_txt, 0.5))
    assert time.monotonic() - started < 10            # not 30 lookups' worth of timeouts
    assert len(asked) == 1 and asked[0] <= 0.5
    assert [r.result for r in results] == ["temperror"] * signing.MAX_DKIM_SIGNATURES + ["policy"]


def test_a_lookup_without_a_timeout_parameter_still_works():
    budget = signing.DnsBudget(txt, 5)
    assert budget("rsa._domainkey.sign.test") == [ZONE["rsa._domainkey.sign.test"]]
