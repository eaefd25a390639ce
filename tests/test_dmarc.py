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
    # passed on arrival (SPF aligned, say), and would not at the mailbox
    result = dmarc.Result("pass", "orig.test", policy)
    assert fromrewrite.needed(mode, result, survivor) is expected


@pytest.mark.parametrize("mode", fromrewrite.MODES)
@pytest.mark.parametrize("outcome", ["fail", "temperror"])
def test_mail_that_failed_dmarc_on_arrival_is_never_rewritten(mode, outcome):
    """Rewriting would sign a forged From as the alias's: laundered into a pass."""
    assert not fromrewrite.needed(mode, dmarc.Result(outcome, "bank.test", "reject"), False)


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
    kept = authresults.strip_own([field, b"Authentication-Results: other.test; spf=fail\n",
                                  b"Subject: x\n"], "mx.d.test")
    assert kept == [b"Authentication-Results: other.test; spf=fail\n", b"Subject: x\n"]
    import authres
    parsed_by_authres = authres.AuthenticationResultsHeader.parse(field.decode().replace("\n\t", " ").strip())
    assert [r.method for r in parsed_by_authres.results] == ["spf", "dkim", "dmarc", "arc"]


OTHERS = [b"Authentication-Results: other.test; dkim=pass header.d=mx.d.test\n",   # names it, not its id
          b"Authentication-Results: mx.d.test.other; spf=pass\n",
          b"Subject: mx.d.test\n"]


@pytest.mark.parametrize("forged", [
    b"Authentication-Results: mx.d.test; spf=pass smtp.mailfrom=a@plain.test\n",
    b"Authentication-Results: (a(b)c) mx.d.test; dkim=pass header.d=plain.test\n",   # nested comment
    b'Authentication-Results: "mx.d.test"; dkim=pass header.d=plain.test\n',          # quoted
    b"Authentication-Results: MX.D.Test 1; dkim=pass header.d=plain.test\n",         # case, version
    b"Authentication-Results:\n (x)\n mx.d.test;\n dkim=pass header.d=plain.test\n",  # folded
    b"authentication-results  : mx.d.test(c\\)); dmarc=pass\n",
    b"Authentication-Results: (unterminated mx.d.test; dkim=pass\n",                # unparseable
    b"Authentication-Results: mx.d.test\n",                                        # no ';'
])
def test_every_field_claiming_the_authserv_id_is_removed(forged):
    assert authresults.strip_own([forged] + OTHERS + [forged], "mx.d.test") == OTHERS


def test_dkim_reasons_are_plain_quoted_strings():
    value = authresults.field_value("mx.d.test", None, [
        DkimResult("fail", "orig.test", "s1", reason='body "hash"\r\n\\mismatch'),
        DkimResult("pass", "orig.test", "s2", reason="ignored")], dmarc.Result("none", "orig.test"), "none")
    assert 'dkim=fail reason="body hash mismatch" header.d=orig.test' in value
    assert "dkim=pass header.d=orig.test header.s=s2" in value
    import authres
    parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value.replace("\n\t", " "))
    assert parsed.results[1].reason == "body hash mismatch"


def fields(text: bytes):
    return hdr.split_fields(text + b"To: shop@d.test\nSubject: x\n")


@pytest.mark.parametrize("header,domain", [
    (b"From: Alice (comment, with comma) <a@x.test>\n", "x.test"),
    (b"From: =?utf-8?q?J=C3=BCrgen?= <j@B\xc3\xbccher.test>\n", "xn--bcher-kva.test"),
    (b"From: alice@orig.test (Alice)\n", "orig.test"),
    (b"", ""),                                                             # no From
    (b"From: a@x.test\nFrom: b@y.test\n", ""),                             # several From fields
    (b"From: a@x.test, b@y.test\n", ""),                                   # several mailboxes
    (b"From: Team: a@x.test;\n", ""),                                      # a group
    (b"From: a@[192.0.2.1]\n", ""),                                        # a domain literal
    (b"From: <a@x.test\n", ""),                                            # does not parse
    (b"From: a@x_y.test\n", ""),                                           # not a DNS name
])
def test_from_domain_only_of_a_single_parseable_author(header, domain):
    assert fromrewrite.from_domain(fields(header)) == domain


def test_no_single_author_is_permerror_never_pass():
    txt = zone({"_dmarc.x.test": ["v=DMARC1; p=reject"]})
    for header in (b"", b"From: a@x.test, b@x.test\n", b"From: <a@x.test\n", b"From: a@x.test\nFrom: a@x.test\n"):
        result = dmarc.evaluate(fromrewrite.from_domain(fields(header)), [DkimResult("pass", "x.test", "s")],
                                "pass", "x.test", txt)
        assert (result.result, result.from_domain) == ("permerror", "")
        assert not fromrewrite.needed("when-needed", result, False)
        value = authresults.field_value("mx.d.test", None, [], result, "none")
        assert "dmarc=permerror;" in value and "header.from" not in value


ENCODED_CRLF = b"=?utf-8?q?Eve=0D=0ABcc=3A_x=40evil=2Etest?= <eve@orig.test"


def test_always_rewrites_an_unknown_author_without_copying_it():
    for header in (b"", b"From: " + ENCODED_CRLF + b"\n"):
        out = b"".join(fromrewrite.rewrite(fields(header), "shop@d.test"))
        assert b"From: unknown sender <shop@d.test>\n" in out
        assert b"Reply-To" not in out and b"\nBcc:" not in out and b"\r" not in out
    out = b"".join(fromrewrite.rewrite(fields(b"From: a@x.test\nFrom: b@y.test\n"), "shop@d.test"))
    assert out.count(b"From: ") == 1 + 2 and out.count(b"X-Original-From: ") == 2
    assert b"From: unknown sender <shop@d.test>\n" in out


def test_a_decoded_line_break_never_reaches_a_new_field():
    out = b"".join(fromrewrite.rewrite(fields(b"From: " + ENCODED_CRLF + b">\n"), "shop@d.test"))
    assert b'From: "Eve Bcc: x@evil.test (eve@orig.test)" <shop@d.test>\n' in out
    assert b'Reply-To: "Eve Bcc: x@evil.test" <eve@orig.test>\n' in out
    assert b"\nBcc:" not in out and b"\r" not in out


def test_an_internationalised_author_is_rewritten():
    out = b"".join(fromrewrite.rewrite(fields("From: Jürgen <jürgen@bücher.test>\n".encode()), "shop@d.test"))
    assert b"Reply-To: =?utf-8?" in out and "<jürgen@bücher.test>".encode() in out


def test_null_sender_spf_is_the_helo_identity():
    spf = authresults.Spf("pass", "", "mx.orig.test")
    assert spf.domain == "mx.orig.test" and spf.clause() == "spf=pass smtp.helo=mx.orig.test"


def test_the_spf_clause_holds_only_ascii():
    """A non-ASCII HELO in tmail's field made the ARC seal fail silently."""
    assert authresults.Spf("pass", "a@b.test", "évil.test").clause() == "spf=pass smtp.mailfrom=a@b.test"
    assert authresults.Spf("pass", "jörg@b.test", "mx.b.test").clause() == \
        "spf=pass smtp.mailfrom=b.test smtp.helo=mx.b.test"
    assert authresults.Spf("none", "", "évil.test").clause() == "spf=none"
