"""The Deliverability step on its own: keys from a real key directory, DNS
from an in-memory zone (the resolver port), messages as pipe(8) hands them."""
import dkim
import pytest

from tmail.keys import KeyStore, public_record
from tmail.mailpath.deliverability import SPOOL_MEMORY, Deliverability


@pytest.fixture
def keys(tmp_path):
    store = KeyStore(str(tmp_path / "dkim"))
    for algorithm in ("rsa", "ed25519"):
        store.create("d.test", "s1", algorithm, 1024)
    store.activate("d.test", "s1")
    return store


@pytest.fixture
def zone(keys):
    records = {"_dmarc.orig.test": [b"v=DMARC1; p=reject"]}
    for key in keys.keys("d.test"):
        records[f"{key.dns_selector}._domainkey.d.test"] = [public_record(key.algorithm, keys.read(key)).encode()]
    return records


def forward(deliverability, header: bytes, body: bytes, mode="when-needed", size=64 * 1024):
    chunks = [b"\n" + body[i:i + size] if i == 0 else body[i:i + size] for i in range(0, max(len(body), 1), size)]
    prepared = deliverability.prepare_forward(header, iter(chunks), alias_address="shop@d.test",
                                              from_rewrite=mode, sign_domains=("d.test", "srs.test"))
    return prepared, prepared.header + b"".join(prepared.body)


def wire(message: bytes) -> bytes:
    """What the reinjection client sends: every line ends in CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_large_body_passes_through_unchanged_and_signed(keys, zone):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    body = b"".join(b"line %d with  blanks \t\n" % i for i in range(200_000))   # ~5 MB, spooled to disk
    assert len(body) > SPOOL_MEMORY
    header = b"From: alice@orig.test\nTo: shop@d.test\nSubject: big\n"
    prepared, out = forward(deliverability, header, body)
    assert out.endswith(b"\n\n" + body)
    dnsfunc = lambda name, timeout=5: (zone.get(name.decode().rstrip("."), [None]))[0]  # noqa: E731
    assert dkim.verify(wire(out), dnsfunc=dnsfunc)
    assert dkim.arc_verify(wire(out), dnsfunc=dnsfunc)[0] == dkim.CV_Pass
    assert prepared.rewritten   # p=reject, nothing aligned survives


def test_a_header_dkimpy_cannot_parse_is_forwarded_unsigned(keys, zone, caplog):
    deliverability = Deliverability(keys, lambda name: zone.get(name, []), "mx.d.test")
    header = b"From: alice@lax.test\nthis line is no header field\nSubject: odd\n"
    prepared, out = forward(deliverability, header, b"body\n")
    assert out.endswith(b"this line is no header field\nSubject: odd\n\nbody\n")
    assert b"DKIM-Signature" not in out and b"Authentication-Results: mx.d.test" in out
    assert "signing failed" in caplog.text


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
