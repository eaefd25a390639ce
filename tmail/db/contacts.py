"""Contacts (reverse aliases) and the Message-ID mappings of replies, on
one Connection; the caller owns the transaction."""
from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa

from ..core.contacts import Contact, new_reply_local
from ..core.verdict import AliasRecord
from .schema import aliases, contacts, domains, message_ids, reply_notices
from .store import Store, from_db, to_db

MAX_ID = 255      # longer Message-IDs are kept as their hash


def id_key(message_id: str) -> str:
    if len(message_id.encode("utf-8")) <= MAX_ID:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode("utf-8")).hexdigest()


def _contact(row) -> Contact:
    return Contact(alias_id=row.alias_id, address=row.address, reply_local=row.reply_local,
                   name=row.name, id=row.id, created_at=from_db(row.created_at),
                   last_at=from_db(row.last_at), forwarded=row.forwarded, replied=row.replied)


class Contacts:
    def __init__(self, conn: sa.Connection):
        self.conn = conn
        self.store = Store(conn)

    def by_reply_local(self, reply_local: str) -> tuple[Contact, AliasRecord] | None:
        """The contact with this reverse alias, and its alias."""
        row = self.conn.execute(
            sa.select(contacts, aliases.c.local_key, domains.c.name.label("domain"))
            .join(aliases, aliases.c.id == contacts.c.alias_id)
            .join(domains, domains.c.id == aliases.c.domain_id)
            .where(contacts.c.reply_local == reply_local.lower())).first()
        if row is None:
            return None
        record = self.store.get_alias(row.local_key, row.domain)
        return (_contact(row), record) if record is not None else None

    def get(self, alias_id: int, address: str) -> Contact | None:
        row = self.conn.execute(sa.select(contacts).where(
            contacts.c.alias_id == alias_id, contacts.c.address_key == address.casefold())).first()
        return _contact(row) if row else None

    def get_by_id(self, contact_id: int) -> Contact | None:
        row = self.conn.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
        return _contact(row) if row else None

    def ensure(self, alias_id: int, address: str, name: str, now: datetime) -> tuple[Contact, bool]:
        """The alias's contact for `address`, made if new (and whether it was).
        Two deliveries making the same contact at once: the second finds the
        first's (the unique key decides, in a savepoint)."""
        found = self.get(alias_id, address)
        if found is not None:
            return found, False
        try:
            with self.conn.begin_nested():
                self.conn.execute(contacts.insert().values(
                    alias_id=alias_id, address=address, address_key=address.casefold(),
                    reply_local=new_reply_local(), name=name[:200], created_at=to_db(now),
                    forwarded=0, replied=0))
        except sa.exc.IntegrityError:
            pass
        made = self.get(alias_id, address)
        if made is None:
            raise RuntimeError(f"could not make a contact for {address}")
        return made, True

    def of_alias(self, alias_id: int, limit: int | None = None) -> list[Contact]:
        """The most recent first (at most `limit`)."""
        # the same order on every database (NULLs sort differently): never-used ones by creation
        recent = sa.func.coalesce(contacts.c.last_at, contacts.c.created_at)
        rows = self.conn.execute(sa.select(contacts).where(contacts.c.alias_id == alias_id)
                                 .order_by(recent.desc(), contacts.c.id.desc()).limit(limit))
        return [_contact(r) for r in rows]

    def count(self, alias_id: int) -> int:
        return self.conn.execute(sa.select(sa.func.count()).select_from(contacts)
                                 .where(contacts.c.alias_id == alias_id)).scalar_one()

    def remove(self, contact_id: int) -> None:
        self.conn.execute(contacts.delete().where(contacts.c.id == contact_id))

    def note_forward(self, contact_id: int, now: datetime) -> None:
        self.conn.execute(contacts.update().where(contacts.c.id == contact_id).values(
            forwarded=contacts.c.forwarded + 1, last_at=to_db(now)))

    def note_reply(self, contact_id: int, now: datetime) -> None:
        self.conn.execute(contacts.update().where(contacts.c.id == contact_id).values(
            replied=contacts.c.replied + 1, last_at=to_db(now)))

    # -- Message-IDs -------------------------------------------------------
    def remember_id(self, alias_id: int, theirs: str, ours: str, now: datetime) -> None:
        self.conn.execute(message_ids.insert().values(alias_id=alias_id, theirs=id_key(theirs),
                                                      ours=id_key(ours), created_at=to_db(now)))

    def ours_for(self, alias_id: int, theirs: list[str]) -> dict[str, str]:
        """The IDs the contacts saw for these of the person's own IDs."""
        keys = {id_key(t): t for t in theirs}
        if not keys:
            return {}
        rows = self.conn.execute(sa.select(message_ids.c.theirs, message_ids.c.ours).where(
            message_ids.c.alias_id == alias_id, message_ids.c.theirs.in_(list(keys))))
        return {keys[r.theirs]: r.ours for r in rows}

    def theirs_for(self, alias_id: int, ours: list[str]) -> dict[str, str]:
        """The person's own IDs behind these IDs the contacts saw (a hashed,
        over-long original cannot be given back and is left out)."""
        keys = {id_key(o): o for o in ours}
        if not keys:
            return {}
        rows = self.conn.execute(sa.select(message_ids.c.theirs, message_ids.c.ours).where(
            message_ids.c.alias_id == alias_id, message_ids.c.ours.in_(list(keys))))
        return {keys[r.ours]: r.theirs for r in rows if not r.theirs.startswith("sha256:")}

    def has_id(self, ours: str) -> bool:
        return self.conn.execute(sa.select(message_ids.c.id).where(
            message_ids.c.ours == id_key(ours))).first() is not None

    def forget_ids(self, before: datetime) -> int:
        return self.conn.execute(
            message_ids.delete().where(message_ids.c.created_at < to_db(before))).rowcount

    # -- notices of refused replies ----------------------------------------------
    def claim_notice(self, alias_id: int, now: datetime, every_seconds: int) -> bool:
        """Whether the owner may be told of a refused reply now (one notice
        per alias per `every_seconds`); claims it if so."""
        row = self.conn.execute(sa.select(reply_notices.c.sent_at).where(
            reply_notices.c.alias_id == alias_id).with_for_update()).first()
        if row is not None and (to_db(now) - row.sent_at).total_seconds() < every_seconds:
            return False
        if row is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(reply_notices.insert().values(alias_id=alias_id, sent_at=to_db(now)))
            except sa.exc.IntegrityError:
                return False       # another host claimed it this instant
        else:
            self.conn.execute(reply_notices.update().where(reply_notices.c.alias_id == alias_id)
                              .values(sent_at=to_db(now)))
        return True
