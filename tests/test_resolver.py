"""The resolver port: a lookup may be given less time than the configured
timeout; answers are cached for their TTL, failures never."""
import socket
import time

import pytest
from dnsserver import DnsServer, Zone

from tmail import resolver as resolver_module
from tmail.resolver import Resolver


def test_a_txt_lookup_honours_a_shorter_timeout():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a DNS server that never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = Resolver([("127.0.0.1", silent.getsockname()[1])], timeout=30)
        started = time.monotonic()
        assert resolver.txt("_dmarc.example.test", timeout=0.3) is None    # a temporary failure
        assert time.monotonic() - started < 10
    finally:
        silent.close()


# -- the cache ----------------------------------------------------------------
@pytest.fixture
def served():
    zone = Zone(ttl=300)
    server = DnsServer(zone)
    yield zone, [("127.0.0.1", server.port)]
    server.close()


def asked(zone, name):
    return sum(1 for queried, _ in zone.queries if queried == name)


def test_an_answer_is_kept_for_its_ttl(served):
    zone, servers = served
    zone.txt("_dmarc.orig.test", "v=DMARC1; p=none")
    resolver = Resolver(servers)
    assert resolver.txt("_dmarc.orig.test") == [b"v=DMARC1; p=none"]
    zone.remove("_dmarc.orig.test")
    zone.txt("_dmarc.orig.test", "v=DMARC1; p=reject")
    assert resolver.txt("_DMARC.orig.test") == [b"v=DMARC1; p=none"]    # names compare without case
    assert asked(zone, "_dmarc.orig.test") == 1


def test_a_negative_answer_is_kept_for_its_soa_minimum(served):
    zone, servers = served
    resolver = Resolver(servers)
    assert resolver.txt("_dmarc.nowhere.test") == []          # NXDOMAIN
    zone.add("orig.test", "A", "192.0.2.1")
    assert resolver.txt("orig.test") == []                    # the name exists, no TXT
    zone.txt("_dmarc.nowhere.test", "v=DMARC1; p=reject")
    zone.txt("orig.test", "v=spf1 -all")
    assert resolver.txt("_dmarc.nowhere.test") == [] and resolver.txt("orig.test") == []
    assert asked(zone, "_dmarc.nowhere.test") == 1 and asked(zone, "orig.test") == 1


def test_a_zero_ttl_is_asked_every_time():
    zone = Zone()                     # ttl 0, the tests' default
    server = DnsServer(zone)
    try:
        resolver = Resolver([("127.0.0.1", server.port)])
        assert resolver.txt("_dmarc.orig.test") == []
        zone.txt("_dmarc.orig.test", "v=DMARC1; p=reject")
        assert resolver.txt("_dmarc.orig.test") == [b"v=DMARC1; p=reject"]
        assert asked(zone, "_dmarc.orig.test") == 2
    finally:
        server.close()


def test_a_failure_is_not_kept(served):
    zone, servers = served
    zone.fail.add("_dmarc.orig.test")
    resolver = Resolver(servers, timeout=1)
    assert resolver.txt("_dmarc.orig.test") is None            # SERVFAIL: temporary
    zone.fail.clear()
    zone.txt("_dmarc.orig.test", "v=DMARC1; p=none")
    assert resolver.txt("_dmarc.orig.test") == [b"v=DMARC1; p=none"]


def test_no_answer_is_kept_longer_than_max_ttl(served, monkeypatch):
    zone, servers = served
    zone.ttl = 10 * resolver_module.MAX_TTL
    zone.txt("sel._domainkey.orig.test", "v=DKIM1; p=old")
    resolver = Resolver(servers)
    assert resolver.txt("sel._domainkey.orig.test") == [b"v=DKIM1; p=old"]
    zone.remove("sel._domainkey.orig.test")
    zone.txt("sel._domainkey.orig.test", "v=DKIM1; p=new")
    later = time.time() + resolver_module.MAX_TTL + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert resolver.txt("sel._domainkey.orig.test") == [b"v=DKIM1; p=new"]


def test_the_cache_keeps_at_most_cache_entries_answers(served):
    zone, servers = served
    resolver = Resolver(servers, cache_entries=2)
    for name in ("a.test", "b.test", "c.test", "a.test"):     # a.test was the least recently used
        resolver.txt(name)
    assert asked(zone, "a.test") == 2 and asked(zone, "c.test") == 1


def test_no_cache_when_it_is_turned_off(served):
    zone, servers = served
    resolver = Resolver(servers, cache_entries=0)
    for _ in range(2):
        assert resolver.txt("_dmarc.orig.test") == []
    assert asked(zone, "_dmarc.orig.test") == 2


def test_pyspf_goes_through_the_installed_resolver_and_its_cache(served):
    import dns.resolver
    import spf
    zone, servers = served
    zone.txt("orig.test", "v=spf1 ip4:192.0.2.1 -all")
    saved = dns.resolver.default_resolver
    try:
        Resolver(servers).install()
        for _ in range(2):
            assert spf.check2(i="192.0.2.1", s="a@orig.test", h="client.test")[0] == "pass"
    finally:
        dns.resolver.default_resolver = saved
    assert asked(zone, "orig.test") == 1
