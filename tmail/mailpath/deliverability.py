"""What a forwarded copy needs to be trusted at the mailbox.

For each forwarded message: verify what arrived (the original DKIM
signatures, an ARC chain, DMARC of the From domain with the SPF result the
milter recorded), state it in one Authentication-Results field, rewrite
From only where the sender's DMARC policy leaves no other way, then sign
(DKIM, RSA and ed25519) and seal (ARC) with the sending domain's key.

Only fields are prepended (or, for a rewritten From, replaced): the body
and the original signed fields pass through untouched, so the original
DKIM signature stays valid.

The body streams through the hashers into a spool (in memory up to
SPOOL_MEMORY, on disk beyond), so memory stays bounded whatever the size.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time

from ..core import authresults, dmarc, fromrewrite, signing
from ..core import headers as hdr
from ..core.bodyhash import BodyHashes
from ..core.signer import SIGN_BODY, Key, Signer

log = logging.getLogger("tmail.deliverability")

SPOOL_MEMORY = 1024 * 1024
SPOOL_CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Prepared:
    header: bytes            # the header block to send (ends with a line end)
    body: object             # an iterator of body chunks (after the blank line)
    rewritten: bool = False
    notes: str = ""


def from_config(cfg, txt=None, engine=None) -> "Deliverability":
    """The configured Deliverability (txt: the resolver's TXT lookup; only
    forwarding needs it, signing tmail's own messages does not)."""
    dkim_cfg = cfg["dkim"]
    return Deliverability(cfg.key_store(engine), txt, cfg.authserv_id,
                          sign=dkim_cfg["sign"], seal=dkim_cfg["arc_seal"])


class Deliverability:
    def __init__(self, keys, txt, authserv_id: str, *, sign: bool = True, seal: bool = True,
                 spool_directory: str | None = None, verify_seconds: float = signing.VERIFY_SECONDS):
        self.keys = keys                  # KeyStore or DbKeyStore: signing_keys(domain), stamp(domain)
        self.txt = txt                    # the resolver's TXT lookup
        self.authserv_id = authserv_id
        self.sign, self.seal = sign, seal
        self.verify_seconds = verify_seconds   # all of one message's DNS lookups
        self.spool_directory = spool_directory
        self._key_cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # -- keys -----------------------------------------------------------------
    def signing_keys(self, domain: str) -> list[Key]:
        """The domain's active keys, re-read when the key store's stamp of
        the domain changes (its key directory, or the shared database's period)."""
        stamp = self.keys.stamp(domain)
        cached = self._key_cache.get(domain)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            found = self.keys.signing_keys(domain)
        except Exception as exc:    # unreadable file, database away, a key that does not open
            log.error("cannot read the DKIM keys of %s: %s", domain, exc)
            if cached:              # the keys read last time, until they can be read again
                return cached[1]
            found = []
        with self._lock:
            self._key_cache[domain] = (stamp, found)
        return found

    def keys_for(self, *domains: str) -> list[Key]:
        """The first of these domains that has keys signs."""
        for domain in domains:
            if domain:
                found = self.signing_keys(domain)
                if found:
                    return found
        return []

    # -- forwarding -------------------------------------------------------------
    def prepare_forward(self, header: bytes, body, *, alias_address: str, from_rewrite: str,
                        sign_domains: tuple[str, ...], spf: authresults.Spf | None = None,
                        edit=None) -> Prepared:
        """spf: what the milter found for the connecting client (None: not checked);
        edit(fields) -> (fields, names of the fields it changed): tmail's own
        changes (Reply-To for replies), made after the original signatures
        were verified; a signature that covered a changed field no longer
        counts as surviving."""
        hashes = signing.body_hashes_for(header)
        spool = self._spool(body, hashes)
        digests = hashes.finish()

        fields = authresults.strip_own(hdr.split_fields(header), self.authserv_id)
        received = b"".join(fields)
        txt = signing.DnsBudget(self.txt, self.verify_seconds)
        dkim_results = signing.verify_dkim(received, digests, txt)
        arc = signing.verify_arc(received, digests, txt)
        from_domain = fromrewrite.from_domain(fields)
        dmarc_result = dmarc.evaluate(from_domain, dkim_results, spf.result if spf else "none",
                                      spf.domain if spf else "", txt)
        results = authresults.clauses(spf, dkim_results, dmarc_result, arc)
        ar = hdr.make_field("Authentication-Results", authresults.joined(self.authserv_id, results))

        counts = hdr.counts(fields)
        changed: frozenset[str] = frozenset()
        if edit is not None:
            fields, changed = edit(fields)
        survivor = dmarc.aligned_survivor(from_domain, dkim_results, counts, dmarc_result.adkim, changed)
        rewritten = fromrewrite.needed(from_rewrite, dmarc_result, survivor)
        if rewritten:
            fields = fromrewrite.rewrite(fields, alias_address)
        out = self._signed([ar] + fields, digests, sign_domains, results=results)
        notes = (f"dkim={'/'.join(r.result for r in dkim_results) or 'none'} dmarc={dmarc_result.result}"
                 f" p={dmarc_result.policy} arc={arc} from={'rewritten' if rewritten else 'kept'}")
        return Prepared(out, _read_spool(spool), rewritten, notes)

    def sign_new(self, header: bytes, body, domain: str) -> Prepared:
        """A message tmail writes from another (a reply sent on as the
        alias), signed with `domain`'s keys; the body streams through."""
        hashes = BodyHashes()
        hashes.want(*SIGN_BODY)
        spool = self._spool(body, hashes)
        out = self._signed(hdr.split_fields(header), hashes.finish(), (domain,))
        return Prepared(out, _read_spool(spool))

    def sign_message(self, raw: bytes, *sign_domains: str) -> bytes:
        """A small message built by tmail (a relayed bounce, a notice), signed."""
        if not self.sign:
            return raw
        header, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        hashes = BodyHashes()
        hashes.want(*SIGN_BODY)
        hashes.update(body)
        fields = hdr.split_fields(header + b"\n")
        return self._signed(fields, hashes.finish(), sign_domains) + b"\n" + body

    def _signed(self, fields: list[bytes], digests: dict, sign_domains,
                results: list[str] | None = None) -> bytes:
        """Signed; sealed too when `results` are given: the clauses of
        tmail's Authentication-Results field among `fields` (a forward)."""
        header = b"".join(fields)
        if not (self.sign or self.seal):
            return header
        signer = Signer(fields)
        froms = signer.names.count("from")
        if froms != 1:
            # DKIM must sign From (RFC 6376 s5.4) and DMARC cannot judge
            # several: the message goes as it came
            log.warning("%s: sent unsigned and unsealed",
                        "no From field" if froms == 0 else f"{froms} From fields")
            return header
        refused = signer.unsignable()
        if refused:     # whatever was signed, some receiver would read another message
            log.warning("%s: sent unsigned and unsealed", refused)
            return header
        keys = self.keys_for(*sign_domains)
        if not keys:
            log.warning("no DKIM key for %s: sent unsigned", " or ".join(d for d in sign_domains if d))
            return header
        added: list[bytes] = []
        now = int(time.time())
        try:
            if self.sign:
                for key in keys:
                    added.insert(0, signer.dkim(key, digests, now))
            rsa = next((k for k in keys if k.algorithm == "rsa"), None)
            if results is not None and self.seal and rsa is not None:
                sealed = signer.arc_set(rsa, digests, self.authserv_id, results, now)
                if not sealed:
                    log.warning("no ARC seal: the chain that arrived ended, or its sets are unusable")
                added = sealed + added
        except Exception:   # a key that does not load: the message still goes, unsigned
            log.exception("signing failed; the message goes on unsigned")
            return header
        return b"".join(added) + header

    def _spool(self, body, hashes: BodyHashes):
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=self.spool_directory)
        first = True
        for chunk in body:
            if first and chunk:
                first = False
                if chunk.startswith(b"\n"):   # the blank line that ends the header
                    spool.write(b"\n")
                    chunk = chunk[1:]
            hashes.update(chunk)
            spool.write(chunk)
        spool.seek(0)
        return spool


def _read_spool(spool):
    with spool:
        while True:
            chunk = spool.read(SPOOL_CHUNK)
            if not chunk:
                return
            yield chunk
