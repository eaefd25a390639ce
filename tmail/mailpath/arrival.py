"""What the milter checks of an arriving message besides its recipients:
SPF of the connecting client (RFC 7208, pyspf) and, for a message with no
signature at all, DMARC (RFC 7489) from its From field and that SPF result.

pyspf looks up DNS through dnspython's default resolver, which
tmail.resolver.Resolver.install() makes tmail's one resolver.
"""
from __future__ import annotations

import logging

from ..core import dmarc, fromrewrite
from ..core.authresults import Spf
from ..core.signing import DnsBudget

log = logging.getLogger("tmail.spf")


def checker(timeout: float):
    import spf

    def check(ip: str, sender: str, helo: str) -> Spf:
        try:
            result, _ = spf.check2(i=ip, s=sender, h=helo, timeout=timeout, querytime=timeout * 2)
        except Exception as exc:   # pyspf's own errors, DNS library errors
            log.info("SPF check of %s for <%s> failed: %s", ip, sender, exc)
            result = "temperror"
        return Spf(result, sender, helo)
    return check


def unsigned_dmarc(txt, timeout: float):
    """DMARC of a message that carries no DKIM signature and no ARC set:
    only aligned SPF could pass it, so the From fields and the client's SPF
    result decide, at the end of DATA. `from_values`: the From fields'
    values as the milter got them."""
    def check(from_values: list[str], spf: Spf) -> dmarc.Result:
        fields = [b"From: " + value.encode("utf-8", "surrogateescape") + b"\n" for value in from_values]
        return dmarc.evaluate(fromrewrite.from_domain(fields), [], spf.result, spf.domain,
                              DnsBudget(txt, timeout))
    return check


def dkim_verifier(txt, timeout: float):
    """DKIM of a reply at the end of DATA: the header block as the milter
    got it and the body hashes taken as the body streamed past."""
    from ..core.signing import verify_dkim

    def check(header: bytes, body_hashes: dict):
        return verify_dkim(header, body_hashes, DnsBudget(txt, timeout))
    return check
