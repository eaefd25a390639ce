"""The alias store: every read and write tmail makes, on one Connection.

The caller owns the transaction (one per CLI command, one per lookup), so a
command either writes everything it meant to or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from ..core.address import local_key
from ..core.lifecycle import DomainSettings
from ..core.receipts import Receipt
from ..core.verdict import AliasRecord, OnExpiry, expiry_reason
from .schema import (
    activity,
    aliases,
    blocked_senders,
    contacts,
    destinations,
    domains,
    events,
    message_ids,
    receipts,
    reply_notices,
    retired,
    user_destinations,
)


class StoreError(Exception):
    """A request the data does not allow (not found, conflict)."""


def to_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)


def from_db(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class AliasFilter:
    domain: str | None = None
    state: str | None = None        # active | expired | disabled
    destination: str | None = None
    expiring_within: timedelta | None = None
    owner_id: int | None = None


_CHUNK = 500
_LOOKUP_BASE = (
    sa.select(aliases, domains.c.name.label("domain"),
              domains.c.from_rewrite.label("domain_from_rewrite"),
              domains.c.replies.label("domain_replies"))
    .join(domains, domains.c.id == aliases.c.domain_id)
)
# One round trip for the hot path: the alias with its destinations and
# blocked senders joined in (a handful of rows), not three queries.
# An owned alias forwards only to destinations its owner verified: the
# verification of each destination comes along in the same query.
_VERIFIED = sa.and_(user_destinations.c.user_id == aliases.c.owner_id,
                    user_destinations.c.address == destinations.c.address)
_LOOKUP = (
    _LOOKUP_BASE.add_columns(destinations.c.address.label("dest"), blocked_senders.c.pattern.label("block"),
                             user_destinations.c.verified_at.label("dest_verified"))
    .outerjoin(destinations, destinations.c.alias_id == aliases.c.id)
    .outerjoin(user_destinations, _VERIFIED)
    .outerjoin(blocked_senders, blocked_senders.c.alias_id == aliases.c.id)
    .where(domains.c.name == sa.bindparam("domain"), aliases.c.local_key == sa.bindparam("key"))
    .order_by(destinations.c.id, blocked_senders.c.pattern)
)

# The statements of every message's path, built once: building an
# expression and its cache key costs more than running it (75 us against
# 20 us for a receipt's SELECT on SQLite).
_DOMAIN_ID = sa.select(domains.c.id).where(domains.c.name == sa.bindparam("name"))
_HAS_RECEIPTS = sa.select(receipts.c.queue_id).where(receipts.c.queue_id == sa.bindparam("q")).limit(1)
_RECEIPT = sa.select(receipts).where(receipts.c.queue_id == sa.bindparam("q"),
                                     receipts.c.recipient == sa.bindparam("r"))
_FORWARDED_TO_ALIAS = sa.select(receipts.c.recipient).where(
    receipts.c.queue_id == sa.bindparam("q"), receipts.c.alias == sa.bindparam("a"),
    receipts.c.forwarded_at.is_not(None), receipts.c.digest == sa.bindparam("d")).limit(1)
_MARK_FORWARDED = receipts.update().where(
    receipts.c.queue_id == sa.bindparam("q"), receipts.c.recipient == sa.bindparam("r")).values(
    forwarded_at=sa.bindparam("at"), digest=sa.bindparam("d"), alias=sa.bindparam("a"))
_IS_THIS_ALIAS = (aliases.c.id == sa.bindparam("alias_id"),
                  aliases.c.local_key == sa.bindparam("key"),
                  aliases.c.created_at == sa.bindparam("created"))
_TOUCH = aliases.update().where(*_IS_THIS_ALIAS).values(last_forwarded_at=sa.bindparam("at"))
_TOUCH_AND_COUNT = _TOUCH.values(forwarded=aliases.c.forwarded + 1)
_RESERVE = (aliases.update().where(aliases.c.id == sa.bindparam("alias_id"))
            .where(sa.or_(aliases.c.max_messages.is_(None), aliases.c.forwarded < aliases.c.max_messages))
            .values(forwarded=aliases.c.forwarded + 1))
_ADD_EVENT = events.insert()
_ADD_RECEIPTS = receipts.insert()

# What goes with an alias (explicit deletes: SQLite without foreign_keys=ON
# and MariaDB's MyISAM would not cascade). A reverse alias of a removed
# alias must never carry a reply again.
_ALIAS_CHILDREN = (destinations, blocked_senders, activity, contacts, message_ids, reply_notices)


class Store:
    def __init__(self, conn: sa.Connection):
        self.conn = conn

    # -- domains ---------------------------------------------------------
    def domain_id(self, name: str) -> int | None:
        return self.conn.execute(_DOMAIN_ID, {"name": name}).scalar()

    def is_tmail_domain(self, name: str) -> bool:
        return self.domain_id(name) is not None

    def require_domain(self, name: str) -> int:
        found = self.domain_id(name)
        if found is None:
            raise StoreError(f"{name} is not a tmail domain (add it with `tmail domain add {name}`)")
        return found

    def domain_names(self) -> list[str]:
        return list(self.conn.execute(sa.select(domains.c.name).order_by(domains.c.name)).scalars())

    def add_domain(self, name: str, now: datetime) -> bool:
        """Add a domain; False if it was there already (idempotent)."""
        if self.domain_id(name) is not None:
            return False
        self.conn.execute(domains.insert().values(name=name, created_at=to_db(now), shared=False,
                                                  replies=False))
        return True

    def list_domains(self) -> list[dict]:
        count = sa.func.count(aliases.c.id)
        rows = self.conn.execute(
            sa.select(domains.c.name, domains.c.created_at, count.label("aliases"))
            .select_from(domains.outerjoin(aliases, aliases.c.domain_id == domains.c.id))
            .group_by(domains.c.id, domains.c.name, domains.c.created_at)
            .order_by(domains.c.name)
        )
        return [
            {"domain": r.name, "created_at": from_db(r.created_at), "aliases": r.aliases}
            for r in rows
        ]

    def remove_domain(self, name: str, force: bool) -> int:
        """Remove a domain; returns how many aliases went with it."""
        domain_id = self.require_domain(name)
        count = self.conn.execute(
            sa.select(sa.func.count()).where(aliases.c.domain_id == domain_id)
        ).scalar_one()
        if count and not force:
            raise StoreError(f"{name} still has {count} alias(es); remove them first or use --force")
        ids = sa.select(aliases.c.id).where(aliases.c.domain_id == domain_id).scalar_subquery()
        # Explicit deletes: SQLite without foreign_keys=ON and MariaDB's
        # MyISAM would not cascade.
        # (activity has no foreign key at all: a reused id must not inherit it)
        for child in _ALIAS_CHILDREN:
            self.conn.execute(child.delete().where(child.c.alias_id.in_(ids)))
        self.conn.execute(aliases.delete().where(aliases.c.domain_id == domain_id))
        self.conn.execute(domains.delete().where(domains.c.id == domain_id))
        return count

    # -- aliases ---------------------------------------------------------
    @staticmethod
    def _record(row, dests: tuple, blocks: tuple, unverified: tuple = ()) -> AliasRecord:
        return AliasRecord(
            id=row.id, local=row.local, domain=row.domain, destinations=dests,
            enabled=bool(row.enabled), created_at=from_db(row.created_at),
            expires_at=from_db(row.expires_at), max_messages=row.max_messages,
            idle_limit=timedelta(seconds=row.idle_seconds) if row.idle_seconds else None,
            on_expiry=OnExpiry(row.on_expiry), forwarded=row.forwarded, refused=row.refused,
            last_forwarded_at=from_db(row.last_forwarded_at), blocked=blocks, note=row.note,
            warned_for=from_db(row.warned_for), from_rewrite=row.from_rewrite,
            domain_from_rewrite=row.domain_from_rewrite, owner_id=row.owner_id,
            unverified=unverified if row.owner_id is not None else (),
            replies=None if row.replies is None else bool(row.replies),
            domain_replies=bool(row.domain_replies), display_name=row.display_name or "",
            reply_scrub=bool(row.reply_scrub),
        )

    def get_alias(self, key: str, domain: str) -> AliasRecord | None:
        """The alias with local part key `key` (local_key()) at `domain`."""
        rows = self.conn.execute(_LOOKUP, {"domain": domain, "key": key}).all()
        if not rows:
            return None
        dests = tuple(dict.fromkeys(r.dest for r in rows if r.dest is not None))
        blocks = tuple(sorted({r.block for r in rows if r.block is not None}))
        unverified = tuple(dict.fromkeys(r.dest for r in rows
                                         if r.dest is not None and r.dest_verified is None))
        return self._record(rows[0], dests, blocks, unverified)

    def get_contact(self, reply_local: str):
        """The contact with this reverse alias and its alias (the lookup port's; see db.contacts)."""
        from .contacts import Contacts
        return Contacts(self.conn).by_reply_local(reply_local)

    def require_alias(self, key: str, domain: str) -> AliasRecord:
        found = self.get_alias(key, domain)
        if found is None:
            raise StoreError(f"no alias {key}@{domain}")
        return found

    def aliases_by_key(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AliasRecord]:
        """Many aliases at once, by (local_key, domain): for bulk imports."""
        by_domain: dict[str, set[str]] = {}
        for key, domain in keys:
            by_domain.setdefault(domain, set()).add(key)
        rows = []
        for domain, wanted in by_domain.items():
            wanted = sorted(wanted)
            for start in range(0, len(wanted), _CHUNK):
                rows += self.conn.execute(
                    _LOOKUP_BASE.where(domains.c.name == domain,
                                       aliases.c.local_key.in_(wanted[start:start + _CHUNK]))).all()
        children = self._children([row.id for row in rows])
        return {(row.local_key, row.domain): self._record(row, *children.get(row.id, ((), (), ())))
                for row in rows}

    def _children(self, ids: list[int]) -> dict[int, tuple[tuple, tuple, tuple]]:
        dests: dict[int, list] = {}
        blocks: dict[int, list] = {}
        unverified: dict[int, list] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for alias_id, address, verified in self.conn.execute(
                    sa.select(destinations.c.alias_id, destinations.c.address, user_destinations.c.verified_at)
                    .join(aliases, aliases.c.id == destinations.c.alias_id)
                    .outerjoin(user_destinations, _VERIFIED)
                    .where(destinations.c.alias_id.in_(chunk)).order_by(destinations.c.id)):
                dests.setdefault(alias_id, []).append(address)
                if verified is None:
                    unverified.setdefault(alias_id, []).append(address)
            for alias_id, pattern in self.conn.execute(
                    sa.select(blocked_senders.c.alias_id, blocked_senders.c.pattern)
                    .where(blocked_senders.c.alias_id.in_(chunk)).order_by(blocked_senders.c.pattern)):
                blocks.setdefault(alias_id, []).append(pattern)
        return {i: (tuple(dests.get(i, ())), tuple(blocks.get(i, ())), tuple(unverified.get(i, ())))
                for i in ids}

    def add_aliases(self, records: list[AliasRecord]) -> None:
        """Insert many new aliases with few statements (executemany)."""
        domain_ids = {name: self.require_domain(name) for name in {r.domain for r in records}}
        for start in range(0, len(records), _CHUNK * 10):
            batch = records[start:start + _CHUNK * 10]
            self.conn.execute(aliases.insert(), [
                dict(domain_id=domain_ids[r.domain], local_key=local_key(r.local), **self._columns(r))
                for r in batch])
            ids = self.aliases_by_key([(local_key(r.local), r.domain) for r in batch])
            dest_rows, block_rows = [], []
            for r in batch:
                alias_id = ids[(local_key(r.local), r.domain)].id
                dest_rows += [{"alias_id": alias_id, "address": a} for a in r.destinations]
                block_rows += [{"alias_id": alias_id, "pattern": p} for p in sorted(set(r.blocked))]
            if dest_rows:
                self.conn.execute(destinations.insert(), dest_rows)
            if block_rows:
                self.conn.execute(blocked_senders.insert(), block_rows)

    def add_alias(self, record: AliasRecord) -> AliasRecord:
        domain_id = self.require_domain(record.domain)
        if self.get_alias(local_key(record.local), record.domain) is not None:
            raise StoreError(f"{record.address} exists already")
        alias_id = self.conn.execute(
            aliases.insert().values(domain_id=domain_id, local_key=local_key(record.local),
                                    **self._columns(record))
        ).inserted_primary_key[0]
        self._set_children(alias_id, record)
        return self.require_alias(local_key(record.local), record.domain)

    def replace_alias(self, record: AliasRecord) -> AliasRecord:
        """Write every setting of an existing alias (counters stay)."""
        values = self._columns(record)
        for counter in ("forwarded", "refused", "last_forwarded_at", "created_at", "warned_for"):
            values.pop(counter)
        self.conn.execute(aliases.update().where(aliases.c.id == record.id).values(**values))
        self._set_children(record.id, record)
        return self.require_alias(local_key(record.local), record.domain)

    @staticmethod
    def _columns(record: AliasRecord) -> dict:
        return dict(
            local=record.local, enabled=record.enabled, note=record.note,
            created_at=to_db(record.created_at), expires_at=to_db(record.expires_at),
            max_messages=record.max_messages,
            idle_seconds=int(record.idle_limit.total_seconds()) if record.idle_limit else None,
            on_expiry=record.on_expiry.value, forwarded=record.forwarded,
            refused=record.refused, last_forwarded_at=to_db(record.last_forwarded_at),
            warned_for=to_db(record.warned_for), from_rewrite=record.from_rewrite,
            owner_id=record.owner_id, replies=record.replies, display_name=record.display_name or None,
            reply_scrub=record.reply_scrub,
        )

    def _set_children(self, alias_id: int, record: AliasRecord) -> None:
        self.conn.execute(destinations.delete().where(destinations.c.alias_id == alias_id))
        self.conn.execute(blocked_senders.delete().where(blocked_senders.c.alias_id == alias_id))
        if record.destinations:
            self.conn.execute(destinations.insert(),
                              [{"alias_id": alias_id, "address": a} for a in record.destinations])
        if record.blocked:
            self.conn.execute(blocked_senders.insert(),
                              [{"alias_id": alias_id, "pattern": p} for p in sorted(set(record.blocked))])

    def remove_alias(self, record: AliasRecord, now: datetime) -> None:
        """Delete the alias and what was its (its activity too: SQLite reuses
        ids, and a new alias must not show an old one's senders); its address
        stays quarantined (see retire)."""
        for child in _ALIAS_CHILDREN:
            self.conn.execute(child.delete().where(child.c.alias_id == record.id))
        self.conn.execute(aliases.delete().where(aliases.c.id == record.id))
        self.retire(record.domain, local_key(record.local), now)

    def list_aliases(self, where: AliasFilter, now: datetime) -> list[AliasRecord]:
        return list(self.iter_aliases(where, now))

    def iter_aliases(self, where: AliasFilter, now: datetime, batch: int = 1000):
        """The aliases `where` selects, by domain then local part, read a batch
        at a time: memory stays bounded at 1,000,000 aliases. Each batch is
        an index range (domain, local_key > the last one), never a re-sort."""
        conditions = self._list_conditions(where, now)
        wanted = {"active": False, "expired": True}.get(where.state or "")
        domain_rows = self.conn.execute(sa.select(domains.c.id).where(
            *([domains.c.name == where.domain] if where.domain else [])).order_by(domains.c.name)).scalars().all()
        for domain_id in domain_rows:
            last = None
            while True:
                after = [aliases.c.local_key > last] if last is not None else []
                rows = self.conn.execute(_LOOKUP_BASE.where(*conditions, aliases.c.domain_id == domain_id, *after)
                                         .order_by(aliases.c.local_key).limit(batch)).all()
                if not rows:
                    break
                children = self._children([row.id for row in rows])
                for row in rows:
                    record = self._record(row, *children[row.id])
                    if wanted is None or (expiry_reason(record, now) is not None) == wanted:
                        yield record
                last = rows[-1].local_key

    def _list_conditions(self, where: AliasFilter, now: datetime) -> list:
        conditions = []
        if where.domain:
            conditions.append(domains.c.name == where.domain)
        if where.expiring_within is not None:
            conditions += [aliases.c.enabled == sa.true(), aliases.c.expires_at > to_db(now),
                           aliases.c.expires_at <= to_db(now + where.expiring_within)]
        if where.owner_id is not None:
            conditions.append(aliases.c.owner_id == where.owner_id)
        if where.destination:
            conditions.append(aliases.c.id.in_(
                sa.select(destinations.c.alias_id).where(destinations.c.address == where.destination)))
        if where.state == "disabled":
            conditions.append(aliases.c.enabled == sa.false())
        elif where.state in ("active", "expired"):
            conditions.append(aliases.c.enabled == sa.true())
        return conditions

    # -- counters (single conditional statements: no lost updates) --------
    def reserve(self, alias_id: int) -> bool:
        """Count one accepted message unless the alias's limit is reached.

        One conditional UPDATE, not read-then-write: of twenty concurrent
        messages to an alias allowed five, exactly five get True.
        """
        return self.conn.execute(_RESERVE, {"alias_id": alias_id}).rowcount == 1

    def release(self, alias_id: int) -> None:
        """Give back a reservation whose message was never accepted."""
        self.conn.execute(aliases.update()
                          .where(aliases.c.id == alias_id, aliases.c.forwarded > 0)
                          .values(forwarded=aliases.c.forwarded - 1))

    def touch_forwarded(self, alias: AliasRecord, now: datetime, count: bool = False) -> bool:
        """Note when the alias was last used (and count the message, for an
        alias without a limit, which reserve() did not count). False when it
        is gone: a forward can take minutes, and meanwhile the alias can be
        deleted and its id given to a new one, which must not be touched."""
        return self.conn.execute(_TOUCH_AND_COUNT if count else _TOUCH, {
            "alias_id": alias.id, "key": local_key(alias.local), "created": to_db(alias.created_at),
            "at": to_db(now)}).rowcount == 1

    def count_refused(self, alias_id: int) -> None:
        self.conn.execute(aliases.update().where(aliases.c.id == alias_id)
                          .values(refused=aliases.c.refused + 1))

    # -- receipts: the RCPT-time verdicts, and what the delivery did --------
    def record_receipts(self, queue_id: str, found: list[Receipt], now: datetime) -> None:
        """The milter's verdicts for one accepted message. Postfix gives a
        queue id to one queued message at a time, so whatever is stored for
        this id belongs to an earlier message that reused it: replaced."""
        # Checked first: a DELETE that finds nothing still takes gap locks on
        # MariaDB, and concurrent messages then deadlock on their inserts.
        if self.conn.execute(_HAS_RECEIPTS, {"q": queue_id}).first():
            self.conn.execute(receipts.delete().where(receipts.c.queue_id == queue_id))
        rows = {r.recipient: r for r in found}   # one row a recipient, the last verdict
        if rows:
            self.conn.execute(_ADD_RECEIPTS, [
                dict(queue_id=queue_id, recipient=r.recipient, verdict=r.verdict,
                     counted=r.counted, smtputf8=r.smtputf8, spf=r.spf, helo=r.helo[:255],
                     created_at=to_db(now), alias=r.alias or None) for r in rows.values()])

    def receipt(self, queue_id: str, recipient: str) -> Receipt | None:
        row = self.conn.execute(_RECEIPT, {"q": queue_id, "r": recipient}).first()
        if row is None:
            return None
        return Receipt(row.recipient, row.verdict, bool(row.counted), bool(row.smtputf8), row.spf,
                       row.helo, from_db(row.created_at), from_db(row.forwarded_at), row.digest,
                       row.alias or "")

    def forwarded_to_alias(self, queue_id: str, alias: str, digest: str) -> bool:
        """Whether this message already went out for the alias, for another
        of its addresses (alias+a and alias+b in one message: one copy)."""
        return self.conn.execute(_FORWARDED_TO_ALIAS,
                                 {"q": queue_id, "a": alias, "d": digest}).first() is not None

    def mark_forwarded(self, queue_id: str, receipt: Receipt, digest: str, now: datetime) -> None:
        """The message with this header digest went out for this recipient."""
        done = self.conn.execute(_MARK_FORWARDED, {"q": queue_id, "r": receipt.recipient, "at": to_db(now),
                                                   "d": digest, "a": receipt.alias or None})
        if done.rowcount == 0:     # no RCPT-time receipt: the delivery decided
            self.conn.execute(receipts.insert().values(
                queue_id=queue_id, recipient=receipt.recipient, verdict=receipt.verdict,
                counted=receipt.counted, smtputf8=receipt.smtputf8, spf=receipt.spf, helo="",
                created_at=to_db(now), forwarded_at=to_db(now), digest=digest, alias=receipt.alias or None))

    def forget_receipts(self, before: datetime) -> int:
        return self.conn.execute(
            receipts.delete().where(receipts.c.created_at < to_db(before))).rowcount

    # -- domain settings -------------------------------------------------
    def domain_settings(self, name: str) -> DomainSettings:
        self.require_domain(name)
        row = self.conn.execute(sa.select(domains).where(domains.c.name == name)).one()
        seconds = lambda v: timedelta(seconds=v) if v else None  # noqa: E731
        return DomainSettings(
            ttl=seconds(row.default_ttl_seconds), idle=seconds(row.default_idle_seconds),
            on_expiry=OnExpiry(row.default_on_expiry) if row.default_on_expiry else None,
            random_style=row.random_style, warn_before=seconds(row.warn_before_seconds),
            from_rewrite=row.from_rewrite, shared=bool(row.shared), replies=bool(row.replies))

    def set_domain_settings(self, name: str, settings: DomainSettings) -> None:
        seconds = lambda v: int(v.total_seconds()) if v else None  # noqa: E731
        self.conn.execute(domains.update().where(domains.c.name == name).values(
            default_ttl_seconds=seconds(settings.ttl), default_idle_seconds=seconds(settings.idle),
            default_on_expiry=settings.on_expiry.value if settings.on_expiry else None,
            random_style=settings.random_style, warn_before_seconds=seconds(settings.warn_before),
            from_rewrite=settings.from_rewrite, shared=settings.shared, replies=settings.replies))

    # -- lifecycle ---------------------------------------------------------
    def retired_at(self, domain: str, key: str) -> datetime | None:
        return from_db(self.conn.execute(
            sa.select(retired.c.retired_at).where(retired.c.domain == domain,
                                                  retired.c.local_key == key)).scalar())

    def retired_keys(self, domain: str, since: datetime) -> set[str]:
        return set(self.conn.execute(
            sa.select(retired.c.local_key).where(retired.c.domain == domain,
                                                 retired.c.retired_at > to_db(since))).scalars())

    def retire(self, domain: str, key: str, now: datetime) -> None:
        self.conn.execute(retired.delete().where(retired.c.domain == domain,
                                                 retired.c.local_key == key))
        self.conn.execute(retired.insert().values(domain=domain, local_key=key,
                                                  retired_at=to_db(now)))

    def forget_retired(self, before: datetime) -> int:
        return self.conn.execute(
            retired.delete().where(retired.c.retired_at < to_db(before))).rowcount

    def _records_where(self, *conditions) -> list[AliasRecord]:
        rows = self.conn.execute(
            _LOOKUP_BASE.where(*conditions).order_by(domains.c.name, aliases.c.local_key)).all()
        children = self._children([row.id for row in rows])
        return [self._record(row, *children[row.id]) for row in rows]

    def purge_candidates(self, now: datetime, grace: timedelta) -> list[AliasRecord]:
        """Aliases that may have expired more than `grace` ago (the core decides)."""
        return self._records_where(sa.or_(
            aliases.c.expires_at < to_db(now - grace),
            sa.and_(aliases.c.max_messages.is_not(None), aliases.c.forwarded >= aliases.c.max_messages),
            aliases.c.idle_seconds.is_not(None)))

    def warning_candidates(self, domain: str, now: datetime, until: datetime) -> list[AliasRecord]:
        return self._records_where(
            domains.c.name == domain, aliases.c.enabled == sa.true(),
            aliases.c.expires_at > to_db(now), aliases.c.expires_at <= to_db(until))

    def mark_warned(self, alias_id: int, expires_at: datetime) -> None:
        self.conn.execute(aliases.update().where(aliases.c.id == alias_id)
                          .values(warned_for=to_db(expires_at)))

    def add_event(self, domain: str, kind: str, now: datetime) -> None:
        self.conn.execute(_ADD_EVENT, {"domain": domain, "kind": kind, "at": to_db(now)})

    def event_counts(self, since: datetime) -> dict[tuple[str, str], int]:
        rows = self.conn.execute(
            sa.select(events.c.domain, events.c.kind, sa.func.count())
            .where(events.c.at >= to_db(since)).group_by(events.c.domain, events.c.kind))
        return {(domain, kind): n for domain, kind, n in rows}

    def forget_events(self, before: datetime) -> int:
        return self.conn.execute(events.delete().where(events.c.at < to_db(before))).rowcount

