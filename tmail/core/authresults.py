"""Authentication-Results (RFC 8601): what tmail found on a message.

The milter finds the SPF result (it knows the client's address and HELO);
the delivery adds DKIM, DMARC and ARC and writes one field that holds them
all. Every field that arrived claiming tmail's authserv-id is removed (s5):
the SPF result reaches the delivery from the milter as a value, never read
back from a header field a sender could have written.
"""
from __future__ import annotations

import dataclasses
import re

from . import headers as hdr
from . import rfc5322
from .dmarc import Result as DmarcResult
from .signing import DkimResult

MAX_REASON = 80     # characters of a reason= kept in the field
# Longer values than a domain name (RFC 1035: 253 characters) or a path
# (RFC 5321: 256) are a sender's invention: left out, so that no line of
# the field (nor of the ARC-Authentication-Results that copies it) passes
# RFC 5322's 998 characters, where an MTA on the way would break it and
# with it the seal.
MAX_NAME, MAX_PATH = 253, 256
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
        """The spf= clause. Only ASCII goes in: the ARC seal copies this
        field and the parsers on the way (authres, in dkimpy's seal too)
        fail on anything else, which silently cost a message its seal. A
        UTF-8 sender is named by its domain; a non-ASCII HELO not at all."""
        clause = f"spf={self.result}"
        mailfrom = self.mailfrom if _printable_ascii(self.mailfrom) else self.mailfrom.rpartition("@")[2]
        if mailfrom and _printable_ascii(mailfrom) and len(mailfrom) <= MAX_PATH:
            clause += f" smtp.mailfrom={pvalue(mailfrom)}"
        if self.helo and _printable_ascii(self.helo) and len(self.helo) <= MAX_NAME:
            clause += f" smtp.helo={pvalue(self.helo)}"
        return clause


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def strip_own(fields: list[bytes], authserv_id: str) -> list[bytes]:
    """The fields without any Authentication-Results field that claims
    tmail's authserv-id (s5): whatever comments, quoting, case or folding
    it hides behind, and also a field that cannot be parsed but names that
    id anywhere (a receiver's lenient parser might read it as tmail's)."""
    own = authserv_id.lower()
    kept = []
    for field in fields:
        if hdr.name_of(field) == "authentication-results":
            value = hdr.value_of(field)
            try:
                claimed = rfc5322.authserv_id(value).lower() == own
            except rfc5322.HeaderSyntaxError:
                claimed = own in value.lower()
            if claimed:
                continue
        kept.append(field)
    return kept


def clauses(spf: Spf | None, dkim: list[DkimResult], dmarc: DmarcResult, arc: str) -> list[str]:
    """The field's results, one `method=result ...` clause each, in ASCII
    only: the ARC seal copies them, and a parser on the way that fails on
    one (authres, in dkimpy's seal too) costs the message its seal."""
    found = [spf.clause() if spf else "spf=none"]
    if dkim:
        for r in dkim:
            clause = f"dkim={r.result}"
            reason = _reason(r.reason) if r.result != "pass" else ""
            if reason:
                clause += f' reason="{reason}"'
            if _ascii_name(r.domain):
                clause += f" header.d={pvalue(_ascii_name(r.domain))}"
            if _ascii_name(r.selector):
                clause += f" header.s={pvalue(_ascii_name(r.selector))}"
            found.append(clause)
    else:
        found.append("dkim=none")
    dmarc_clause = f"dmarc={dmarc.result}"
    if dmarc.result in ("pass", "fail"):
        dmarc_clause += f" (p={dmarc.policy})"
    if _ascii_name(dmarc.from_domain):
        dmarc_clause += f" header.from={pvalue(_ascii_name(dmarc.from_domain))}"
    found.append(dmarc_clause)
    found.append(f"arc={arc}")
    return found


def field_value(authserv_id: str, spf: Spf | None, dkim: list[DkimResult],
                dmarc: DmarcResult, arc: str) -> str:
    return joined(authserv_id, clauses(spf, dkim, dmarc, arc))


def joined(authserv_id: str, results: list[str]) -> str:
    """The field's value: the authserv-id, then the clauses, one a line."""
    return f"{authserv_id};\n\t" + ";\n\t".join(results)


def _ascii_name(name: str) -> str:
    """A domain (or selector) as printable ASCII: an internationalised one
    as its A-labels; "" when it has none or is longer than a domain name
    can be (the property is left out)."""
    if not _printable_ascii(name):
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return name if len(name) <= MAX_NAME else ""


def _reason(text: str) -> str:
    """A reason= value: printable ASCII without quotes or backslashes, so
    every RFC 8601 parser (authres, in the ARC seal too) reads it."""
    return " ".join(re.sub(r'[^ -~]|["\\]', " ", text).split())[:MAX_REASON].strip()
