import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmail.core.address import (
    AddressError,
    normalise_domain,
    parse_address,
    parse_block_pattern,
    parse_envelope,
    parse_sender,
)


@pytest.mark.parametrize("text,expected", [
    ("Alice@Example.TEST", ("Alice", "example.test")),
    ("<bob@d.test>", ("bob", "d.test")),
    ("a.b-c+tag@d.test.", ("a.b-c+tag", "d.test")),
    ("jürgen@bücher.test", ("jürgen", "xn--bcher-kva.test")),
    ('"odd local"@d.test', ('"odd local"', "d.test")),
])
def test_parse_valid(text, expected):
    address = parse_address(text)
    assert (address.local, address.domain) == expected


@pytest.mark.parametrize("text,fragment", [
    ("no-at-sign", "no '@'"),
    ("a\r\nRCPT TO:<x@y.test>@d.test", "control character"),
    ("a\x00@d.test", "control character"),
    ("a@d.test\n", "control character"),
    ("@d.test", "local part is empty"),
    ("a..b@d.test", "not a valid RFC 5321 local part"),
    ("a b@d.test", "not a valid RFC 5321 local part"),
    ("x" * 65 + "@d.test", "at most 64"),
    ("a@" + "a" * 300, "at most 255"),
    ("a" * 10 + "@" + ("a" * 60 + ".") * 4 + "test", "at most 256"),
    ("a@-bad.test", "letters, digits"),
    ("a@d..test", "empty label"),
    ("a@under_score.test", "letters, digits"),
])
def test_parse_invalid(text, fragment):
    with pytest.raises(AddressError, match=fragment):
        parse_address(text)


def test_local_part_limit_counts_octets_not_characters():
    parse_address("é" * 32 + "@d.test")
    with pytest.raises(AddressError, match="at most 64"):
        parse_address("é" * 33 + "@d.test")


def test_tags_resolve_to_the_base_alias_and_keep_case():
    address = parse_address("Shop+News@d.test")
    assert str(address.base("+")) == "Shop@d.test"
    assert address.base("+").key == "shop"
    assert address.base("") == address
    assert str(parse_address("+only@d.test").base("+")) == "+only@d.test"


def test_null_sender():
    assert parse_sender("") is None
    assert parse_sender("<>") is None
    assert parse_sender("MAILER-DAEMON") is None
    assert str(parse_sender("a@b.test")) == "a@b.test"


def test_block_patterns():
    assert parse_block_pattern("@Spam.TEST") == "@spam.test"
    assert parse_block_pattern("Bad@Spam.test") == "bad@spam.test"
    with pytest.raises(AddressError):
        parse_block_pattern("@")


@given(st.text(min_size=1, max_size=80))
def test_parser_never_lets_control_characters_through(text):
    try:
        address = parse_address(text + "@d.test")
    except AddressError:
        return
    assert not any(ord(c) < 32 or ord(c) == 127 for c in str(address))
    assert len(address.local.encode()) <= 64


@given(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True))
def test_domain_normalisation_is_idempotent(name):
    once = normalise_domain(name.upper())
    assert normalise_domain(once) == once == name


@pytest.mark.parametrize("value", [b"a@d.test", ["a@d.test"], None])
def test_an_envelope_address_that_is_not_text_is_an_address_error(value):
    # (not a TypeError from the parse cache, which keys on the text)
    with pytest.raises(AddressError, match="must be text"):
        parse_envelope(value)
