"""Per-domain statistics and their Prometheus text form."""
from __future__ import annotations

from collections import Counter

WINDOWS = ("24h", "7d")


def domain_stats(domains: list[str], states: Counter, events: dict[str, dict]) -> list[dict]:
    """states: Counter of (domain, state); events: window -> {(domain, kind): n}."""
    rows = []
    for domain in domains:
        rows.append({
            "domain": domain,
            "aliases": {s: states.get((domain, s), 0) for s in ("active", "expired", "disabled")},
            "forwarded": {w: events[w].get((domain, "forwarded"), 0) for w in WINDOWS},
            "refused": {w: events[w].get((domain, "refused"), 0) for w in WINDOWS},
        })
    return rows


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(rows: list[dict]) -> str:
    """The textfile collector format of node_exporter."""
    lines = ["# HELP tmail_aliases Aliases by domain and state.", "# TYPE tmail_aliases gauge"]
    for row in rows:
        for state, n in row["aliases"].items():
            lines.append(f'tmail_aliases{{domain="{_label(row["domain"])}",state="{state}"}} {n}')
    lines += ["# HELP tmail_messages Messages forwarded or refused in the trailing window.",
              "# TYPE tmail_messages gauge"]
    for row in rows:
        for kind in ("forwarded", "refused"):
            for window, n in row[kind].items():
                lines.append(f'tmail_messages{{domain="{_label(row["domain"])}",kind="{kind}",'
                             f'window="{window}"}} {n}')
    return "\n".join(lines) + "\n"
