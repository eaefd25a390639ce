"""tmail's one DNS resolver (dnspython).

Every lookup tmail makes (DKIM keys, DMARC and SPF records, `tmail doctor`)
goes through one Resolver; `[dns] servers` points it elsewhere than the
system's resolv.conf, which is how the tests put it on a DNS server they run
on loopback. install() makes it dnspython's default too, for pyspf, which
has no resolver parameter of its own.

Answers are cached in the process (`[dns] cache_entries`, 0 for none), for
as long as their TTL says (a negative answer: its SOA's minimum), and at
most MAX_TTL: a message's SPF check at RCPT and its DMARC check at delivery
ask the same questions, and the next message from the same sender asks them
again. A query to a caching resolver on loopback still costs the daemon a
packet built, sent, received and parsed in Python, far more than a lookup in
a dictionary. Failures (SERVFAIL, timeouts) are never cached.
"""
from __future__ import annotations

import ipaddress
import logging
import time

import dns.exception
import dns.name
import dns.resolver

log = logging.getLogger("tmail.dns")

MAX_TTL = 3600   # seconds: a record changed (a DKIM key revoked) is seen within an hour


def parse_servers(text: str) -> list[tuple[str, int]]:
    """'127.0.0.1:5353, ::1' -> [('127.0.0.1', 5353), ('::1', 53)]; ValueError if bad."""
    servers = []
    for item in text.replace(",", " ").split():
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = int(port_text)
        ipaddress.ip_address(host)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range in {item!r}")
        servers.append((host, port))
    return servers


class _Cache(dns.resolver.LRUCache):
    """dnspython's bounded, thread-safe LRU cache, which honours TTLs, with
    every answer's lifetime cut to MAX_TTL."""

    def put(self, key, value) -> None:
        value.expiration = min(value.expiration, time.time() + MAX_TTL)
        super().put(key, value)


class Resolver:
    def __init__(self, servers: list[tuple[str, int]] | None = None, timeout: float = 5.0,
                 cache_entries: int = 5_000):
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host for host, _ in servers]
            resolver.nameserver_ports = {host: port for host, port in servers}
            resolver.port = servers[0][1]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = ["127.0.0.1"]
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        resolver.cache = _Cache(cache_entries) if cache_entries > 0 else None
        self._resolver = resolver

    def install(self) -> None:
        dns.resolver.default_resolver = self._resolver

    def _answer(self, name: str, rdtype: str, timeout: float | None = None):
        """The answer's records; [] when the name or the type does not exist;
        None when DNS failed (the caller treats that as temporary). timeout
        shortens the configured one (a message's verification has one
        deadline for all its lookups)."""
        lifetime = self._resolver.lifetime if timeout is None else min(timeout, self._resolver.lifetime)
        try:
            return list(self._resolver.resolve(name, rdtype, search=False, lifetime=lifetime))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.LifetimeTimeout, OSError) as exc:
            log.warning("DNS %s %s failed: %s", name, rdtype, exc)
            return None
        except dns.exception.DNSException as exc:   # a malformed name
            log.info("DNS %s %s: %s", name, rdtype, exc)
            return []

    def txt(self, name: str, timeout: float | None = None) -> list[bytes] | None:
        answer = self._answer(name, "TXT", timeout)
        return None if answer is None else [b"".join(r.strings) for r in answer]

    def mx(self, name: str) -> list[tuple[int, str]] | None:
        answer = self._answer(name, "MX")
        if answer is None:
            return None
        return sorted((r.preference, r.exchange.to_text().rstrip(".").lower()) for r in answer)

    def addresses(self, name: str) -> list[str] | None:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = self._answer(name, rdtype)
            if answer is None:
                return None
            found += [r.address for r in answer]
        return found
