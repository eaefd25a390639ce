"""E-mail addresses: parsing, validation (RFC 5321/6531) and normalisation.

Every address that enters tmail, from the CLI, the database or Postfix, goes
through parse_address(); what comes out is safe to put on an SMTP command
line or in a header (no CR, LF, NUL or other control characters).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MAX_LOCAL_OCTETS = 64      # RFC 5321 s4.5.3.1.1
MAX_DOMAIN_OCTETS = 255    # RFC 5321 s4.5.3.1.2
MAX_PATH_OCTETS = 256      # RFC 5321 s4.5.3.1.3, including the angle brackets
MAX_LABEL_OCTETS = 63

# atext of RFC 5322, plus any non-ASCII character (RFC 6531 s3.3).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
# qtextSMTP / quoted-pairSMTP of RFC 5321 s4.1.2.
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
# Control characters, line separators, and the lone surrogates that stand
# for bytes that were not UTF-8 (pymilter decodes with surrogateescape).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class AddressError(ValueError):
    """An address or domain is malformed; the message says what is wrong."""


def check_text(value: str, what: str) -> str:
    """Refuse control characters (CR, LF, NUL, ...) in any free-text field."""
    match = _CONTROL.search(value)
    if match:
        raise AddressError(f"{what} contains a control character ({match.group()!r})")
    return value


def normalise_domain(domain: str) -> str:
    """Return the lower-case ASCII (IDNA A-label) form of a domain name."""
    check_text(domain, "domain")
    name = domain.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise AddressError("domain is empty")
    if len(name.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        raise AddressError(f"domain is {len(name.encode('utf-8'))} octets long; "
                           f"at most {MAX_DOMAIN_OCTETS} are allowed")
    labels = []
    for label in name.split("."):
        if not label:
            raise AddressError(f"domain {domain!r} has an empty label")
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise AddressError(f"domain {domain!r} is not a valid IDNA name: {exc}") from None
        label = label.lower()
        if len(label) > MAX_LABEL_OCTETS:
            raise AddressError(
                f"domain label {label[:20]!r}... is longer than {MAX_LABEL_OCTETS} octets"
            )
        if not _LDH_LABEL.match(label):
            raise AddressError(
                f"domain {domain!r}: label {label!r} may hold only letters, digits and inner hyphens"
            )
        labels.append(label)
    ascii_name = ".".join(labels)
    if len(ascii_name) > MAX_DOMAIN_OCTETS:
        raise AddressError(
            f"domain is {len(ascii_name)} octets long; at most {MAX_DOMAIN_OCTETS} are allowed"
        )
    return ascii_name


def check_local_part(local: str) -> str:
    check_text(local, "local part")
    if not local:
        raise AddressError("local part is empty")
    size = len(local.encode("utf-8"))
    if size > MAX_LOCAL_OCTETS:
        raise AddressError(
            f"local part is {size} octets long; at most {MAX_LOCAL_OCTETS} are allowed"
        )
    if not (_DOT_ATOM.match(local) or _QUOTED.match(local)):
        raise AddressError(f"local part {local!r} is not a valid RFC 5321 local part")
    return local


@dataclass(frozen=True)
class Address:
    """A validated address. `local` keeps its case; `domain` is normalised."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """What alias lookups compare: local_key()."""
        return local_key(self.local)

    @property
    def smtp(self) -> str:
        """The address as an SMTP command writes it (quoted where needed)."""
        return smtp_path(unquote_local(self.local), self.domain)

    @property
    def is_utf8(self) -> bool:
        return not self.local.isascii()

    def base(self, delimiter: str) -> "Address":
        """alias+tag@domain -> alias@domain (the delimiter is configurable)."""
        if delimiter and not self.local.startswith('"'):
            head, sep, _tag = self.local.partition(delimiter)
            if sep and head:
                return Address(head, self.domain)
        return self


def parse_address(text: str) -> Address:
    """Parse `local@domain` (optionally in angle brackets) or raise AddressError."""
    if not isinstance(text, str):
        raise AddressError("address must be text")
    check_text(text, "address")
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1]
    local, sep, domain = raw.rpartition("@")
    if not sep:
        raise AddressError(f"{text!r} is not an address: it has no '@'")
    address = Address(check_local_part(local), normalise_domain(domain))
    path = len(str(address).encode("utf-8")) + 2
    if path > MAX_PATH_OCTETS:
        raise AddressError(
            f"address is {path} octets long as an SMTP path; at most {MAX_PATH_OCTETS} are allowed"
        )
    return address


def local_key(local: str) -> str:
    """The local part as alias lookups compare it: case-folded as Postfix
    folds an address (full Unicode case folding, so STRASSE and straße are
    one alias, as they are one recipient to Postfix)."""
    return unquote_local(local).casefold()


def unquote_local(local: str) -> str:
    """The internal form of a local part, as Postfix keeps it: a quoted-string
    without its quotes and backslashes (`"a b"` -> `a b`)."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1], flags=re.DOTALL)
    return local


def quote_local(local: str) -> str:
    """The RFC 5321 form of an internal local part: a dot-atom as it is,
    anything else as a quoted-string."""
    if _DOT_ATOM.match(local):
        return local
    return '"' + re.sub(r'(["\\])', r"\\\1", local) + '"'


def smtp_path(local: str, domain: str) -> str:
    return f"{quote_local(local)}@{domain}" if domain else quote_local(local)


def _lenient_domain(domain: str) -> str:
    """A domain as Postfix accepted it: the trailing dots Postfix ignores
    go, IDNA U-labels become A-labels where they can, case folds; address
    literals and names outside LDH (underscores, say) are kept."""
    name = domain.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        return name
    if not name or re.search(r"[\s@<>\\\[\]\"]", name):
        raise AddressError(f"domain {domain!r} is not one Postfix would route")
    try:
        return normalise_domain(name)
    except AddressError:
        return name


def _split_envelope(raw: str) -> tuple[str, str]:
    """local, domain of `local@domain`, where the local part may be a
    quoted-string holding '@' and the domain may be missing."""
    if raw.startswith('"'):
        end = re.match(r'"(?:[^"\\]|\\.)*"', raw, re.DOTALL)
        if end is None:
            raise AddressError(f"{raw!r}: unterminated quoted local part")
        local, rest = raw[:end.end()], raw[end.end():]
        if rest and not rest.startswith("@"):
            raise AddressError(f"{raw!r}: text after the quoted local part")
        return local, rest[1:]
    local, sep, domain = raw.rpartition("@")
    return (local, domain) if sep else (raw, "")


def parse_envelope(text: str) -> Address:
    """An address as Postfix hands it over (RCPT or MAIL, a milter macro, a
    pipe(8) argument), in external or internal form.

    Lenient where the outside world is and Postfix accepts it: no 64-octet
    limit on the local part (SRS addresses of long senders exceed it), any
    printable local part, address literals, trailing dots, a source route.
    Never a control character. `local` comes back in the internal
    (unquoted) form. The strict RFC 5321 checks of parse_address stay for
    what an admin types.
    """
    if not isinstance(text, str):
        raise AddressError("address must be text")
    return _parse_envelope(text)


# Remembered (an Address is immutable): a delivery reads its recipient half a
# dozen times, and the milter and the delivery read the same ones.
@functools.lru_cache(maxsize=1024)
def _parse_envelope(text: str) -> Address:
    check_text(text, "address")
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1].strip()
    if raw.startswith("@") and ":" in raw:   # <@relay,@relay:user@domain>: Postfix drops the route
        raw = raw.split(":", 1)[1]
    local, domain = _split_envelope(raw)
    return envelope_address(unquote_local(local), domain)


def envelope_address(local: str, domain: str) -> Address:
    """An Address from an internal-form local part and a domain as Postfix
    has them (see parse_envelope)."""
    check_text(local, "local part")
    if not local:
        raise AddressError("the local part is empty")
    return Address(local, _lenient_domain(domain) if domain else "")


def envelope_key(text: str) -> str:
    """What two forms of one envelope address share: Postfix's resolved
    address, case-folded the way smtpd folds {rcpt_addr}."""
    address = parse_envelope(text)
    return f"{address.local}@{address.domain}".casefold()


def parse_sender(text: str) -> Address | None:
    """An envelope sender as Postfix gives it: None for the null sender
    (<> or MAILER-DAEMON)."""
    raw = (text or "").strip()
    if raw in ("", "<>") or raw.upper() == "MAILER-DAEMON":
        return None
    return parse_envelope(raw)


def parse_block_pattern(text: str) -> str:
    """A blocked sender: an exact address, or `@domain` for a whole domain."""
    raw = check_text(text, "sender pattern").strip()
    if raw.startswith("@"):
        return "@" + normalise_domain(raw[1:])
    address = parse_address(raw)
    return f"{address.local.lower()}@{address.domain}"
