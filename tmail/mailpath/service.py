"""The daemon's shared part: the database, the policy and the RCPT-time
verdicts the milter asks for.

One Service per daemon, shared by every thread: it holds one SQLAlchemy
Engine (a short connection per call, no thread-local sessions) and a pool
of threads of its own that run every database call. Each question the
milter asks is answered within `deadline` seconds, whatever the database
does (a held lock, a server that stops answering, an exhausted pool): past
it the milter answers 451, well before Postfix's milter command_timeout
would apply the milter's default_action (accept) to the rest of the
session. Whether a recipient is tmail's at all is Postfix's answer (the
transport it resolves the recipient to), so mail that is not tmail's
never waits for the database.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import sqlalchemy as sa

from ..core.address import parse_envelope
from ..core.durations import utcnow
from ..core.receipts import Receipt
from ..core.replyauth import Decision, Proof, authorise
from ..core.resolve import Policy, resolve
from ..core.verdict import Kind, OnExpiry, Verdict, expiry_reason
from ..db.accounts import Accounts
from ..db.contacts import Contacts
from ..db.store import Store

log = logging.getLogger("tmail")

DEFAULT_DEADLINE = 10.0     # seconds; Postfix's milter command_timeout is 20 s
_RETRIES = 3
DNS_THREADS = 8
MAX_SRS_FAILURES = 10          # invalid SRS addresses a client may try in a window ...
SRS_FAILURE_WINDOW = 600.0     # ... of this many seconds, then 450 for SRS addresses
MAX_SRS_CLIENTS = 10_000
MAX_PENDING_REFUSALS = 100_000
WRITER_LOCK = "sqlite writer"    # the SharedLocks name of the daemon's processes' SQLite writes


class DeadlineExceeded(Exception):
    """The database did not answer in time: the caller answers tempfail."""


class _Lookup:
    """The AliasLookup port over one connection. `counted`: aliases this
    message was counted against already (another +tag of theirs): they are
    judged as before that count, the message is one for them."""

    def __init__(self, store: Store, counted: frozenset = frozenset()):
        self.store, self.counted = store, counted

    def is_tmail_domain(self, name: str) -> bool:
        return self.store.is_tmail_domain(name)

    def get_alias(self, key, domain):
        record = self.store.get_alias(key, domain)
        if record is not None and record.id in self.counted:
            record = dataclasses.replace(record, forwarded=max(0, record.forwarded - 1))
        return record

    def get_contact(self, reply_local):
        return self.store.get_contact(reply_local)


class Service:
    def __init__(self, engine, policy: Policy, *, clock=utcnow, deadline: float = DEFAULT_DEADLINE,
                 spf_check=None, dmarc_check=None, dkim_check=None, authserv_id: str = "localhost",
                 max_received: int = 30, notice_every: float = 3600.0, locks=None):
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.deadline = deadline
        # spf_check(ip, sender, helo) -> Spf, for the milter (None: no SPF check);
        # dmarc_check(from_values, spf) -> dmarc.Result for unsigned mail (None: off).
        self.spf_check, self.dmarc_check = spf_check, dmarc_check
        # dkim_check(header, body_hashes) -> [DkimResult], for replies (None: no DKIM proof)
        self.dkim_check = dkim_check
        # notify(alias, subject, text): a notice to an alias's destinations
        # (set by the daemon, which can send mail; None: logged only)
        self.notify = None
        self.notice_every = notice_every
        self.authserv_id = authserv_id
        self.max_received = max_received
        # Database work runs on threads Python made, not on libmilter's own
        # threads: under load, SQLAlchemy's deep call stacks on libmilter's
        # threads crashed the interpreter (SIGSEGV, seen in the benchmark).
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="tmail-db")
        # DNS checks (SPF, DMARC) have threads of their own, and few: a sender
        # domain whose DNS never answers holds one for pyspf's whole query
        # time, and must not take the threads the verdicts need.
        self._dns_pool = ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="tmail-dns")
        self._dns_slots = threading.BoundedSemaphore(DNS_THREADS)
        # SQLite has one writer at a time; its busy handler retries with
        # sleeps, which under fifty parallel sessions ran past the busy
        # timeout ("database is locked"). The daemon's writers queue here
        # instead, in order, and SQLite's lock is then only contended by
        # the CLI.
        self._writer = threading.Lock() if engine.dialect.name == "sqlite" else None
        # ... and with the daemon's other processes (its LMTP workers) they
        # take turns through a lock the kernel hands on the moment it is
        # let go (tmail.mailpath.shared_locks), not through SQLite's busy
        # handler, which sleeps 1, 2, 5, 10 ms and more between tries
        # while the database may long have been free.
        self._locks = locks if self._writer is not None else None
        # Bounded: a flood of refused RCPTs faster than the database can
        # count them costs counts, not memory.
        self._refusals: queue.Queue = queue.Queue(maxsize=MAX_PENDING_REFUSALS)
        # Invalid SRS addresses tried, by client address: guessing the 4
        # characters of a hash (about 2 million values) takes one client
        # months at MAX_SRS_FAILURES a window, not an hour.
        self._srs_failures: dict[str, list[float]] = {}
        self._srs_lock = threading.Lock()
        # Counts taken at RCPT for sessions still open, by alias id.
        self._pending: Counter = Counter()
        self._pending_lock = threading.Lock()
        threading.Thread(target=self._record_refusals, name="tmail-stats", daemon=True).start()

    # -- running database work -------------------------------------------
    def ask(self, fn, *args, undo=None, deadline: float | None = None):
        """fn(*args) on the service's threads, answered within the deadline
        or DeadlineExceeded. Work that had not started by then never runs;
        work still running finishes later, and `undo(result)` then takes
        back what it did (a message counted for a 451)."""
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=deadline or self.deadline)
        except TimeoutError:
            if not future.cancel() and undo is not None:
                future.add_done_callback(
                    lambda done: done.exception() is None and undo(done.result()))
            raise DeadlineExceeded(f"{getattr(fn, '__name__', fn)} took longer than "
                                   f"{deadline or self.deadline:g} s") from None

    def ask_dns(self, fn, *args):
        """fn(*args) on the DNS threads, within half the deadline; when all
        are busy, DeadlineExceeded at once (the caller goes on without)."""
        if not self._dns_slots.acquire(blocking=False):
            raise DeadlineExceeded("every DNS thread is busy")
        try:
            future = self._dns_pool.submit(fn, *args)
        except BaseException:
            self._dns_slots.release()
            raise
        future.add_done_callback(lambda _done: self._dns_slots.release())
        try:
            return future.result(timeout=self.deadline / 2)
        except TimeoutError:
            raise DeadlineExceeded(f"{getattr(fn, '__name__', fn)} took longer than "
                                   f"{self.deadline / 2:g} s") from None

    def submit(self, fn, *args) -> None:
        """fn(*args) on the service's threads, without waiting for it."""
        self._pool.submit(fn, *args)

    def write(self, work):
        """work(store) in one write transaction, and its result. A deadlock
        or serialisation failure (MariaDB's gap locks, PostgreSQL under
        load) is retried: the database undid the transaction and says to
        run it again. On SQLite the daemon's writers queue in order."""
        for attempt in range(_RETRIES):
            try:
                if self._writer is None:
                    return self._transaction(work)
                if not self._writer.acquire(timeout=self.deadline):
                    raise DeadlineExceeded("waited too long for the SQLite writer")
                try:
                    if self._locks is None:
                        return self._transaction(work)
                    with self._locks.hold(WRITER_LOCK):
                        return self._transaction(work)
                finally:
                    self._writer.release()
            except sa.exc.DBAPIError as exc:
                if attempt + 1 == _RETRIES or not _retryable(exc):
                    raise
                log.info("database asked for a retry (%s); attempt %d", exc.orig, attempt + 2)
        raise AssertionError("unreachable")

    def _transaction(self, work):
        with self.engine.begin() as conn:
            return work(Store(conn))

    @contextlib.contextmanager
    def read(self):
        with self.engine.connect().execution_options(readonly=True) as conn:
            yield Store(conn)

    # -- verdicts ----------------------------------------------------------
    def verdict(self, recipient: str, sender: str, now: datetime | None = None, *,
                routed: bool = True, counted: frozenset = frozenset()) -> Verdict:
        """The verdict for a recipient Postfix routes to tmail. Raises
        AddressError for malformed input and database errors as they are."""
        now = now or self.clock()
        with self.read() as store:
            verdict = resolve(_Lookup(store, counted), self.policy, recipient, sender, now, routed=routed)
        if not verdict.accepts or verdict.drop:   # dropped: accepted, but not forwarded either
            self._refused(verdict, parse_envelope(recipient).domain, now, sender)
        return verdict

    def checked_verdict(self, recipient: str, sender: str, counted: frozenset = frozenset()) -> Verdict:
        """The milter's question: the verdict, with the message counted,
        unless it was for this alias already (`counted`: alias ids counted
        for this message: alias+a and alias+b are one message to one alias)."""
        verdict = self.verdict(recipient, sender, counted=counted)
        if verdict.alias is not None and verdict.alias.id in counted:
            return verdict
        return self._busy_if_pending(self.reserve(verdict, pending=True, sender=sender))

    def _busy_if_pending(self, verdict: Verdict) -> Verdict:
        """An alias at its limit only through messages whose sessions are
        still open (they may yet be aborted): a 451, not a 550, or a client
        that holds RCPTs open could keep everyone else refused for good."""
        if verdict.kind is not Kind.EXPIRED or verdict.alias is None:
            return verdict
        with self._pending_lock:
            waiting = self._pending.get(verdict.alias.id, 0)
        before = dataclasses.replace(verdict.alias, forwarded=max(0, verdict.alias.forwarded - waiting))
        if waiting and expiry_reason(before, self.clock()) is None:
            return Verdict(Kind.BUSY, f"at its limit while {waiting} message(s) to it are in progress",
                           alias=verdict.alias)
        return verdict

    def reserve(self, verdict: Verdict, now: datetime | None = None, pending: bool = False,
                sender: str = "") -> Verdict:
        """Count an accepted message against its alias before accepting it.

        The count is taken with one conditional UPDATE, so concurrent
        messages cannot overrun max_messages; if the last slot went
        meanwhile, the verdict becomes 'expired' (reject or drop).
        """
        if not counts(verdict):
            return verdict
        if self.write(lambda store: store.reserve(verdict.alias.id)):
            if pending:     # for a session still open: settle() or release() follows
                with self._pending_lock:
                    self._pending[verdict.alias.id] += 1
            return verdict
        alias = dataclasses.replace(verdict.alias, forwarded=verdict.alias.max_messages or 0)
        now = now or self.clock()
        reason = expiry_reason(alias, now) or "reached its message limit"
        expired = Verdict(Kind.EXPIRED, reason, drop=alias.on_expiry is OnExpiry.DROP, alias=alias)
        if not expired.accepts:
            self._refused(expired, alias.domain, now, sender)
        return expired

    def settle(self, alias_ids: list[int]) -> None:
        """The message these counts were taken for was accepted: they stand."""
        with self._pending_lock:
            for alias_id in alias_ids:
                self._pending[alias_id] -= 1
                if self._pending[alias_id] <= 0:
                    del self._pending[alias_id]

    def release(self, alias_ids: list[int]) -> None:
        """Give back the counts of a message that was not accepted after all."""
        if not alias_ids:
            return
        self.settle(alias_ids)
        try:
            self.write(lambda store: [store.release(alias_id) for alias_id in alias_ids])
        except Exception:
            log.exception("could not give back message counts %s", alias_ids)

    def record_arrival(self, queue_id: str, receipts: list[Receipt]) -> None:
        """The milter's verdicts for an accepted message, for its delivery."""
        self.write(lambda store: store.record_receipts(queue_id, receipts, self.clock()))

    # -- replies ---------------------------------------------------------------
    def contact_alias(self, reply_local: str) -> int | None:
        """The id of the alias whose reverse alias this is (None: none)."""
        with self.read() as store:
            found = Contacts(store.conn).by_reply_local(reply_local)
        return found[1].id if found else None

    def authorise_reply(self, alias, proof: Proof) -> Decision:
        return authorise(alias.forwardable, proof)

    def reply_refused(self, alias, sender: str, reason: str) -> None:
        """Note a refused reply in the alias's activity and tell its owner,
        at most once per notice_every (off the milter's thread)."""
        self.submit(self._note_refused_reply, alias, sender, reason)

    def _note_refused_reply(self, alias, sender: str, reason: str) -> None:
        now = self.clock()

        def note(store):
            Accounts(store.conn).add_activity([(alias.id, now, sender, "reply-refused", reason[:200])])
            return Contacts(store.conn).claim_notice(alias.id, now, int(self.notice_every))
        try:
            tell = self.write(note)
            if tell and self.notify is not None:
                self.notify(alias, f"A reply from {alias.address} was not sent",
                            f"A message sent to a reply address of {alias.address} was refused:\n\n"
                            f"    {reason}.\n\nIts envelope sender was <{sender}>. If you sent it, "
                            "the bounce from your own mail\nserver says the same; if you did not, "
                            "someone tried to write as\nyou, and nothing went out.\n\n"
                            f"(At most one such notice per alias every {int(self.notice_every // 60)} "
                            "minutes.)\n")
        except Exception:
            log.exception("could not note a refused reply for %s", alias.address)

    # -- throttling SRS guessing ----------------------------------------------
    def srs_throttled(self, client: str | None) -> bool:
        if not client:
            return False
        with self._srs_lock:
            return len(self._recent_srs_failures(client)) >= MAX_SRS_FAILURES

    def note_srs_failure(self, client: str | None) -> None:
        if not client:
            return
        with self._srs_lock:
            if len(self._srs_failures) > MAX_SRS_CLIENTS:   # a flood of addresses: forget the oldest
                for stale in sorted(self._srs_failures, key=lambda c: self._srs_failures[c][-1])[
                        :MAX_SRS_CLIENTS // 2]:
                    del self._srs_failures[stale]
            self._recent_srs_failures(client).append(time.monotonic())

    def _recent_srs_failures(self, client: str) -> list[float]:
        since = time.monotonic() - SRS_FAILURE_WINDOW
        recent = [t for t in self._srs_failures.get(client, ()) if t > since]
        self._srs_failures[client] = recent
        return recent

    # -- statistics, off the milter's path ---------------------------------
    def _refused(self, verdict: Verdict, domain: str, now: datetime, sender: str = "") -> None:
        """Count a refusal, and note it in the alias's activity (for its owner)."""
        try:
            self._refusals.put_nowait((domain, verdict.alias.id if verdict.alias else None, now,
                                       sender, verdict.kind.value, verdict.reason))
        except queue.Full:
            log.debug("refusal not counted: %d waiting to be written", MAX_PENDING_REFUSALS)

    def _record_refusals(self) -> None:
        """Refused RCPTs counted in batches by one thread: a stream of
        unknown addresses costs one write a batch, not one a recipient."""
        while True:
            batch = [self._refusals.get()]
            while len(batch) < 500:
                try:
                    batch.append(self._refusals.get_nowait())
                except queue.Empty:
                    break
            try:
                self.write(lambda store, batch=batch: _count_refusals(store, batch))
            except Exception:  # a counter must never hold up mail
                log.exception("could not count %d refused messages", len(batch))


def _count_refusals(store: Store, batch) -> None:
    rows = []
    for domain, alias_id, now, sender, kind, reason in batch:
        store.add_event(domain, "refused", now)
        if alias_id is not None:
            store.count_refused(alias_id)
            rows.append((alias_id, now, sender, kind, reason))
    Accounts(store.conn).add_activity(rows)


def _retryable(exc: "sa.exc.DBAPIError") -> bool:
    """MariaDB's 1213 (deadlock), PostgreSQL's 40001 (serialisation) and
    40P01 (deadlock). Not a lock wait timeout: that already took its time."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or (orig.args[0] if getattr(orig, "args", None) else None)
    return code in (1213, "40001", "40P01")


def counts(verdict: Verdict) -> bool:
    """Whether accepting this verdict takes one of the alias's messages."""
    return (verdict.kind is Kind.FORWARD and verdict.alias is not None
            and verdict.alias.max_messages is not None)
