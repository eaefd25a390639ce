"""SPF (RFC 7208) of the connecting client, for the milter (pyspf).

pyspf looks up DNS through dnspython's default resolver, which
tmail.resolver.Resolver.install() makes tmail's one resolver.
"""
from __future__ import annotations

import logging

from ..core.authresults import Spf

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
