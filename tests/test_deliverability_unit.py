"""The Deliverability step on its own: keys from a real key directory, DNS
from an in-memory zone (the resolver port), messages as pipe(8) hands them."""
import dkim
import pytest
from helpers import d_test_keys

from tmail.core.authresults import Spf
from tmail.keys import KeyStore
from tmail.mailpath.deliverability import SPOOL_MEMORY, Deliverability


@pytest.fixture
def signing_keys(tmp_path):
    return d_test_keys(tmp_path / "dkim")


@pytest.fixture
def keys(signing_keys):
    return signing_keys[0]


@pytest.fixture
def zone(signing_keys):
    return {"_dmarc.orig.test": [b"v=DMARC1; p=reject"], **signing_keys[1]}


def forward(deliverability, header: bytes, body: bytes, mode="when-needed", size=64 * 1024, spf=None):
    chunks = [b"\n" + body[i:i + size] if i == 0 else body[i:i + size] for i in range(0, max(len(body), 1), size)]
    prepared = deliverability.prepare_forward(header, iter(chunks), alias_address="shop@d.test",
                                              from_rewrite=mode, sign_domains=("d.test", "srs.test"), spf=spf)
    return prepared, prepared.header + b"".join(prepared.body)


def wire(message: bytes) -> bytes:
    """What the reinjection client sends: every line ends in CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_large_body_passes_through_unchanged_and_signed(keys, zone):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    body = b"".join(b"line %d with  blanks \t\n" % i for i in range(200_000))   # ~5 MB, spooled to disk
    assert len(body) > SPOOL_MEMORY
    header = b"From: alice@orig.test\nTo: shop@d.test\nSubject: big\n"
    # SPF passed on arrival for orig.test (p=reject): DMARC passes here, and
    # could not at the mailbox without the rewrite
    prepared, out = forward(deliverability, header, body, spf=Spf("pass", "alice@orig.test", "mx.orig.test"))
    assert out.endswith(b"\n\n" + body)
    dnsfunc = lambda name, timeout=5: (zone.get(name.decode().rstrip("."), [None]))[0]  # noqa: E731
    assert dkim.verify(wire(out), dnsfunc=dnsfunc)
    assert dkim.arc_verify(wire(out), dnsfunc=dnsfunc)[0] == dkim.CV_Pass
    assert prepared.rewritten   # p=reject, nothing aligned survives


def test_a_header_with_a_line_that_is_no_field_is_forwarded_unsigned(keys, zone, caplog):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = b"From: alice@lax.test\nthis line is no header field\nSubject: odd\n"
    prepared, out = forward(deliverability, header, b"body\n")
    assert out.endswith(b"this line is no header field\nSubject: odd\n\nbody\n")
    assert b"DKIM-Signature" not in out and b"Authentication-Results: mx.d.test" in out
    assert "no header field: sent unsigned" in caplog.text


def test_without_keys_the_message_goes_unsigned(tmp_path, zone):
    deliverability = Deliverability(KeyStore(str(tmp_path / "none")), lambda name: [], "mx.d.test")
    prepared, out = forward(deliverability, b"From: a@lax.test\nSubject: x\n", b"hi\n")
    assert b"DKIM-Signature" not in out and b"ARC-Seal" not in out
    assert out.endswith(b"From: a@lax.test\nSubject: x\n\nhi\n")


def test_keys_are_reread_after_rotation(keys, zone):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    assert {k.selector for k in deliverability.signing_keys("d.test")} == {"s1", "s1-ed25519"}
    keys.create("d.test", "s2", "rsa", 1024)
    keys.activate("d.test", "s2")
    assert [k.selector for k in deliverability.signing_keys("d.test")] == ["s2"]


def auth_results(out: bytes, name: bytes = b"Authentication-Results") -> list[str]:
    from tmail.core import headers as hdr
    header = out.partition(b"\n\n")[0] + b"\n"
    return [hdr.value_of(f) for f in hdr.split_fields(header) if hdr.name_of(f) == name.decode().lower()]


def test_forged_results_never_reach_the_seal(keys, zone):
    import authres
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = (b"Authentication-Results: (a(b)c) mx.d.test; dkim=pass header.d=plain.test\n"
              b'Authentication-Results: "MX.D.TEST"; dmarc=pass header.from=plain.test\n'
              b"Authentication-Results:\n (x) mx.d.test\n ; spf=pass smtp.mailfrom=a@plain.test\n"
              b"Authentication-Results: (broken mx.d.test; arc=pass\n"
              b"Authentication-Results: other.test; dkim=fail header.d=plain.test\n"
              b"From: alice@lax.test\nSubject: forged\n")
    _, out = forward(deliverability, header, b"hi\n")
    assert b"plain.test" not in b"".join(v.encode() for v in auth_results(out, b"ARC-Authentication-Results"))
    ids = [authres.AuthenticationResultsHeader.parse("Authentication-Results: " + v).authserv_id
           for v in auth_results(out)]
    assert ids == ["mx.d.test", "other.test"]


def test_the_spf_result_comes_from_the_caller(keys, zone):
    from tmail.core.authresults import Spf
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = b"From: alice@orig.test\nSubject: x\n"
    prepared = deliverability.prepare_forward(
        header, iter([b"\nhi\n"]), alias_address="shop@d.test", from_rewrite="when-needed",
        sign_domains=("d.test",), spf=Spf("pass", "bounce@orig.test", "mx.orig.test"))
    ours = auth_results(prepared.header)[0]
    assert "spf=pass smtp.mailfrom=bounce@orig.test" in ours and "dmarc=pass" in ours
    assert prepared.rewritten     # SPF passed here, but does not align after forwarding (SRS)


@pytest.mark.parametrize("from_fields,reason", [(b"", "no From field"),
                                                (b"From: a@lax.test\nFrom: b@lax.test\n", "2 From fields")])
def test_without_one_from_the_message_goes_unsigned_with_one_warning(keys, zone, caplog, from_fields, reason):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    caplog.set_level("WARNING")
    prepared, out = forward(deliverability, from_fields + b"Subject: odd\n", b"body\n", mode="when-needed")
    assert b"DKIM-Signature" not in out and b"ARC-Seal" not in out
    assert b"dmarc=permerror" in out and not prepared.rewritten
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert reason in record.getMessage() and record.exc_info is None


def test_an_unparseable_from_is_never_evaluated(keys, zone):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    prepared, out = forward(deliverability, b"From: Alice <alice@orig.test\nSubject: x\n", b"hi\n")
    ours = auth_results(out)[0]
    assert "dmarc=permerror" in ours and "header.from" not in ours
    assert not prepared.rewritten            # p=reject of orig.test does not apply to a guess
    prepared, out = forward(deliverability, b"From: Alice <alice@orig.test\nSubject: x\n", b"hi\n", mode="always")
    assert b"From: unknown sender <shop@d.test>\n" in out and b"DKIM-Signature" in out


def test_a_crafted_message_costs_ten_signatures(keys, zone, monkeypatch):
    from tmail.core import bodyhash
    made = []

    class CountingHasher(bodyhash.BodyHasher):
        def __init__(self, *args, **kw):
            made.append(args)
            super().__init__(*args, **kw)

    monkeypatch.setattr(bodyhash, "BodyHasher", CountingHasher)
    asked = []
    deliverability = Deliverability(keys, lambda name: asked.append(name) or zone.get(name, []), "mx.d.test")
    signatures = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=orig.test; s=s%d;"
                          b" l=%d; h=from; bh=AAAA; b=AAAA\n" % (i, 1000 + i) for i in range(600))
    body = (b"x" * 999 + b"\n") * 2048                       # 2 MB
    prepared, out = forward(deliverability, signatures + b"From: alice@orig.test\nSubject: x\n", body)
    assert len(made) <= 12
    assert len([name for name in asked if "._domainkey." in name]) == 10
    assert prepared.notes.startswith("dkim=" + "/".join(["permerror"] * 10 + ["policy"]) + " ")
    ours = auth_results(out)[0]
    assert ours.count("dkim=") == 11 and 'dkim=policy reason="590 more signatures not verified' in ours


def test_verification_stops_at_the_deadline(keys, zone):
    import time
    signed = dkim.sign(b"From: alice@orig.test\r\nSubject: x\r\n\r\nhi\r\n", b"s1", b"orig.test",
                       keys.read(next(k for k in keys.keys("d.test") if k.algorithm == "rsa")))
    asked = []

    def blocking(name, timeout=None):     # then None: the resolver's answer to a timeout
        asked.append(name)
        time.sleep(min(timeout, 30))

    deliverability = Deliverability(keys, blocking, "mx.d.test", verify_seconds=0.3)
    started = time.monotonic()
    header = signed.replace(b"\r\n", b"\n") * 30 + b"From: alice@orig.test\nSubject: x\n"
    prepared, _ = forward(deliverability, header, b"hi\n")
    assert time.monotonic() - started < 10 and len(asked) == 1
    assert prepared.notes.startswith("dkim=" + "/".join(["temperror"] * 10 + ["policy"]) + " dmarc=temperror")


def test_the_seal_copies_tmails_own_results_without_parsing_them_back(keys, zone, monkeypatch):
    """dkimpy's seal reads tmail's field as tmail wrote it (authres would
    drop the comment); authres still parses every other field it reads."""
    import authres
    parsed = []
    real_parse = authres.AuthenticationResultsHeader.parse
    monkeypatch.setattr(authres.AuthenticationResultsHeader, "parse",
                        staticmethod(lambda text: parsed.append(text) or real_parse(text)))
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = b"From: alice@orig.test\nTo: shop@d.test\nSubject: own results\n"
    _, out = forward(deliverability, header, b"hi\n", spf=Spf("pass", "alice@orig.test", "mx.orig.test"))
    [ours] = auth_results(out)
    [copied] = auth_results(out, b"ARC-Authentication-Results")
    assert "dmarc=pass (p=reject) header.from=orig.test" in ours
    assert " ".join(copied.split()) == "i=1; " + " ".join(ours.split())
    assert not any("mx.d.test" in text for text in parsed)
    dnsfunc = lambda name, timeout=5: (zone.get(name.decode().rstrip("."), [None]))[0]  # noqa: E731
    assert dkim.arc_verify(wire(out), dnsfunc=dnsfunc)[0] == dkim.CV_Pass


def test_a_signature_naming_a_non_ascii_domain_does_not_cost_the_seal(keys, zone):
    """authres cannot parse a U-label, and a field it cannot parse cost
    dkimpy's seal the whole field: a crafted d= sent the message unsealed."""
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = ("DKIM-Signature: v=1; a=rsa-sha256; d=bücher.test; s=s; h=from; bh=AAAA; b=BBBB\n"
              "From: alice@orig.test\nSubject: idn\n").encode()
    _, out = forward(deliverability, header, b"hi\n")
    [ours] = auth_results(out)
    assert "header.d=xn--bcher-kva.test" in ours and ours.isascii()
    assert b"ARC-Seal: i=1" in out
