"""Deliveries: one message for one recipient, handed over by tmail-deliver.

What the milter decided at RCPT time (its receipt) is what happens: the
message is forwarded (even if the alias was disabled or reached a limit
since: it was valid when it got its 250), or dropped when the verdict said
so. With no receipt (mail injected locally, a recipient Postfix routed to
tmail without asking the milter) the verdict is taken now, and whatever
it refuses is discarded with a log line: never forwarded, never bounced to
a sender nobody verified.

Nothing is acknowledged before the reinjection listener's 250; every
internal failure is a tempfail (75); a retried delivery of a message that
already went out is recognised by its receipt and not sent twice; two
attempts for one queue id and recipient never run at once (in any of the
daemon's processes: tmail.mailpath.shared_locks), and an attempt
whose client (the pipe) has gone is abandoned before the message is
committed.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from ..core import dsn, mails
from ..core import headers as hdr
from ..core.address import AddressError, envelope_key, parse_envelope, parse_sender, smtp_path
from ..core.authresults import Spf
from ..core.fromrewrite import DEFAULT_MODE as FROM_REWRITE_DEFAULT
from ..core.receipts import DROP, Receipt, alias_key, header_digest, stored_key, verdict_name
from ..core.resolve import resolve
from ..core.verdict import AliasRecord, Kind
from ..db.accounts import Accounts
from . import replying
from .service import Service, _Lookup, counts
from .shared_locks import Held, SharedLocks
from .smtp import Abandoned, SmtpError, SmtpPool
from .wire import WireError

log = logging.getLogger("tmail")

MAX_HEADER_BYTES = 1024 * 1024
RECORD_PATIENCE = 300      # seconds a forward's record is retried (Postfix waits 600 for the answer)
MAX_BOUNCE_BYTES = 2 * 1024 * 1024

# pipe(8) exit statuses (sysexits.h)
EX_OK, EX_TEMPFAIL = 0, 75


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int
    text: str
    notes: str = ""      # for the log line only (what verification found)


class Delivery:
    def __init__(self, service: Service, reinject: tuple[str, int], *, reinject_timeout: float = 60,
                 helo: str = "localhost", deliverability=None, notice_from: str = "",
                 keep_user_agent: bool = False, locks: SharedLocks | None = None):
        self.service = service
        self.policy = service.policy
        self.reinject = reinject
        self.reinject_timeout = reinject_timeout
        self.helo = helo
        # Verification, From rewriting, DKIM and ARC (None: forward as it came).
        self.deliverability = deliverability
        # Shared with the daemon's other processes (LMTP workers): an attempt
        # in one waits for an attempt at the same message in another.
        self.locks = locks or SharedLocks()
        self._sessions = SmtpPool(*reinject, timeout=reinject_timeout, helo=helo)
        self.notice_from = notice_from or f"postmaster@{helo}"
        self.keep_user_agent = keep_user_agent

    def deliver(self, request: dict, chunks, still_wanted=lambda: True) -> Outcome:
        """Forward one message for one recipient; never raises.
        `still_wanted()` is False once the client gave up waiting."""
        queue_id = str(request.get("queue_id", "?"))[:64]
        recipient, sender = str(request.get("recipient", "")), str(request.get("sender", ""))
        try:
            with self._one_attempt(queue_id, recipient) as attempt:
                outcome = self._deliver(queue_id, recipient, sender, chunks,
                                        _Turn(still_wanted, attempt))
        except WireError as exc:
            outcome = Outcome(EX_TEMPFAIL, f"4.3.0 message incomplete ({exc}); will retry")
        except Abandoned as exc:
            outcome = Outcome(EX_TEMPFAIL, f"4.3.0 abandoned ({exc}); will retry")
        except SmtpError as exc:
            log.warning("queue_id=%s reinjection error: %s", queue_id, exc)
            outcome = Outcome(EX_TEMPFAIL, f"4.3.0 reinjection failed ({exc.code}); will retry")
        except OSError as exc:
            log.warning("queue_id=%s reinjection unreachable: %s", queue_id, exc)
            outcome = Outcome(EX_TEMPFAIL, "4.3.0 reinjection listener unreachable; will retry")
        except Exception:
            log.exception("queue_id=%s internal error", queue_id)
            outcome = Outcome(EX_TEMPFAIL, "4.3.0 internal error in tmail; will retry")
        log.info("queue_id=%s to=<%s> from=<%s> status=%s %s%s", queue_id, recipient, sender,
                 outcome.status, outcome.text, f"; {outcome.notes}" if outcome.notes else "")
        return outcome

    def _one_attempt(self, queue_id: str, recipient: str):
        """One attempt per (queue id, alias) at a time: Postfix retrying
        while an earlier attempt still runs waits for it, then finds it done;
        and of alias+a and alias+b in one message, the second finds the
        first forwarded. (The key is the address without its +tag.)"""
        try:
            address = parse_envelope(recipient)
            key = str(address.base(self.policy.recipient_delimiter)).casefold()
        except AddressError:
            key = recipient.casefold()
        return self.locks.hold(f"attempt {queue_id} {key}")

    # -- the decision ------------------------------------------------------------
    def _deliver(self, queue_id, recipient, sender, chunks, turn) -> Outcome:
        header, body = _split_header(chunks)
        digest = header_digest(header)
        turn.digest = digest
        if turn.attempt.sent(digest):
            # an earlier attempt's process ended between the 250 and the record
            _drain(body)
            return Outcome(EX_OK, "2.0.0 already forwarded (noted when it went out; its process "
                                  "ended before recording it)")
        key = stored_key(envelope_key(recipient))
        now = self.service.clock()
        with self.service.read() as store:
            receipt = store.receipt(queue_id, key)
            if receipt is not None and receipt.forwarded_at is not None:
                if receipt.digest == digest:
                    _drain(body)
                    return Outcome(EX_OK, "2.0.0 already forwarded (duplicate delivery attempt)")
                receipt = None    # an earlier message with this (reused) queue id
            try:
                verdict = resolve(_Lookup(store), self.policy, recipient, sender,
                                  receipt.created_at if receipt else now, routed=True)
            except AddressError as exc:
                # Only mail that passed no milter gets here (the milter refuses
                # such addresses at RCPT): waiting would not make it readable.
                _drain(body)
                log.warning("queue_id=%s to=<%s> from=<%s> discarded: %s", queue_id, recipient,
                            sender, exc)
                return Outcome(EX_OK, "2.0.0 discarded: unreadable address")
            if verdict.alias is not None and store.forwarded_to_alias(
                    queue_id, alias_key(verdict.alias.address), digest):
                _drain(body)
                return Outcome(EX_OK, f"2.0.0 already forwarded to {verdict.alias.address}'s "
                                      "destinations (one copy a message, whatever the +tag)")
        from_milter = receipt is not None
        if receipt is None:
            verdict = self.service.reserve(verdict, now, sender=sender)   # counted now, unless refused
            receipt = Receipt(key, verdict_name(verdict) or "", counted=counts(verdict),
                              alias=alias_key(verdict.alias.address) if verdict.alias else "")
            if not receipt.verdict:
                _drain(body)
                log.warning("queue_id=%s to=<%s> from=<%s> not forwarded: %s (%s); no RCPT-time "
                            "verdict for it, so it is discarded, not bounced", queue_id, recipient,
                            sender, verdict.kind.value, verdict.reason)
                return Outcome(EX_OK, f"2.0.0 discarded: {verdict.kind.value}")
        if receipt.verdict == DROP:
            _drain(body)
            return Outcome(EX_OK, "2.0.0 discarded: alias expired (drop mode)")
        if receipt.verdict == Kind.SRS_BOUNCE.value:
            if verdict.kind is not Kind.SRS_BOUNCE:     # the SRS secret was changed since
                _drain(body)
                log.warning("queue_id=%s to=<%s> bounce not relayed: %s", queue_id, recipient,
                            verdict.reason)
                return Outcome(EX_OK, "2.0.0 discarded: bounce address no longer valid")
            return self._relay_bounce(queue_id, recipient, verdict.destinations[0], header, body,
                                      receipt, digest, turn)
        if receipt.verdict in (Kind.REPLY.value, Kind.REPLY_BOUNCE.value):
            if verdict.contact is None or verdict.alias is None:
                _drain(body)
                log.warning("queue_id=%s to=<%s> accepted, but its alias or contact was removed "
                            "before delivery: discarded", queue_id, recipient)
                return Outcome(EX_OK, "2.0.0 discarded: reply address removed")
            if receipt.verdict == Kind.REPLY_BOUNCE.value:
                if not verdict.alias.forwardable:
                    _drain(body)
                    return Outcome(EX_OK, "2.0.0 discarded: no verified destination")
                # the person wrote to the contact: the notice names the contact
                return self._relay_bounce(queue_id, recipient, verdict.alias.forwardable[0], header,
                                          body, receipt, digest, turn, about=verdict.contact.address)
            return self._reply(queue_id, recipient, sender, verdict, header, body, receipt, digest,
                               turn, from_milter)
        if verdict.kind is Kind.ROLE:
            destinations = verdict.destinations
        elif verdict.alias is not None and verdict.alias.forwardable:
            # disabled or expired since: still forwarded; to verified destinations only
            destinations = verdict.alias.forwardable
        elif verdict.alias is not None:
            _drain(body)
            log.warning("queue_id=%s to=<%s> accepted, but no verified destination is left: "
                        "discarded", queue_id, recipient)
            return Outcome(EX_OK, "2.0.0 discarded: no verified destination")
        else:
            _drain(body)
            log.warning("queue_id=%s to=<%s> accepted, but the alias was removed before "
                        "delivery: discarded", queue_id, recipient)
            return Outcome(EX_OK, "2.0.0 discarded: alias removed")
        return self._forward(queue_id, recipient, sender, destinations, verdict.alias, header, body,
                             receipt, digest, turn)

    # -- forwarding ----------------------------------------------------------------
    def _forward(self, queue_id, recipient, sender_text, destinations, alias: AliasRecord | None,
                 header, body, receipt: Receipt, digest, turn) -> Outcome:
        loop = self._loop(header, recipient)
        if loop:
            _drain(body)
            log.warning("queue_id=%s to=<%s> from=<%s> discarded: %s", queue_id, recipient,
                        sender_text, loop)
            return Outcome(EX_OK, f"2.0.0 discarded: {loop}")
        header = hdr.make_field("Delivered-To", parse_envelope(recipient).smtp) + header
        edit, used, notes = None, [], ""
        if alias is not None and alias.replies_on and self.policy.reply_domain:
            edit, used = replying.forward_edit(self.service, alias, header, self.policy.reply_domain)
        if edit is not None and self.deliverability is None:
            header = b"".join(edit(hdr.split_fields(header))[0])
        if self.deliverability is not None:
            prepared = self.deliverability.prepare_forward(
                header, body, alias_address=alias.address if alias else recipient,
                from_rewrite=(alias and (alias.from_rewrite or alias.domain_from_rewrite))
                or FROM_REWRITE_DEFAULT,
                sign_domains=(parse_envelope(recipient).domain,
                              self.policy.srs.domain if self.policy.srs else ""),
                spf=_spf(receipt, sender_text), edit=edit)
            header, body, notes = prepared.header, prepared.body, prepared.notes
        envelope_sender = self._srs(sender_text)
        utf8 = receipt.smtputf8 or not envelope_sender.isascii() \
            or not all(d.isascii() for d in destinations)
        reply = self._send(envelope_sender, list(destinations), utf8, _chain([header], body),
                           turn)
        self._done(queue_id, recipient, receipt, digest, alias, forwarded=True, sender=sender_text,
                   also=replying.note_forwarded(used, self.service.clock()))
        return Outcome(EX_OK, f"2.0.0 forwarded ({reply})", notes)

    # -- replies through a reverse alias ---------------------------------------------
    def _reply(self, queue_id, recipient, sender, verdict, header, body, receipt, digest, turn,
               from_milter: bool) -> Outcome:
        alias, contact = verdict.alias, verdict.contact
        now = self.service.clock()
        try:
            prepared = replying.prepare(self.service, alias, contact, sender, header, body, now,
                                        checked=from_milter, keep_user_agent=self.keep_user_agent)
        except replying.Refused as exc:
            _drain(body)
            log.warning("queue_id=%s to=<%s> from=<%s> reply not sent: %s (it passed no milter, so "
                        "it is discarded, not bounced)", queue_id, recipient, sender, exc)
            self.service.reply_refused(alias, sender, str(exc))
            return Outcome(EX_OK, f"2.0.0 discarded: {exc}")
        out_header, out_body = prepared.header, prepared.body
        if self.deliverability is not None:
            signed = self.deliverability.sign_new(out_header, out_body, alias.domain)
            out_header, out_body = signed.header, signed.body
        envelope = contact.reply_address(self.policy.reply_domain)
        utf8 = receipt.smtputf8 or not contact.address.isascii()
        reply = self._send(envelope, [contact.address], utf8, _chain([out_header], out_body), turn)
        self._done(queue_id, recipient, receipt, digest, None, forwarded=False,
                   also=replying.note_replied(alias, contact, prepared, now))
        return Outcome(EX_OK, f"2.0.0 reply sent as {alias.address} ({reply})")

    def notify(self, alias: AliasRecord, subject: str, text: str) -> None:
        """A notice from tmail to an alias's destinations (a refused reply)."""
        if not alias.forwardable:
            return
        host = self.policy.srs.domain if self.policy.srs else self.helo
        message = mails.message(sender=self.notice_from, to=alias.forwardable, subject=subject,
                                body=text, now=self.service.clock(), host=host)
        if self.deliverability is not None:
            message = self.deliverability.sign_message(message, self.notice_from.rpartition("@")[2], host)
        self._sessions.transaction("", list(alias.forwardable), not all(d.isascii() for d in alias.forwardable),
                                   [message])

    def _loop(self, header: bytes, recipient: str) -> str | None:
        """A loop the milter could not refuse (no RCPT-time check ran)."""
        fields = hdr.split_fields(header)
        received = sum(1 for f in fields if hdr.name_of(f) == "received")
        if received > self.service.max_received:
            return f"mail forwarding loop ({received} Received fields)"
        mine = envelope_key(recipient)
        for field in fields:
            if hdr.name_of(field) == "delivered-to":
                try:
                    if envelope_key(hdr.value_of(field)) == mine:
                        return f"mail forwarding loop (Delivered-To: {recipient})"
                except AddressError:
                    continue
        return None

    def _srs(self, sender_text: str) -> str:
        """The envelope sender of the forwarded copy (the null sender stays)."""
        try:
            sender = parse_sender(sender_text)
        except AddressError:
            # Postfix queued it, so Postfix accepted it; it cannot be
            # rewritten, but the message is not lost for that.
            log.warning("sender <%s> cannot be rewritten: forwarded with the null sender",
                        sender_text)
            return ""
        if sender is None:
            return ""
        if self.policy.srs is None:
            raise RuntimeError("no SRS domain configured")
        local, _, domain = self.policy.srs.forward(sender.local, sender.domain).rpartition("@")
        return smtp_path(local, domain)

    # -- bounces -----------------------------------------------------------------------
    def _relay_bounce(self, queue_id, recipient, original, header, body, receipt, digest,
                      turn, about: str | None = None) -> Outcome:
        raw = _read_capped(_chain([header], body), MAX_BOUNCE_BYTES)
        with self.service.read() as store:
            # a notice names an alias only if it is one: the returned
            # headers are whatever the report's sender wrote
            now = self.service.clock()
            report = dsn.parse_report(raw, lambda address: _is_alias(store, self.policy, address, now))
        if report is None:
            log.info("queue_id=%s to=<%s> not a delivery status notification (an auto-reply?): "
                     "dropped, not passed on", queue_id, recipient)
            self._done(queue_id, recipient, receipt, digest, None, forwarded=False)
            return Outcome(EX_OK, "2.0.0 dropped: not a delivery status notification")
        assert self.policy.srs is not None
        if about is not None:
            report = dataclasses.replace(report, alias=about)
        notice = dsn.build_notice(report, to=original, reporting_domain=self.policy.srs.domain,
                                  now=self.service.clock())
        if self.deliverability is not None:
            notice = self.deliverability.sign_message(notice, self.policy.srs.domain)
        reply = self._send("", [original], not original.isascii(), [notice], turn)
        self._done(queue_id, recipient, receipt, digest, None, forwarded=False)
        return Outcome(EX_OK, f"2.0.0 bounce relayed ({reply})")

    # -- sending and recording --------------------------------------------------------
    def _send(self, sender: str, recipients: list[str], utf8: bool, chunks, turn: "_Turn") -> str:
        if not turn.wanted():
            raise Abandoned("the delivery agent stopped waiting")
        reply = self._sessions.transaction(sender, recipients, utf8, chunks, before_end=turn.wanted)
        turn.attempt.note_sent(turn.digest)     # before anything else can fail or wait
        return reply

    def _done(self, queue_id, recipient, receipt: Receipt, digest: str, alias: AliasRecord | None,
              forwarded: bool, sender: str = "", also=None) -> None:
        """Record the delivery; after a 250 the answer is success, whatever
        happens here. A message counted at RCPT time is not counted twice."""
        now = self.service.clock()

        def record(store):
            store.mark_forwarded(queue_id, receipt, digest, now)
            if forwarded:
                store.add_event(parse_envelope(recipient).domain, "forwarded", now)
            if alias is not None and store.touch_forwarded(alias, now, count=not receipt.counted):
                Accounts(store.conn).add_activity([(alias.id, now, _shown_sender(sender), "forward",
                                                    "forwarded")])
            if also is not None:
                also(store)
        # The message is out: without its record, a retry or another +tag of
        # the alias (waiting on this attempt's lock) would send it again.
        # So a database that is locked or away is waited for, within reason.
        given_up = time.monotonic() + RECORD_PATIENCE
        pause = 0.25
        while True:
            try:
                self.service.write(record)
                return
            except Exception as exc:
                if time.monotonic() + pause > given_up:
                    log.exception("queue_id=%s done, but recording it failed for %d s (a retry "
                                  "could repeat it)", queue_id, RECORD_PATIENCE)
                    return
                log.warning("queue_id=%s done, but recording it failed (%s: %s); trying again in "
                            "%g s", queue_id, type(exc).__name__, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


@dataclasses.dataclass
class _Turn:
    """One attempt at a message: whether its client still waits, and the
    held lock whose note says the message went out (shared_locks.Held)."""
    wanted: Callable[[], bool]
    attempt: Held
    digest: str = ""


def _shown_sender(sender: str) -> str:
    return "" if sender.upper() in ("", "<>", "MAILER-DAEMON") else sender


def _spf(receipt: Receipt, sender: str):
    """The SPF result the milter found, for Authentication-Results."""
    if receipt.spf is None:
        return None
    mailfrom = "" if sender in ("", "<>") or sender.upper() == "MAILER-DAEMON" else sender
    return Spf(receipt.spf, mailfrom, receipt.helo)


def _is_alias(store, policy, address: str, now) -> bool:
    try:
        verdict = resolve(_Lookup(store), policy, address, "", now)
    except AddressError:
        return False
    return verdict.alias is not None


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
