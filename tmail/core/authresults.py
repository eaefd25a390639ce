"""Authentication-Results (RFC 8601): what tmail found on a message.

The milter writes the SPF part at the end of the SMTP transaction (it knows
the client's address and HELO); the delivery adds DKIM, DMARC and ARC and
replaces that field with one that holds them all. A field with tmail's
authserv-id that tmail did not write is a forgery and is removed (s5).
"""
from __future__ import annotations

import dataclasses
import re

from . import headers as hdr
from .dmarc import Result as DmarcResult
from .signing import DkimResult

_BARE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+(@[A-Za-z0-9.\-]+)?")


def pvalue(value: str) -> str:
    """A property value: bare where RFC 8601 allows it, else a quoted-string."""
    value = re.sub(r"[\x00-\x1f\x7f]", "", value)
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclasses.dataclass(frozen=True)
class Spf:
    result: str            # pass fail softfail neutral none temperror permerror
    mailfrom: str          # the envelope sender, "" for the null sender
    helo: str

    @property
    def domain(self) -> str:
        """The identity DMARC aligns: MAIL FROM's domain, or HELO's for the null sender."""
        return self.mailfrom.rpartition("@")[2].lower() if self.mailfrom else self.helo.lower()

    def clause(self) -> str:
        clause = f"spf={self.result}"
        if self.mailfrom:
            clause += f" smtp.mailfrom={pvalue(self.mailfrom)}"
        if self.helo:
            clause += f" smtp.helo={pvalue(self.helo)}"
        return clause


def spf_field_value(authserv_id: str, spf: Spf) -> str:
    return f"{authserv_id}; {spf.clause()}"


def authserv_id_of(value: str) -> str:
    return re.sub(r"\([^)]*\)", "", value.split(";", 1)[0]).split()[0] if value.strip() else ""


def take_own(fields: list[bytes], authserv_id: str) -> tuple[list[bytes], Spf | None]:
    """Remove every Authentication-Results field carrying tmail's authserv-id;
    return the rest and the SPF result of the topmost one (the milter's)."""
    kept, spf = [], None
    seen_own = False
    for field in fields:
        if hdr.name_of(field) != "authentication-results":
            kept.append(field)
            continue
        value = hdr.value_of(field)
        if authserv_id_of(value).lower() != authserv_id.lower():
            kept.append(field)
            continue
        if not seen_own:
            spf = _parse_spf(value)
        seen_own = True
    return kept, spf


def _parse_spf(value: str) -> Spf | None:
    match = re.search(r"\bspf=([a-z]+)", value)
    if not match:
        return None
    mailfrom = re.search(r'smtp\.mailfrom=("(?:[^"\\]|\\.)*"|[^\s;]+)', value)
    helo = re.search(r'smtp\.helo=("(?:[^"\\]|\\.)*"|[^\s;]+)', value)
    return Spf(match.group(1), _unquote(mailfrom.group(1)) if mailfrom else "",
               _unquote(helo.group(1)) if helo else "")


def _unquote(text: str) -> str:
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def field_value(authserv_id: str, spf: Spf | None, dkim: list[DkimResult],
                dmarc: DmarcResult, arc: str) -> str:
    clauses = [spf.clause() if spf else "spf=none"]
    if dkim:
        for r in dkim:
            clause = f"dkim={r.result}"
            if r.domain:
                clause += f" header.d={pvalue(r.domain)}"
            if r.selector:
                clause += f" header.s={pvalue(r.selector)}"
            clauses.append(clause)
    else:
        clauses.append("dkim=none")
    dmarc_clause = f"dmarc={dmarc.result}"
    if dmarc.result in ("pass", "fail"):
        dmarc_clause += f" (p={dmarc.policy})"
    if dmarc.from_domain:
        dmarc_clause += f" header.from={pvalue(dmarc.from_domain)}"
    clauses.append(dmarc_clause)
    clauses.append(f"arc={arc}")
    return f"{authserv_id};\n\t" + ";\n\t".join(clauses)
