"""RFC 5322 address lists and the RFC 8601 authserv-id: valid fields parse
as the RFCs define them, anything else raises HeaderSyntaxError."""
import email.utils
import re
from email.header import Header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.core.rfc5322 import (
    HeaderSyntaxError,
    Mailbox,
    authserv_id,
    format_mailbox,
    parse_address_list,
    parse_mailbox_list,
    quote,
    words,
)


@pytest.mark.parametrize("value,expected", [
    # what email.utils.getaddresses (Python 3.11) returns an empty address for
    ("Alice (comment, with comma) <a@x.test>", [Mailbox("Alice", "a", "x.test")]),
    ("a@[192.0.2.1]", [Mailbox("", "a", "[192.0.2.1]")]),
    ("a@[IPv6:2001:db8::1]", [Mailbox("", "a", "[ipv6:2001:db8::1]")]),
    # quoting, comments, folding
    ('"Doe, John" <John.Doe@Example.TEST>', [Mailbox("Doe, John", "John.Doe", "example.test")]),
    ('"john \\"jd\\" doe"@x.test', [Mailbox("", 'john "jd" doe', "x.test")]),
    ("(a (nested) comment) Bob\r\n (more) <bob@x.test> (trailing)", [Mailbox("Bob", "bob", "x.test")]),
    ("alice@x.test (Alice Example)", [Mailbox("Alice Example", "alice", "x.test")]),
    ("Bob <bob@x.test>,\n\tCarol <carol@y.test>", [Mailbox("Bob", "bob", "x.test"),
                                                   Mailbox("Carol", "carol", "y.test")]),
    # obsolete syntax real mail has (RFC 5322 s4.4)
    ("<@a.test,@b.test:x@y.test>", [Mailbox("", "x", "y.test")]),
    ("john . doe @ example . com", [Mailbox("", "john.doe", "example.com")]),
    ('"john" . doe@x.test', [Mailbox("", "john.doe", "x.test")]),
    ("John Q. Public <jqp@x.test>", [Mailbox("John Q. Public", "jqp", "x.test")]),
    ("a@x.test,, b@y.test,", [Mailbox("", "a", "x.test"), Mailbox("", "b", "y.test")]),
    # groups, flattened
    ("Team: a@x.test, B <b@y.test>;, c@z.test", [Mailbox("", "a", "x.test"), Mailbox("B", "b", "y.test"),
                                                Mailbox("", "c", "z.test")]),
    ("undisclosed-recipients:;", []),
    ("", []),
    # RFC 2047 in display names; RFC 6532 UTF-8
    ("=?utf-8?q?J=C3=BCrgen?= =?utf-8?b?IELDpGNrZXI=?= <j@x.test>", [Mailbox("Jürgen Bäcker", "j", "x.test")]),
    ('"=?utf-8?q?J=C3=BCrgen?=" <j@x.test>', [Mailbox("Jürgen", "j", "x.test")]),
    ("=?x-unknown?q?abc?= <j@x.test>", [Mailbox("=?x-unknown?q?abc?=", "j", "x.test")]),
    ("Jürgen <jürgen@bücher.test>", [Mailbox("Jürgen", "jürgen", "bücher.test")]),
    # a decoded CR LF never reaches a display name
    ("=?utf-8?q?a=0D=0ABcc=3A_x?= <a@x.test>", [Mailbox("a Bcc: x", "a", "x.test")]),
])
def test_valid_address_lists(value, expected):
    assert parse_address_list(value) == expected


@pytest.mark.parametrize("value", ["Alice (comment, with comma) <a@x.test>", "a@[192.0.2.1]"])
def test_parses_what_the_stdlib_may_lose(value):
    # Debian 12's Python 3.11 gives [('', '')] for both
    stdlib = email.utils.getaddresses([value])
    assert parse_address_list(value)[0].address in ("a@x.test", "a@[192.0.2.1]")
    assert stdlib[0][1] in ("", parse_address_list(value)[0].address)


@pytest.mark.parametrize("value", [
    "a@x.test\r\nBcc: b@y.test",       # a line break that is not folding
    "a@x.test\nBcc: b@y.test",
    "a@x.test\x00",
    'A "quoted\x07" <a@x.test>',
    "(unterminated <a@x.test>",
    '"unterminated <a@x.test>',
    "a@[1.2.3.4",
    "<a@x.test",
    "a@x.test>",
    "a b@x.test",
    "a..b@x.test",
    ".a@x.test",
    "a.@x.test",
    "a@x..test",
    "a@x.test.",
    "a@",
    "@x.test",
    "<>",
    "Alice",
    "a@x.test b@y.test",
    "a@x.test)",
    "Team: a@x.test",                  # a group not ended
])
def test_invalid_values_raise(value):
    with pytest.raises(HeaderSyntaxError):
        parse_address_list(value)


def test_a_mailbox_list_has_no_groups():
    assert parse_mailbox_list("a@x.test, b@y.test") == [Mailbox("", "a", "x.test"), Mailbox("", "b", "y.test")]
    with pytest.raises(HeaderSyntaxError):
        parse_mailbox_list("Team: a@x.test;")


def test_addresses_in_new_fields_are_quoted_as_needed():
    assert Mailbox("", "john doe", "x.test").addr_spec == '"john doe"@x.test'
    assert Mailbox("", "jürgen.b", "x.test").addr_spec == "jürgen.b@x.test"
    assert format_mailbox("Alice", "a@x.test") == "Alice <a@x.test>"
    assert format_mailbox("Doe, John", "a@x.test") == '"Doe, John" <a@x.test>'
    assert format_mailbox("", "a@x.test") == "<a@x.test>"
    assert format_mailbox("Eve\r\nBcc: x@y.test", "a@x.test") == '"Eve  Bcc: x@y.test" <a@x.test>'
    assert format_mailbox("Jürgen", "a@x.test").startswith("=?utf-8?")


@pytest.mark.parametrize("value,expected", [
    ("mx.d.test; spf=pass", "mx.d.test"),
    ("(a(b)c) mx.d.test; dkim=pass header.d=plain.test", "mx.d.test"),
    ('"mx.d.test"; dkim=pass', "mx.d.test"),
    ("MX.D.TEST 1; none", "MX.D.TEST"),
    ("mx.d.test(c\\)(d));dkim=pass", "mx.d.test"),
    ("\r\n (x)\r\n mx.d.test\r\n ; dkim=pass", "mx.d.test"),
])
def test_authserv_id(value, expected):
    assert authserv_id(value) == expected


@pytest.mark.parametrize("value", ["", "mx.d.test", "(a(b) mx.d.test; x", "mx.d.test x; y", "x@y; a",
                                   '"mx.d.test; a', "mx.d.test\r\nX: y; a"])
def test_authserv_id_refuses(value):
    with pytest.raises(HeaderSyntaxError):
        authserv_id(value)


def test_words_drop_comments():
    assert words("5.1.1 (no such (really) user)") == ["5.1.1"]
    assert words(' failed "x y"z ') == ["failed", "x yz"]


# -- properties -------------------------------------------------------------------

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-é"
atoms = st.text(ATEXT, min_size=1, max_size=6)
dot_atoms = st.lists(atoms, min_size=1, max_size=3).map(".".join)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e) | st.sampled_from("äß中"),
                    max_size=12)
labels = st.text("abcdefxyz0123456789-", min_size=1, max_size=8)
domains = st.lists(labels, min_size=1, max_size=3).map(".".join)
ctext = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e).filter(lambda c: c not in "()\\"),
                max_size=6)
comments = st.recursive(ctext.map(lambda t: f"({t})"),
                        lambda inner: st.tuples(ctext, inner, ctext).map(lambda p: f"({p[0]}{p[1]}\\){p[2]})"),
                        max_leaves=3)
cfws = st.lists(st.sampled_from([" ", "\t", "\r\n ", "\n\t"]) | comments, max_size=3).map(
    lambda parts: " ".join(parts) if parts else "")


@settings(max_examples=300, deadline=None)
@given(name=printable, local=dot_atoms | printable.map(quote), domain=domains,
       c=st.lists(cfws, min_size=6, max_size=6))
def test_generated_mailboxes_round_trip(name, local, domain, c):
    display = quote(name) if name.strip() else ""
    value = f"{c[0]}{display}{c[1]}<{c[2]}{local}{c[3]}@{c[4]}{domain}{c[5]}>"
    [mailbox] = parse_mailbox_list(value)
    assert mailbox.display_name == " ".join(name.split())
    assert mailbox.local == (re.sub(r"\\(.)", r"\1", local[1:-1]) if local.startswith('"') else local)
    assert mailbox.domain == domain.lower()
    assert parse_mailbox_list(format_mailbox(mailbox.display_name, mailbox.addr_spec)) == [mailbox]


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2fff,
                             exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40))
def test_encoded_display_names_decode(name):
    encoded = Header(name, "utf-8").encode()
    [mailbox] = parse_mailbox_list(f"{encoded} <a@x.test>")
    assert mailbox.display_name == " ".join(name.split())


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_any_text_parses_or_raises_header_syntax_error(value):
    for parse in (parse_address_list, parse_mailbox_list, authserv_id, words):
        try:
            result = parse(value)
        except HeaderSyntaxError:
            continue
        if isinstance(result, list) and result and isinstance(result[0], Mailbox):
            for mailbox in result:
                assert not any(ch in mailbox.address + mailbox.display_name for ch in "\r\n\x00")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('a@.<>()[]":;,\\ \t\r\n=?q'), max_size=40))
def test_special_heavy_text_parses_or_raises_header_syntax_error(value):
    try:
        parse_address_list(value)
    except HeaderSyntaxError:
        pass
