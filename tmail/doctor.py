"""`tmail doctor`: the DNS a forwarding host needs, checked, with what to publish.

For each of tmail's domains and the SRS domain: MX (mail reaches this
host), SPF (this host may send as the domain; it matters most for the SRS
domain, the envelope sender of every forwarded copy), the DKIM record of the
active selector matching the key on disk, and a DMARC record.
"""
from __future__ import annotations

import dataclasses
import re

from .core import dmarc
from .keys import public_record, record_name, zone_txt

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclasses.dataclass(frozen=True)
class Check:
    check: str
    status: str
    detail: str
    publish: str = ""        # the zone-file line that fixes it


@dataclasses.dataclass
class Host:
    name: str                # this host's name, as MX records should name it
    addresses: list[str]     # the addresses it sends from


def _spf_record(host: Host) -> str:
    mechanisms = [("ip6:" if ":" in a else "ip4:") + a for a in host.addresses] or [f"a:{host.name}"]
    return "v=spf1 " + " ".join(mechanisms) + " -all"


def check_mx(domain: str, resolver, host: Host) -> Check:
    fix = f"{domain}. IN MX 10 {host.name}."
    mx = resolver.mx(domain)
    if mx is None:
        return Check("mx", ERROR, "DNS lookup failed (try again)", fix)
    if not mx:
        return Check("mx", ERROR, "no MX record: mail to this domain has no way in", fix)
    names = [name for _, name in mx]
    for name in names:
        addresses = resolver.addresses(name) or []
        if name == host.name.lower() or set(addresses) & set(host.addresses):
            return Check("mx", OK, f"MX {', '.join(names)} reaches this host")
    return Check("mx", WARNING, f"MX {', '.join(names)} does not name this host "
                 f"({host.name}); fine only if those relay to it", fix)


def check_spf(domain: str, resolver, host: Host, spf_check, required: bool) -> Check:
    fix = zone_txt(domain, _spf_record(host))
    records = resolver.txt(domain)
    if records is None:
        return Check("spf", ERROR, "DNS lookup failed (try again)", fix)
    spf_records = [r.decode("utf-8", "replace") for r in records if re.match(rb"v=spf1(\s|$)", r, re.I)]
    missing = ERROR if required else WARNING
    why = " (the envelope sender of forwarded mail)" if required else ""
    if not spf_records:
        return Check("spf", missing, f"no SPF record{why}", fix)
    if len(spf_records) > 1:
        return Check("spf", ERROR, "several SPF records (a permerror everywhere): keep one", fix)
    failing = [a for a in host.addresses if spf_check(a, f"postmaster@{domain}", host.name) != "pass"]
    if failing or not host.addresses:
        return Check("spf", missing, f"SPF {spf_records[0]!r} does not pass for this host "
                     f"({', '.join(failing or ['no address known'])}){why}", fix)
    return Check("spf", OK, f"SPF passes for {', '.join(host.addresses)}")


def check_dkim(domain: str, resolver, keys) -> list[Check]:
    selector = keys.active(domain)
    if selector is None:
        return [Check("dkim", ERROR, "no DKIM key: mail from this domain goes unsigned",
                      f"(run: tmail dkim keygen --domain {domain} --selector s1)")]
    checks = []
    for key in [k for k in keys.keys(domain) if k.selector == selector]:
        want = public_record(key.algorithm, keys.read(key))
        name = record_name(domain, key.dns_selector)
        fix = zone_txt(name, want)
        records = resolver.txt(name)
        if records is None:
            checks.append(Check(f"dkim-{key.algorithm}", ERROR, "DNS lookup failed (try again)", fix))
            continue
        published = [_tags(r.decode("utf-8", "replace")) for r in records]
        wanted = _tags(want)
        if any(p.get("p") == wanted["p"] for p in published):
            checks.append(Check(f"dkim-{key.algorithm}", OK, f"{name} matches the {key.algorithm} key on disk"))
        elif published:
            checks.append(Check(f"dkim-{key.algorithm}", ERROR,
                                f"{name} holds another key than the {key.algorithm} key on disk", fix))
        else:
            checks.append(Check(f"dkim-{key.algorithm}", ERROR, f"no record at {name}", fix))
    return checks


def _tags(text: str) -> dict:
    tags = {}
    for part in text.split(";"):
        name, _, value = part.partition("=")
        tags[name.strip().lower()] = re.sub(r"\s+", "", value)
    return tags


def check_dmarc(domain: str, resolver) -> Check:
    fix = zone_txt(f"_dmarc.{domain}", f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}")
    try:
        record, inherited = dmarc.find_record(domain, resolver.txt)
    except dmarc.DnsTempError:
        return Check("dmarc", ERROR, "DNS lookup failed (try again)", fix)
    if record is None:
        return Check("dmarc", WARNING, "no DMARC record (receivers guess your policy)", fix)
    where = " (inherited from the organizational domain)" if inherited else ""
    return Check("dmarc", OK, f"DMARC p={record.policy}{where}")


def diagnose(domains: list[str], srs_domain: str, resolver, keys, host: Host, spf_check) -> list[dict]:
    report = []
    for domain in domains:
        is_srs = domain == srs_domain
        # the SRS domain needs an MX too: bounces to forwarded mail come back to it
        checks = [check_mx(domain, resolver, host),
                  check_spf(domain, resolver, host, spf_check, required=is_srs),
                  *check_dkim(domain, resolver, keys), check_dmarc(domain, resolver)]
        report.append({"domain": domain, "role": "srs" if is_srs else "aliases",
                       "checks": [dataclasses.asdict(c) for c in checks]})
    return report
