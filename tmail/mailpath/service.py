"""The daemon's work: verdicts for the milter, deliveries for the pipe.

One Service per daemon, shared by every thread: it holds one SQLAlchemy
Engine (a short connection per call, no thread-local sessions), the policy
and a short-lived cache of tmail's domains, so mail that is not tmail's costs
no database round trip at RCPT time.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from ..core import dsn
from ..core.address import parse_sender
from ..core.durations import utcnow
from ..core.fromrewrite import DEFAULT_MODE as FROM_REWRITE_DEFAULT
from ..core.resolve import Policy, resolve
from ..core.verdict import Kind, OnExpiry, Verdict, expiry_reason
from ..db.store import Store
from .smtp import SmtpClient, SmtpError
from .wire import WireError

log = logging.getLogger("tmail")

DOMAIN_CACHE_SECONDS = 5.0
MAX_HEADER_BYTES = 1024 * 1024
MAX_BOUNCE_BYTES = 2 * 1024 * 1024

# pipe(8) exit statuses (sysexits.h)
EX_OK, EX_NOUSER, EX_UNAVAILABLE, EX_TEMPFAIL = 0, 67, 69, 75


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int
    text: str


class _Lookup:
    """The AliasLookup port over one connection and the domain cache."""

    def __init__(self, store: Store, domains: frozenset[str]):
        self.store, self.domains = store, domains

    def is_tmail_domain(self, name: str) -> bool:
        return name in self.domains

    def get_alias(self, key, domain):
        return self.store.get_alias(key, domain)


class Service:
    def __init__(self, engine, policy: Policy, reinject: tuple[str, int], *,
                 reinject_timeout: float = 60, max_received: int = 30,
                 helo: str = "localhost", clock=utcnow, domains_map: str | None = None,
                 deliverability=None, spf_check=None, authserv_id: str = "localhost"):
        self.engine = engine
        self.policy = policy
        self.reinject = reinject
        self.reinject_timeout = reinject_timeout
        self.max_received = max_received
        self.helo = helo
        self.clock = clock
        # Verification, From rewriting, DKIM and ARC (None: forward as it came).
        self.deliverability = deliverability
        # spf_check(ip, sender, helo) -> Spf, for the milter (None: no SPF check).
        self.spf_check = spf_check
        self.authserv_id = authserv_id
        self._domains: frozenset[str] = frozenset()
        self._domains_at = float("-inf")
        self._domains_stamp = None
        # Postfix's own table of tmail's domains: when it changes, Postfix
        # starts routing a new domain to us, so the cache must follow at once
        # (a stale "not ours" would accept mail that could later only bounce).
        self.domains_map = domains_map
        self._lock = threading.Lock()
        # Database work runs on threads Python made, not on libmilter's own
        # threads: under load, SQLAlchemy's deep call stacks on libmilter's
        # threads crashed the interpreter (SIGSEGV, seen in the benchmark).
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="tmail-db")

    def run(self, fn, *args):
        """Run fn(*args) on the service's own threads and wait for it."""
        return self._pool.submit(fn, *args).result()

    def checked_verdict(self, recipient: str, sender: str) -> Verdict:
        """The milter's question: the verdict, with the message counted."""
        return self.reserve(self.verdict(recipient, sender))

    # -- verdicts ----------------------------------------------------------
    def _map_stamp(self):
        if not self.domains_map:
            return None
        try:
            info = os.stat(self.domains_map)
        except OSError:
            return None
        # tmail rewrites the table by rename: a new inode even within one clock tick.
        return info.st_ino, info.st_size, info.st_mtime_ns

    def _stale(self, stamp) -> bool:
        return (stamp != self._domains_stamp
                or time.monotonic() - self._domains_at > DOMAIN_CACHE_SECONDS)

    def _foreign(self, recipient: str, domains: frozenset[str]) -> bool:
        """Not one of tmail's domains nor the SRS domain (an IDNA U-label
        goes the long way, through the core's normalisation)."""
        domain = _domain_of(recipient)
        srs_domain = self.policy.srs.domain if self.policy.srs else None
        return domain.isascii() and domain not in domains and domain != srs_domain

    def surely_foreign(self, recipient: str) -> bool:
        """True when the cached domain list, still fresh, says the recipient
        is not tmail's: the milter then answers without leaving its thread."""
        return not self._stale(self._map_stamp()) and self._foreign(recipient, self._domains)

    def domains(self) -> frozenset[str]:
        stamp = self._map_stamp()
        if self._stale(stamp):
            with self.engine.connect().execution_options(readonly=True) as conn:
                names = frozenset(Store(conn).domain_names())
            with self._lock:
                self._domains, self._domains_at, self._domains_stamp = names, time.monotonic(), stamp
        return self._domains

    def verdict(self, recipient: str, sender: str, now: datetime | None = None) -> Verdict:
        """The RCPT-time verdict. Raises AddressError for malformed input and
        database errors as they are (the milter turns them into 451)."""
        now = now or self.clock()
        domains = self.domains()
        if self._foreign(recipient, domains):
            return Verdict(Kind.NOT_OURS, "not a tmail domain")  # no database round trip
        with self.engine.connect().execution_options(readonly=True) as conn:
            verdict = resolve(_Lookup(Store(conn), domains), self.policy, recipient, sender, now)
        if not verdict.accepts:
            self._record_refusal(verdict, _domain_of(recipient), now)
        return verdict

    def reserve(self, verdict: Verdict, now: datetime | None = None) -> Verdict:
        """Count an accepted message against its alias before accepting it.

        The count is taken at RCPT time with one conditional UPDATE, so
        concurrent messages cannot overrun max_messages; if the last slot
        went meanwhile, the verdict becomes 'expired' (reject or drop).
        """
        if verdict.kind is not Kind.FORWARD or verdict.alias is None:
            return verdict
        if verdict.alias.max_messages is None:
            return verdict  # no limit to race for: counted at delivery, one write fewer
        with self.engine.begin() as conn:
            if Store(conn).reserve(verdict.alias.id):
                return verdict
        alias = dataclasses.replace(verdict.alias, forwarded=verdict.alias.max_messages or 0)
        now = now or self.clock()
        reason = expiry_reason(alias, now) or "reached its message limit"
        expired = Verdict(Kind.EXPIRED, reason, drop=alias.on_expiry is OnExpiry.DROP, alias=alias)
        if not expired.accepts:
            self._record_refusal(expired, alias.domain, now)
        return expired

    def release(self, alias_ids: list[int]) -> None:
        """Give back reservations of a message that was not accepted after all."""
        if not alias_ids:
            return
        try:
            with self.engine.begin() as conn:
                store = Store(conn)
                for alias_id in alias_ids:
                    store.release(alias_id)
        except Exception:
            log.exception("could not release message counts %s", alias_ids)

    def _record_refusal(self, verdict: Verdict, domain: str, now: datetime) -> None:
        if verdict.kind is Kind.NOT_OURS:
            return
        try:  # a counter must never turn a verdict into a 451
            with self.engine.begin() as conn:
                store = Store(conn)
                store.add_event(domain, "refused", now)
                if verdict.alias is not None:
                    store.count_refused(verdict.alias.id)
        except Exception:
            log.exception("could not count a refused message for %s", domain)

    # -- deliveries ----------------------------------------------------------
    def deliver(self, request: dict, chunks) -> Outcome:
        """Forward one message for one recipient; never raises."""
        queue_id = str(request.get("queue_id", "?"))[:64]
        try:
            outcome = self._deliver(queue_id, request, chunks)
        except WireError as exc:
            outcome = Outcome(EX_TEMPFAIL, f"4.3.0 message incomplete ({exc}); will retry")
        except SmtpError as exc:
            if exc.permanent:
                outcome = Outcome(EX_TEMPFAIL, f"4.3.0 reinjection refused ({exc.code}); will retry")
            else:
                outcome = Outcome(EX_TEMPFAIL, f"4.3.0 reinjection failed ({exc.code}); will retry")
            log.warning("queue_id=%s reinjection error: %s", queue_id, exc)
        except OSError as exc:
            log.warning("queue_id=%s reinjection unreachable: %s", queue_id, exc)
            outcome = Outcome(EX_TEMPFAIL, "4.3.0 reinjection listener unreachable; will retry")
        except Exception:
            log.exception("queue_id=%s internal error", queue_id)
            outcome = Outcome(EX_TEMPFAIL, "4.3.0 internal error in tmail; will retry")
        log.info("queue_id=%s to=<%s> from=<%s> status=%s %s", queue_id,
                 request.get("recipient"), request.get("sender"), outcome.status, outcome.text)
        return outcome

    def _deliver(self, queue_id: str, request: dict, chunks) -> Outcome:
        recipient = str(request["recipient"])
        sender_text = str(request.get("sender", ""))
        now = self.clock()
        with self.engine.connect().execution_options(readonly=True) as conn:
            store = Store(conn)
            if store.delivered(queue_id, recipient.lower()):
                _drain(chunks)
                return Outcome(EX_OK, "2.0.0 already forwarded (duplicate delivery attempt)")
            verdict = resolve(_Lookup(store, self.domains()), self.policy, recipient, sender_text, now)

        if verdict.drop:
            _drain(chunks)
            return self._done(queue_id, recipient, None, "2.0.0 discarded: alias expired (drop mode)",
                              forwarded=False)
        if verdict.kind is Kind.SRS_BOUNCE:
            return self._relay_bounce(queue_id, recipient, verdict.destinations[0], chunks, now)
        if verdict.alias is not None or verdict.kind is Kind.ROLE:
            # Accepted at RCPT time: a change made since (disabled, expired,
            # blocked) does not turn the accepted message into a bounce.
            dests = verdict.destinations or verdict.alias.destinations
            return self._forward(queue_id, recipient, sender_text, dests, verdict, chunks)
        _drain(chunks)
        if verdict.kind is Kind.UNKNOWN:
            return Outcome(EX_NOUSER, "5.1.1 no such address")
        if verdict.kind in (Kind.SRS_INVALID, Kind.SRS_NOT_BOUNCE):
            return Outcome(EX_UNAVAILABLE, "5.1.1 invalid or expired bounce address")
        return Outcome(EX_TEMPFAIL, f"4.3.5 {verdict.reason}: check transport_maps; will retry")

    def _forward(self, queue_id, recipient, sender_text, dests, verdict, chunks) -> Outcome:
        header, body = _split_header(chunks)
        received = sum(1 for line in header.split(b"\n") if line[:9].lower() == b"received:")
        if received > self.max_received:
            _drain(body)
            return Outcome(EX_UNAVAILABLE, f"5.4.6 mail forwarding loop ({received} Received headers)")
        alias = verdict.alias
        if self.deliverability is not None:
            prepared = self.deliverability.prepare_forward(
                header, body, alias_address=alias.address if alias else recipient,
                from_rewrite=(alias and (alias.from_rewrite or alias.domain_from_rewrite)) or FROM_REWRITE_DEFAULT,
                sign_domains=(_domain_of(recipient), self.policy.srs.domain if self.policy.srs else ""))
            header, body = prepared.header, prepared.body
            log.info("queue_id=%s to=<%s> %s", queue_id, recipient, prepared.notes)
        sender = parse_sender(sender_text)
        if sender is None:
            envelope_sender = ""  # the null sender is never rewritten
        elif self.policy.srs is not None:
            envelope_sender = self.policy.srs.forward(sender.local, sender.domain)
        else:
            return Outcome(EX_TEMPFAIL, "4.3.5 no SRS domain configured; will retry")
        utf8 = (not envelope_sender.isascii() or not all(d.isascii() for d in dests)
                or not header.isascii())
        reply = self._send(envelope_sender, list(dests), utf8, _chain([header], body))
        return self._done(queue_id, recipient, alias.id if alias else None, f"2.0.0 forwarded ({reply})",
                          limited=bool(alias and alias.max_messages is not None))

    def _relay_bounce(self, queue_id, recipient, original, chunks, now) -> Outcome:
        raw = _read_capped(chunks, MAX_BOUNCE_BYTES)
        domains = self.domains()
        report = dsn.parse_report(raw, lambda a: _domain_of(a) in domains)
        notice = dsn.build_notice(report, to=original, reporting_domain=self.policy.srs.domain, now=now)
        if self.deliverability is not None:
            notice = self.deliverability.sign_message(notice, self.policy.srs.domain)
        reply = self._send("", [original], not original.isascii(), [notice])
        return self._done(queue_id, recipient, None, f"2.0.0 bounce relayed ({reply})",
                          forwarded=False)

    def _send(self, sender: str, recipients: list[str], utf8: bool, chunks) -> str:
        client = SmtpClient(*self.reinject, timeout=self.reinject_timeout, helo=self.helo)
        try:
            client.envelope(sender, recipients, utf8)
            return client.send_message(chunks)
        finally:
            client.close()

    def _done(self, queue_id, recipient, alias_id, text, forwarded=True, limited=False) -> Outcome:
        """Record the delivery; after a 250 the answer is success, whatever happens here.

        A message to an alias with a message limit was counted at RCPT time
        (reserve); any other is counted here.
        """
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                store = Store(conn)
                store.mark_delivered(queue_id, recipient.lower(), now)
                if forwarded:
                    store.add_event(_domain_of(recipient), "forwarded", now)
                if alias_id is not None:
                    store.touch_forwarded(alias_id, now, count=not limited)
        except Exception:
            log.exception("queue_id=%s done, but recording it failed (a retry could repeat it)",
                          queue_id)
        return Outcome(EX_OK, text)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip(">").lower()


def _chain(first, rest):
    yield from first
    yield from rest


def _drain(chunks) -> None:
    for _ in chunks:
        pass


def _read_capped(chunks, limit: int) -> bytes:
    data = bytearray()
    for chunk in chunks:
        if len(data) < limit:
            data += chunk[: limit - len(data)]
    return bytes(data)


def _split_header(chunks):
    """Read the header block (bounded); return it and an iterator over the rest."""
    chunks = iter(chunks)
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        end = buffer.find(b"\n\n")
        if buffer.startswith(b"\n"):
            end = 0
        if end >= 0:
            return bytes(buffer[:end + 1]), _chain([bytes(buffer[end + 1:])], chunks)
        if len(buffer) > MAX_HEADER_BYTES:
            break
    return bytes(buffer), chunks
