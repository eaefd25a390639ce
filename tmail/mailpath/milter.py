"""The milter: RCPT-time verdicts, translated to SMTP replies.

Policy lives in the core (tmail.core.resolve); this class only turns
pymilter callbacks into Service calls and back.

Which recipients are tmail's is Postfix's answer, not the milter's: the
macros {rcpt_mailer} (the transport Postfix resolved the recipient to) and
{rcpt_addr} (the address it resolved it to) say where the message will go.
Every form of address that Postfix rewrites onto a tmail address (a
trailing dot, quoting, a source route, user%domain@host, bang paths, case)
thus gets the verdict of the address Postfix will deliver to, and a
recipient Postfix does not route to tmail is not touched (nor does it wait
for the database).

Callbacks are negotiated as few and as cheap as possible, since every one
is paid by all the mail the server takes, tmail's or not: CONNECT, HELO,
MAIL FROM and the header fields are 'no reply' (Postfix does not wait for
them); RCPT is answered; at DATA a message with no recipient of tmail's is
answered ACCEPT, and Postfix sends the milter nothing more of it (no header
fields, body or end of message). For tmail's messages the end is answered,
and the body read only for replies through a reverse alias (any other
message answers its first body chunk with SKIP).

A reply is accepted at RCPT if its reverse alias can carry one; who sent
it is decided at the end of data, where the whole message is known: its
DKIM signatures verified over the header (leading spaces and folding as
they came) and the body hashed as it streams past, with the client's SPF
result (tmail.core.replyauth). A refusal is an SMTP reply to the sending
server, never a bounce later.

At the end of a message to tmail's addresses, loops are refused (SMTP,
not a bounce later), the client's SPF result is taken, and the verdicts
are stored as receipts for the delivery, by queue id; the message itself
is not changed (other recipients share it).
"""
from __future__ import annotations

import dataclasses
import logging
import socket

import Milter

from ..core import headers as hdr
from ..core.address import AddressError, envelope_key, parse_envelope, parse_sender
from ..core.authresults import Spf
from ..core.loops import loop_reason
from ..core.receipts import Receipt, alias_key, stored_key, verdict_name
from ..core.replies import (
    BAD_RECIPIENT,
    BAD_SENDER,
    DMARC_REJECT,
    LOOP,
    SENDER_UNFORWARDABLE,
    SRS_THROTTLED,
    TEMPFAIL,
    Reply,
    reply_for,
    reply_refused,
)
from ..core.replyauth import Proof, check_reply_header
from ..core.replywrite import mailboxes
from ..core.resolve import delivered_address
from ..core.signing import body_hashes_for
from ..core.srs import forwardable_sender
from ..core.verdict import Kind
from .service import counts

log = logging.getLogger("tmail.milter")

TRANSPORT = "tmail"     # the master.cf service tmail's tables route to
RCPT_MACROS = ("{rcpt_addr}", "{rcpt_mailer}")
MAX_REPLY_HEADER = 1024 * 1024     # a reply's header block kept for DKIM (Postfix's header_size_limit is 100 KB)


def _unbracket(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


@Milter.header_leading_space     # header values exactly as they came: DKIM verifies them
class TmailMilter(Milter.Base):
    service = None  # set by make_factory

    def __init__(self):
        self.client_ip: str | None = None
        self.helo = ""
        self._reset("")

    # The macros each callback asks for, joined once for the class: pymilter's
    # own negotiate looked them up and joined them again on every connection.
    # They must be str: the milter module's setsymlist refuses bytes (pymilter's
    # TestCtx takes both), and a failed negotiation means all callbacks, every
    # one awaited (tests/test_milter_wire.py speaks the protocol to find out).
    _symlists: list[tuple[int, str]] | None = None
    _said_failed = False

    def negotiate(self, opts):
        cls = type(self)
        if cls._symlists is None:
            cls._symlists = [(stage, " ".join(syms))
                             for name, stage in Milter.MACRO_CALLBACKS.items()
                             if (syms := getattr(getattr(cls, name), "_symlist", None))]
        try:
            self._actions, protocol, _, _ = opts
            if not self._actions & Milter.SETSYMLIST:
                raise Milter.DisabledAction("SETSYMLIST")
            for stage, symbols in cls._symlists:
                self._ctx.setsymlist(stage, symbols)
            opts[1] = self._protocol = protocol & ~cls.protocol_mask()
            opts[2] = opts[3] = 0
        except Exception as exc:
            if not isinstance(exc, Milter.DisabledAction) and not cls._said_failed:
                cls._said_failed = True     # once: it fails alike for every connection
                log.exception("milter negotiation failed: every callback is sent and awaited")
            return Milter.ALL_OPTS     # as pymilter's: change nothing
        return Milter.CONTINUE

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        # Postfix sends no {client_addr} with RCPT when asked (tried): the
        # client's address comes here, without Postfix waiting for an answer.
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            # libmilter gives (address, port, ...); pymilter's TestCtx the address alone
            self.client_ip = hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr
        return Milter.CONTINUE

    def _reset(self, sender: str):
        self.sender = sender
        self.resolved_sender: str | None = None
        self.smtputf8 = False
        self.receipts: list[Receipt] = []   # tmail's accepted recipients of this message
        self.reserved: list[int] = []       # aliases counted for this message
        self.received = 0
        self.delivered_to: list[str] = []
        self.from_values: list[str] = []
        self.signed = False          # a DKIM signature or an ARC set: DMARC waits for the delivery
        self.authenticated = False   # SASL-authenticated client
        self.replies: list = []      # verdicts of reverse aliases: who sent it is checked at the end
        self.reply_header: list[bytes] = []
        self.reply_header_size = 0
        self.body_hashes = None     # a reply's, taken as its body streams past

    @Milter.noreply
    def hello(self, hostname):
        self.helo = hostname or ""
        return Milter.CONTINUE

    @Milter.noreply  # never refuses a sender: Postfix need not wait for an answer
    @Milter.symlist("{mail_addr}", "{auth_authen}")
    def envfrom(self, sender, *params):
        self._release()
        authenticated = bool(self.getsymval("{auth_authen}"))
        self._reset(_unbracket(sender))
        # the sender as Postfix will queue it, worked out at the first
        # recipient of tmail's (most mail has none)
        self.resolved_sender = self.getsymval("{mail_addr}")
        self.authenticated = authenticated
        self.smtputf8 = any(p.strip().upper() == "SMTPUTF8" for p in params)
        return Milter.CONTINUE

    def _queued_sender(self) -> None:
        if self.sender and self.resolved_sender:
            try:
                self.sender = delivered_address(self.sender, self.resolved_sender)
            except AddressError:
                pass     # refused below
        self.resolved_sender = None

    @Milter.symlist(*RCPT_MACROS)
    def envrcpt(self, recipient, *params):
        raw = _unbracket(recipient)
        mailer, resolved = self.getsymval("{rcpt_mailer}"), self.getsymval("{rcpt_addr}")
        if mailer is None or resolved is None:
            # We ask for both macros (setsymlist): an MTA that does not send
            # them cannot say where mail goes, and guessing could let a
            # recipient past the check.
            log.error("rcpt=<%s> the MTA sent no {rcpt_mailer}/{rcpt_addr}: tempfail", raw)
            return self._answer(TEMPFAIL, Milter.TEMPFAIL)
        if mailer != TRANSPORT:
            log.debug("rcpt=<%s> from=<%s> verdict=not-ours transport=%s", raw, self.sender, mailer)
            return Milter.CONTINUE
        self._queued_sender()
        try:
            parse_sender(self.sender)
        except AddressError as exc:
            log.info("rcpt=<%s> from=<%s> verdict=malformed reason=sender: %s", raw,
                     self.sender, exc)
            return self._answer(BAD_SENDER, Milter.REJECT)
        if not forwardable_sender(self.service.policy.srs, self.sender):
            # accepted, it could never be sent on: it would wait in the queue until it expired
            log.info("rcpt=<%s> from=<%s> verdict=refused reason=sender too long to forward",
                     raw, self.sender)
            return self._answer(SENDER_UNFORWARDABLE, Milter.REJECT)
        try:
            address = delivered_address(raw, resolved)
            srs = self.service.policy.srs
            if srs is not None and parse_envelope(address).domain == srs.domain \
                    and self.service.srs_throttled(self.client_ip):
                log.info("rcpt=<%s> from=<%s> verdict=throttled client=%s", address, self.sender,
                         self.client_ip)
                return self._answer(SRS_THROTTLED)
            key = stored_key(envelope_key(address))
            if any(r.recipient == key for r in self.receipts):
                # Postfix delivers one copy a recipient however often it is
                # named: counting it again would spend the alias's limit
                return Milter.CONTINUE
            counted = frozenset(self.reserved)
            verdict = self.service.ask(self.service.checked_verdict, address, self.sender, counted,
                                       undo=lambda late: self._late_release(late, counted))
        except AddressError as exc:
            log.info("rcpt=<%s> from=<%s> verdict=malformed reason=%s", raw,
                     self.sender, exc)
            return self._answer(BAD_RECIPIENT, Milter.REJECT)
        except Exception as exc:
            log.warning("rcpt=<%s> from=<%s> verdict=tempfail (%s: %s)", raw,
                        self.sender, type(exc).__name__, exc)
            return self._answer(TEMPFAIL, Milter.TEMPFAIL)
        reply = reply_for(verdict)
        if verdict.kind is Kind.SRS_INVALID:
            self.service.note_srs_failure(self.client_ip)
        log.info("rcpt=<%s> from=<%s> verdict=%s reason=%s%s", address, self.sender,
                 verdict.kind.value, verdict.reason, " (drop)" if verdict.drop else "")
        if reply is not None:
            return self._answer(reply)
        if verdict.kind is Kind.REPLY:
            self.replies.append(verdict)
        now_counted = counts(verdict) and verdict.alias.id not in counted
        if now_counted:
            self.reserved.append(verdict.alias.id)
        self.receipts.append(Receipt(key, verdict_name(verdict), counted=now_counted,
                                     smtputf8=self.smtputf8,
                                     alias=alias_key(verdict.alias.address) if verdict.alias else ""))
        return Milter.CONTINUE

    def data(self):
        if not self.receipts:
            # None of tmail's: Postfix sends nothing more of this message
            # (its header fields, body and end), at the cost of this one answer.
            return Milter.ACCEPT
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        if self.replies and self.reply_header_size < MAX_REPLY_HEADER:
            raw = name.encode("utf-8", "surrogateescape") + b":" + \
                value.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n") + b"\n"
            self.reply_header.append(raw)
            self.reply_header_size += len(raw)
        if self.receipts:        # only tmail's mail is looked at
            lname = name.lower()
            if lname == "received":
                self.received += 1
            elif lname == "delivered-to":
                self.delivered_to.append(value)
            elif lname == "from":
                self.from_values.append(value)
            elif lname in ("dkim-signature", "arc-seal"):
                self.signed = True
        return Milter.CONTINUE

    def body(self, chunk):
        if not self.replies:
            return Milter.SKIP
        if self.body_hashes is None:
            self.body_hashes = body_hashes_for(b"".join(self.reply_header))
        self.body_hashes.update(chunk)
        return Milter.CONTINUE

    # End of message, abort and close are always called (not negotiable):
    # the counts taken at RCPT time stand only if the message was
    # accepted, and are given back otherwise.
    @Milter.symlist("i")
    def eom(self):
        if not self.receipts:
            return Milter.CONTINUE
        service = self.service
        # Postfix adds its own Received field after this: count it.
        loop = loop_reason(self.received + 1, service.max_received, self.delivered_to,
                           [r.recipient for r in self.receipts])
        if loop:
            log.info("from=<%s> message refused: %s", self.sender, loop)
            self._release()
            return self._answer(LOOP, Milter.REJECT)
        queue_id = self.getsymval("i")
        spf, dmarc_result = self._dns_checks()
        if self._spoofed(spf, dmarc_result):
            self._release()
            return self._answer(DMARC_REJECT, Milter.REJECT)
        if self.replies:
            refused = self._reply_refused(spf)
            if refused is not None:
                self._release()
                return self._answer(refused)
        receipts = [dataclasses.replace(r, spf=spf.result if spf else None, helo=self.helo)
                    for r in self.receipts]
        try:
            if not queue_id:
                raise RuntimeError("the MTA sent no queue id ({i})")
            service.ask(service.record_arrival, queue_id, receipts)
        except Exception as exc:
            log.warning("from=<%s> verdicts not recorded (%s: %s): tempfail",
                        self.sender, type(exc).__name__, exc)
            self._release()
            return self._answer(TEMPFAIL, Milter.TEMPFAIL)
        service.settle(self.reserved)
        self.reserved.clear()       # the message is accepted: its counts stand
        return Milter.CONTINUE

    def abort(self):
        self._release()
        return Milter.CONTINUE

    def close(self):
        return self.abort()

    # -- helpers ---------------------------------------------------------------
    def _answer(self, reply: Reply, code=None):
        self.setreply(reply.code, reply.xcode, reply.text.replace("%", "%%"))
        if code is None:
            code = Milter.TEMPFAIL if reply.code.startswith("4") else Milter.REJECT
        return code

    def _dns_checks(self):
        """The client's SPF result, and for an unsigned message to an alias
        DMARC's verdict on it (None: not checked), in one trip to the DNS
        threads (each trip is a thread handoff both ways, about a tenth of
        what the milter costs a message). A slow DNS gives SPF temperror
        and no DMARC verdict, never a 451; an SPF result found in time is
        kept when DMARC is not."""
        service = self.service
        if service.spf_check is None or not self.client_ip:
            return None, None
        wants_dmarc = (service.dmarc_check is not None and not self.signed
                       and any(r.verdict == Kind.FORWARD.value for r in self.receipts))
        found: dict = {}

        def check():
            found["spf"] = spf = service.spf_check(self.client_ip, self.sender, self.helo)
            if wants_dmarc:
                try:
                    found["dmarc"] = service.dmarc_check(self.from_values, spf)
                except Exception as exc:
                    log.info("from=<%s> DMARC not checked (%s)", self.sender, exc)
        try:
            service.ask_dns(check)
        except Exception as exc:
            log.info("from=<%s> SPF or DMARC not checked (%s)", self.sender, exc)
        return found.get("spf") or Spf("temperror", self.sender, self.helo), found.get("dmarc")

    def _spoofed(self, spf: Spf | None, result) -> bool:
        """A message for an alias with no signature that fails DMARC of a
        From domain asking for reject: refused now, as that domain asks (later
        it could only be forwarded to a mailbox that bounces it)."""
        if spf is None or result is None or result.result != "fail" or result.policy != "reject":
            return False
        log.info("from=<%s> message refused: DMARC fails for %s (p=reject, %s)", self.sender,
                 result.from_domain, spf.clause())
        return True

    def _reply_refused(self, spf: Spf | None) -> Reply | None:
        """Why a reply may not go out (None: it may). Every reverse alias of
        one message belongs to one alias; its To and Cc name only reverse
        aliases of that alias; and it comes from a destination of the alias,
        proven (tmail.core.replyauth)."""
        service = self.service
        alias = self.replies[0].alias
        if any(v.alias.id != alias.id for v in self.replies):
            return self._refuse_reply(alias, "a reply goes out from one alias at a time; "
                                             "write to each contact separately")
        header = b"".join(self.reply_header)
        fields = hdr.split_fields(header)
        try:
            problem = service.ask(check_reply_header, fields, service.policy.reply_domain,
                                  lambda local: service.contact_alias(local) == alias.id)
        except Exception as exc:
            log.warning("from=<%s> reply not checked (%s: %s): tempfail", self.sender,
                        type(exc).__name__, exc)
            return TEMPFAIL
        if problem:
            return self._refuse_reply(alias, problem)
        hashes = self.body_hashes or body_hashes_for(header)
        try:
            dkim_results = service.ask_dns(service.dkim_check, header, hashes.finish()) \
                if service.dkim_check else []
        except Exception as exc:
            log.info("from=<%s> DKIM of a reply not checked (%s)", self.sender, exc)
            return reply_refused("its DKIM signatures could not be checked now", temporary=True)
        decision = service.authorise_reply(alias, Proof(
            self.sender, tuple(mailboxes(fields, "from") or ()), spf.result if spf else "none",
            spf.domain if spf else "", tuple(dkim_results), self.authenticated))
        log.info("from=<%s> reply through %s: %s (%s)", self.sender, alias.address,
                 "allowed" if decision.allowed else "refused", decision.told)
        if decision.allowed:
            return None
        if decision.temporary:
            return reply_refused(decision.reason, temporary=True)
        return self._refuse_reply(alias, decision.reason, decision.told)

    def _refuse_reply(self, alias, reason: str, told: str = "") -> Reply:
        """`reason` goes back to the sending server; `told` (what exactly
        failed) only to the log and the alias's owner."""
        log.info("from=<%s> reply through %s refused: %s", self.sender, alias.address, told or reason)
        self.service.reply_refused(alias, self.sender, told or reason)
        return reply_refused(reason)

    def _release(self):
        if self.reserved:   # off libmilter's thread, without waiting
            self.service.submit(self.service.release, list(self.reserved))
            self.reserved.clear()

    def _late_release(self, verdict, counted: frozenset):
        """A verdict that came after the milter had answered 451 took a
        message count for a message that was refused: give it back."""
        if counts(verdict) and verdict.alias.id not in counted:
            self.service.submit(self.service.release, [verdict.alias.id])


def make_factory(service):
    cls = type("BoundTmailMilter", (TmailMilter,), {"service": service})
    return cls
