"""Several hosts on one database: what each reports, and where they disagree.

Each host's daemon reports the keys and SRS secrets it uses (as digests)
and the id of its fleet key; its follower reports a digest of the domains
in its Postfix tables. Any host can then see, from the database alone,
a host that has stopped reporting, signs with other keys, cannot open the
shared secrets, or routes another set of domains.
"""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HostReport:
    name: str
    version: str
    daemon_seen_at: datetime | None
    fleet_key_id: str
    keys_digest: str
    srs_digest: str
    tables_seen_at: datetime | None
    tables_digest: str
    transport: str


def tables_digest(domains: Iterable[str]) -> str:
    """The domains Postfix routes to tmail, as one short digest."""
    return hashlib.sha256("\n".join(sorted(set(domains))).encode()).hexdigest()[:16]


def _age(seen: datetime | None, now: datetime) -> float | None:
    return None if seen is None else (now - seen).total_seconds()


def disagreements(hosts: list[HostReport], now: datetime, interval: float,
                  expected_tables: str) -> list[str]:
    """What an admin should know, one sentence each ([] when all agree).

    A host is stale once it has not reported for three intervals; stale
    hosts are named, and left out of the comparisons (their figures are old).
    """
    problems: list[str] = []
    limit = 3 * interval
    live = []
    for host in hosts:
        age = _age(host.daemon_seen_at, now)
        tables_age = _age(host.tables_seen_at, now)
        if any(a is not None and a < -limit for a in (age, tables_age)):
            # a clock far ahead (or a forged report) would never turn stale
            problems.append(f"{host.name}: reports a time in the future: its clock is wrong, "
                            "or its report was not written by tmail")
            continue
        if age is None or age > limit:
            problems.append(f"{host.name}: its tmail daemon has not reported "
                            + ("at all" if age is None else f"for {int(age)} s")
                            + " (stopped, or cannot reach the database; `tmail fleet forget "
                            f"{shlex.quote(host.name)}` if the host is gone)")
        else:
            live.append(host)
        if tables_age is None or tables_age > limit:
            problems.append(f"{host.name}: its follower (`tmail postfix follow`, as root) has not "
                            "written Postfix's tables " + ("at all" if tables_age is None
                                                           else f"for {int(tables_age)} s")
                            + ": domains added or removed elsewhere do not reach its Postfix")
        elif host.tables_digest != expected_tables:
            problems.append(f"{host.name}: its Postfix routes another set of domains than the "
                            f"database holds (tables {host.tables_digest}, database {expected_tables}); "
                            f"a change in the last {int(interval)} s is still on its way")
    for label, field in (("fleet key", "fleet_key_id"), ("DKIM keys and selectors", "keys_digest"),
                         ("SRS secrets", "srs_digest")):
        groups: dict[str, list[str]] = {}
        for host in live:
            groups.setdefault(getattr(host, field), []).append(host.name)
        if len(groups) > 1:
            problems.append(f"hosts disagree on their {label}: " + "; ".join(
                f"{', '.join(names)}: {value or 'none'}" for value, names in sorted(groups.items())))
    return problems
