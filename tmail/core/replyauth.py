"""Who may send through a reverse alias: one of the alias's verified
destinations, proven by an SPF or DKIM pass aligned with the reply's From
domain (as DMARC aligns them, relaxed), or by SASL authentication on this
server. Pure: the milter gathers the facts at the end of data.

The proof is at the level of a domain, as DMARC's is: someone who can
send with a DKIM signature of the person's provider, under the person's
address, passes; that is the provider's to prevent.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import rfc5322
from .dmarc import aligned
from .replywrite import header_addresses
from .signing import DkimResult


@dataclass(frozen=True)
class Proof:
    """What the milter found out about who sent a reply."""

    envelope_sender: str                   # "" for the null sender
    authors: tuple[rfc5322.Mailbox, ...]   # the From field's mailboxes (() if none or unreadable)
    spf: str = "none"                      # the client's SPF result, for envelope_sender's domain
    spf_domain: str = ""
    dkim: tuple[DkimResult, ...] = ()
    authenticated: bool = False            # SASL-authenticated on this server


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str                # for the SMTP reply: tells nothing of the destinations
    temporary: bool = False    # a DNS failure: try again later (4xx), not a refusal
    detail: str = ""           # for the log and the owner's notice

    @property
    def told(self) -> str:
        return self.detail or self.reason


# One answer whether the author is no destination or is one but unproven:
# two answers would let anyone confirm a guess at the real address.
NOT_PROVEN = "it was not sent by a verified destination of this address, or that could not be proven"


def _key(address: str) -> str:
    return address.casefold()


def authorise(destinations: tuple[str, ...], proof: Proof) -> Decision:
    """Whether a reply may go out through an alias whose verified
    destinations are `destinations`. The author (the single From mailbox)
    must be one of them, proven by a DKIM signature (over the whole body)
    or SPF pass aligned with its domain; the envelope sender alone proves
    nothing (anyone at the same provider could pass its domain's checks).
    A SASL-authenticated client is trusted as the admin trusts it: its From
    or envelope sender must be a destination."""
    if len(proof.authors) != 1:
        return Decision(False, "a reply must have exactly one author in its From field")
    author = proof.authors[0]
    mine = {_key(d) for d in destinations}
    if proof.authenticated and (_key(author.address) in mine or _key(proof.envelope_sender) in mine):
        return Decision(True, "sender authenticated on this server (SASL)")
    if _key(author.address) not in mine:
        return Decision(False, NOT_PROVEN, detail=f"its author {author.address} is not a destination")
    from_domain = author.domain
    for result in proof.dkim:
        if result.result == "pass" and not result.partial_body and aligned(result.domain, from_domain, "r"):
            return Decision(True, f"DKIM pass for {result.domain}, aligned with {from_domain}")
    if proof.spf == "pass" and proof.spf_domain and aligned(proof.spf_domain, from_domain, "r"):
        return Decision(True, f"SPF pass for {proof.spf_domain}, aligned with {from_domain}")
    if proof.spf == "temperror" or any(r.result == "temperror" for r in proof.dkim):
        return Decision(False, "its sender could not be verified now (DNS)", temporary=True)
    return Decision(False, NOT_PROVEN, detail=f"neither SPF nor DKIM (over the whole body) passes for "
                                              f"{from_domain}, the domain in its From field")


def check_reply_header(fields: list[bytes], reply_domain: str, is_own_contact) -> str | None:
    """What is wrong with the addressing of a reply (None: nothing): its To
    and Cc may name only reverse aliases of its own alias
    (`is_own_contact(local)`). An address anywhere else got its copy from
    the person's provider already, from the real address."""
    try:
        mailboxes = header_addresses(fields, ("to", "cc"))
    except rfc5322.HeaderSyntaxError:
        return "its To or Cc field cannot be read"
    stray = list(dict.fromkeys(m.address for m in mailboxes if m.domain != reply_domain))
    if stray:
        shown = ", ".join(a[:80] for a in stray[:3]) + (" and others" if len(stray) > 3 else "")
        return (f"it was also addressed to {shown}, which got a copy from your own address; "
                "send replies to reply addresses only")
    if any(not is_own_contact(m.local.lower()) for m in mailboxes):
        return "it names a reply address that is not one of this alias's"
    return None
