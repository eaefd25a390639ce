"""DMARC (RFC 7489) for a forwarded message: the From domain's policy, the
alignment of what passed, and whether an aligned DKIM signature survives
forwarding.

SRS gives the forwarded copy an envelope sender at tmail's SRS domain, so
at the next hop SPF never aligns with the From domain: DMARC there rests on
an aligned original DKIM signature alone.

The From domain comes from tmail.core.fromrewrite.from_domain, which gives
'' when the message has no single, parseable From mailbox: that is
permerror with no header.from (s6.6.1), never evaluated against a guessed
domain and never a pass.
"""
from __future__ import annotations

import dataclasses
import functools

from .signing import DkimResult, TxtLookup

# Header fields added above the original ones on the way to the mailbox:
# by tmail (authentication results, signatures, seals) and by the MTAs.
ADDED_ON_THE_WAY = frozenset({"received", "authentication-results", "dkim-signature",
                              "arc-seal", "arc-message-signature", "arc-authentication-results",
                              "return-path", "delivered-to"})


@dataclasses.dataclass(frozen=True)
class Record:
    policy: str                  # none | quarantine | reject
    subdomain_policy: str | None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclasses.dataclass(frozen=True)
class Result:
    result: str                  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"         # what the From domain asks for a failing message
    adkim: str = "r"

    @property
    def strict_policy(self) -> bool:
        return self.policy in ("quarantine", "reject")


def parse_record(text: str) -> Record | None:
    """A DMARC TXT record, or None when it is not one (RFC 7489 s6.3)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        # s6.6.3: an invalid p= with a rua= is treated as p=none
        if "rua" not in tags:
            return None
        policy = "none"
    sub = tags.get("sp", "").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return Record(policy, sub if sub in ("none", "quarantine", "reject") else None,
                  "s" if tags.get("adkim", "r").lower() == "s" else "r",
                  "s" if tags.get("aspf", "r").lower() == "s" else "r", pct)


@functools.lru_cache(maxsize=1)
def _suffixes():
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    domain = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(domain) or domain


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


class DnsTempError(Exception):
    pass


def find_record(from_domain: str, txt: TxtLookup) -> tuple[Record | None, bool]:
    """The record that governs from_domain and whether it is the
    organizational domain's (so sp= applies). Raises DnsTempError."""
    org = organizational_domain(from_domain)
    for name, inherited in ((from_domain, False), (org, True)):
        if inherited and org == from_domain:
            break
        records = txt("_dmarc." + name)
        if records is None:
            raise DnsTempError(name)
        parsed = [r for r in (parse_record(t.decode("utf-8", "replace")) for t in records) if r]
        if len(parsed) == 1:
            return parsed[0], inherited
        if len(parsed) > 1:
            return None, inherited   # s6.6.3: several records are no record
    return None, False


def evaluate(from_domain: str, dkim: list[DkimResult], spf: str, spf_domain: str,
             txt: TxtLookup) -> Result:
    if not from_domain:     # no single author: nothing to evaluate
        return Result("permerror", "")
    try:
        record, inherited = find_record(from_domain, txt)
    except DnsTempError:
        return Result("temperror", from_domain)
    if record is None:
        return Result("none", from_domain)
    policy = record.subdomain_policy if inherited and record.subdomain_policy else record.policy
    passed = any(r.result == "pass" and aligned(r.domain, from_domain, record.adkim) for r in dkim) \
        or (spf == "pass" and bool(spf_domain) and aligned(spf_domain, from_domain, record.aspf))
    return Result("pass" if passed else "fail", from_domain, policy, record.adkim)


def survives(result: DkimResult, header_counts: dict[str, int],
             changed: frozenset[str] = frozenset()) -> bool:
    """A passing signature stays valid when headers are prepended, unless it
    signed more instances of a field than exist (oversigning, to lock the
    field) and that field is one the way to the mailbox adds, or it signed
    a field tmail changed or added (`changed`)."""
    if result.result != "pass":
        return False
    signed: dict[str, int] = {}
    for name in result.signed_headers:
        signed[name] = signed.get(name, 0) + 1
    if changed & signed.keys():
        return False
    return not any(count > header_counts.get(name, 0)
                   for name, count in signed.items() if name in ADDED_ON_THE_WAY)


def aligned_survivor(from_domain: str, dkim: list[DkimResult], header_counts: dict[str, int],
                     adkim: str = "r", changed: frozenset[str] = frozenset()) -> bool:
    return any(aligned(r.domain, from_domain, adkim) and survives(r, header_counts, changed) for r in dkim)
