"""Streamed body hashes, DKIM signing/verification and ARC sealing, checked
against dkimpy working on the whole message (the reference)."""
import base64
import hashlib
import re
import time
import unittest.mock

import dkim
import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.core import headers as hdr
from tmail.core import signing
from tmail.core.bodyhash import BodyHasher
from tmail.core.signer import Key, Signer, relaxed
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
    field = sign(header, digests, Key("sign.test", selector, algorithm, private))
    assert b"c=relaxed/simple" in field and b"d=sign.test" in field
    assert dkim.verify(field + MESSAGE, dnsfunc=dnsfunc)
    assert not dkim.verify(field + MESSAGE.replace(b"bye", b"BYE"), dnsfunc=dnsfunc)


def sign(header, digests, key, now=None):
    return Signer(hdr.split_fields(header)).dkim(key, digests, now or int(time.time()))


def seal(header, digests, authserv_id, results, key=None, now=None):
    key = key or Key("sign.test", "rsa", "rsa", RSA)
    return b"".join(Signer(hdr.split_fields(header)).arc_set(key, digests, authserv_id, results,
                                                             now or int(time.time())))


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
    ar = b"Authentication-Results: mx.sign.test; dkim=none; arc=none\r\n"
    header, body, digests = split(ar + MESSAGE)
    first = seal(header, digests, "mx.sign.test", ["dkim=none", "arc=none"])
    assert b"i=1" in first and b"cv=none" in first
    once = first + ar + MESSAGE
    assert dkim.arc_verify(once, dnsfunc=dnsfunc)[0] == dkim.CV_Pass

    header2, _, digests2 = split(once)
    assert signing.verify_arc(header2, digests2, txt) == "pass"
    ar2 = b"Authentication-Results: mx2.sign.test; arc=pass\r\n"
    second = seal(ar2 + header2, digests2, "mx2.sign.test", ["arc=pass"])
    assert b"i=2" in second and b"cv=pass" in second
    assert dkim.arc_verify(second + ar2 + once, dnsfunc=dnsfunc)[0] == dkim.CV_Pass

    _, _, changed = split(once.replace(b"bye", b"ciao"))
    assert signing.verify_arc(header2, changed, txt) == "fail"


def _b(field: bytes) -> bytes:
    return re.sub(rb"\s+", b"", field.split(b" b=")[-1])


NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version",
         "Content-Type", "List-Id", "Received", "X-Mailer", "Delivered-To", "subject", "FROM"]
values = st.lists(st.text(alphabet="ab@.<> \t\u00e9", min_size=1, max_size=12), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), values, st.sampled_from([" ", "", "\t", "  "])),
                max_size=12))
def test_any_header_is_signed_and_sealed_as_dkimpy_verifies_it(fields):
    """Field names in any case and order, repeated; values folded anywhere,
    with runs of blanks and blanks at the ends: every signature verifies in
    dkimpy, and DKIM's and the ARC-Message-Signature's b= are the very
    signatures dkimpy makes (RSA and ed25519 sign deterministically)."""
    header = b"From: a@sign.test\r\n" + b"".join(
        name.encode() + b":" + lead.encode() + "\r\n ".join(parts).encode() + b"\r\n"
        for name, parts, lead in fields if not (name.lower() == "from"))
    message = header + b"\r\nbody  \r\n"
    _, _, digests = split(message)
    now = int(time.time())
    with unittest.mock.patch.object(time, "time", lambda: now):
        for key in (Key("sign.test", "rsa", "rsa", RSA), Key("sign.test", "ed", "ed25519", ED)):
            ours = sign(header, digests, key, now)
            assert dkim.verify(ours + message, dnsfunc=dnsfunc)
            theirs = dkim.DKIM(message).sign(key.selector.encode(), b"sign.test", key.private,
                                             signature_algorithm=key.dkim_algorithm,
                                             canonicalize=(b"relaxed", b"simple"))
            assert _b(ours) == _b(theirs)
        ar = b"Authentication-Results: mx.sign.test; arc=none\r\n"
        sealed = seal(ar + header, digests, "mx.sign.test", ["arc=none"], now=now)
        assert dkim.arc_verify(sealed + ar + message, dnsfunc=dnsfunc)[0] == dkim.CV_Pass
        theirs = dkim.ARC(ar + message).sign(b"rsa", b"sign.test", RSA, b"mx.sign.test")
        assert _b(hdr.split_fields(sealed)[1]) == _b(theirs[1])    # the ARC-Message-Signature


def test_fields_dkimpy_cannot_read_are_still_canonicalised_as_rfc_6376_says():
    # blanks before the colon are deleted, the name lowered, the value unfolded
    assert relaxed(b"X-Odd \t: a \r\n\t b  \r\n") == b"x-odd:a b"
    assert relaxed(b"Subject:\r\n hello\r\n") == b"subject:hello"
    odd = b"Subject : hi\r\nnot a field\r\n" + MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n"
    field = sign(odd, split(MESSAGE)[2], Key("sign.test", "rsa", "rsa", RSA))
    assert b"h=subject : from : to : subject" in b" ".join(field.split())


def test_a_failed_chain_gets_a_set_that_seals_only_itself():
    crafted = (b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; t=1; b=AAAA\r\n"
               b"ARC-Message-Signature: a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=s; h=from; "
               b"bh=AAAA; b=AAAA; i=1\r\n")     # no ARC-Authentication-Results: not a set
    ar = b"Authentication-Results: mx.sign.test; arc=fail\r\n"
    message = ar + crafted + MESSAGE
    header, _, digests = split(message)
    sealed = seal(header, digests, "mx.sign.test", ["arc=fail"])
    assert b"i=2" in sealed and b"cv=fail" in sealed
    verdict, sets, _ = dkim.arc_verify(sealed + message, dnsfunc=dnsfunc)
    assert verdict == dkim.CV_Fail and sets[0]["ams-valid"] and sets[0]["cv"] == b"fail"
    # a chain that arrived intact but ended, or at RFC 8617's limit, gets no set
    assert seal(header, digests, "mx.sign.test", ["arc=none"]) == b""
    at_limit = crafted.replace(b"i=1", b"i=50")
    assert seal(ar + at_limit + MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n", digests,
                "mx.sign.test", ["arc=fail"]) == b""


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
