"""DMARC evaluation, From rewriting and Authentication-Results: the pure core."""
import email.utils

import pytest

from tmail.core import authresults, dmarc, fromrewrite
from tmail.core import headers as hdr
from tmail.core.signing import DkimResult


def zone(records):
    return lambda name: [r.encode() for r in records.get(name, [])]


@pytest.mark.parametrize("text,expected", [
    ("v=DMARC1; p=reject", dmarc.Record("reject", None)),
    ("v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=50", dmarc.Record("quarantine", "none", "s", "s", 50)),
    ("v=DMARC1; p=bogus; rua=mailto:x@y.test", dmarc.Record("none", None)),
    ("v=DMARC1; p=bogus", None),
    ("v=spf1 -all", None),
    ("v=DMARC1", None),
])
def test_parse_record(text, expected):
    assert dmarc.parse_record(text) == expected


def test_policy_of_a_subdomain_comes_from_the_organizational_domain():
    txt = zone({"_dmarc.example.co.uk": ["v=DMARC1; p=reject; sp=quarantine"]})
    assert dmarc.organizational_domain("mail.news.example.co.uk") == "example.co.uk"
    result = dmarc.evaluate("news.example.co.uk", [], "none", "", txt)
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert dmarc.evaluate("example.co.uk", [], "none", "", txt).policy == "reject"


def test_aligned_dkim_or_spf_passes_strict_mode_wants_exact_domains():
    txt = zone({"_dmarc.orig.test": ["v=DMARC1; p=reject; adkim=s"]})
    sub = [DkimResult("pass", "mail.orig.test", "s")]
    assert dmarc.evaluate("orig.test", sub, "none", "", txt).result == "fail"           # strict DKIM
    assert dmarc.evaluate("orig.test", sub, "pass", "bounce.orig.test", txt).result == "pass"  # relaxed SPF
    assert dmarc.evaluate("orig.test", [DkimResult("pass", "orig.test", "s")], "fail", "", txt).result == "pass"
    assert dmarc.evaluate("orig.test", [DkimResult("fail", "orig.test", "s")], "pass", "other.test",
                          txt).result == "fail"


def test_dns_failure_and_missing_records():
    assert dmarc.evaluate("orig.test", [], "pass", "orig.test", lambda n: None).result == "temperror"
    assert dmarc.evaluate("orig.test", [], "pass", "orig.test", zone({})).result == "none"
    two = zone({"_dmarc.orig.test": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    assert dmarc.evaluate("orig.test", [], "none", "", two).result == "none"


def test_oversigned_fields_added_on_the_way_break_a_signature():
    counts = {"from": 1, "subject": 1, "received": 2}
    plain = DkimResult("pass", "orig.test", "s", ("from", "subject", "received"))
    locked = DkimResult("pass", "orig.test", "s", ("from", "subject", "received", "received", "received"))
    locked_subject = DkimResult("pass", "orig.test", "s", ("from", "subject", "subject"))
    assert dmarc.survives(plain, counts)
    assert not dmarc.survives(locked, counts)        # a new Received breaks it
    assert dmarc.survives(locked_subject, counts)    # nobody adds a Subject
    assert not dmarc.survives(DkimResult("fail", "orig.test", "s", ("from",)), counts)


@pytest.mark.parametrize("mode,policy,survivor,expected", [
    ("never", "reject", False, False),
    ("always", "none", True, True),
    ("when-needed", "reject", False, True),
    ("when-needed", "quarantine", False, True),
    ("when-needed", "reject", True, False),
    ("when-needed", "none", False, False),
])
def test_rewrite_modes(mode, policy, survivor, expected):
    result = dmarc.Result("fail", "orig.test", policy)
    assert fromrewrite.needed(mode, result, survivor) is expected


def test_unknown_policy_after_dns_failure_is_not_rewritten():
    assert not fromrewrite.needed("when-needed", dmarc.Result("temperror", "orig.test", "none"), False)


def test_rewritten_from_keeps_the_sender_visible_and_replyable():
    fields = hdr.split_fields(b"From: =?utf-8?q?J=C3=BCrgen?= <j@orig.test>\nTo: a@d.test\n"
                              b"Subject: x\n")
    out = b"".join(fromrewrite.rewrite(fields, "shop@d.test")).decode()
    name, address = email.utils.parseaddr(hdr.value_of(hdr.first(hdr.split_fields(out.encode()), "from")))
    assert address == "shop@d.test"
    assert "=?utf-8?" in out            # the non-ASCII name is RFC 2047 encoded
    assert "Reply-To: =?utf-8?" in out and "<j@orig.test>" in out
    assert "X-Original-From: =?utf-8?q?J=C3=BCrgen?= <j@orig.test>" in out


def test_rewrite_keeps_an_existing_reply_to_and_refuses_injected_lines():
    fields = hdr.split_fields(b'From: "Eve\\r\\nBcc: x@y.test" <eve@orig.test>\nReply-To: list@orig.test\n')
    out = b"".join(fromrewrite.rewrite(fields, "shop@d.test"))
    assert out.count(b"Reply-To:") == 1 and b"list@orig.test" in out
    assert b"\nBcc:" not in out
    with pytest.raises(ValueError):
        hdr.make_field("Reply-To", "a@b.test\nBcc: victim@x.test")


def test_authentication_results_round_trip_and_quoting():
    spf = authresults.Spf("pass", 'we"ird;local@orig.test', "mx.orig.test")
    value = authresults.field_value("mx.d.test", spf, [DkimResult("pass", "orig.test", "s1")],
                                    dmarc.Result("pass", "orig.test", "reject"), "none")
    field = hdr.make_field("Authentication-Results", value)
    assert b'smtp.mailfrom="we\\"ird;local@orig.test"' in field
    kept, parsed = authresults.take_own([field, b"Authentication-Results: other.test; spf=fail\n",
                                         b"Subject: x\n"], "mx.d.test")
    assert parsed == spf
    assert kept == [b"Authentication-Results: other.test; spf=fail\n", b"Subject: x\n"]
    import authres
    parsed_by_authres = authres.AuthenticationResultsHeader.parse(field.decode().replace("\n\t", " ").strip())
    assert [r.method for r in parsed_by_authres.results] == ["spf", "dkim", "dmarc", "arc"]


def test_null_sender_spf_is_the_helo_identity():
    spf = authresults.Spf("pass", "", "mx.orig.test")
    assert spf.domain == "mx.orig.test" and spf.clause() == "spf=pass smtp.helo=mx.orig.test"
