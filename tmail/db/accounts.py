"""The accounts store: users, their domains and destinations, one-time
tokens, web sessions, recovery codes, sign-in failures and alias activity,
on one Connection (the caller owns the transaction, as with Store).

Every query that reads a user's things takes the user's id: what belongs
to someone else is never found, rather than found and then refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.accounts import (
    RESET_PASSWORD,
    SET_PASSWORD,
    Destination,
    User,
    new_token,
    token_hash,
)
from ..core.address import local_key
from ..core.verdict import AliasRecord
from .schema import (
    activity,
    alias_creations,
    aliases,
    destinations,
    domains,
    login_failures,
    recovery_codes,
    tokens,
    user_destinations,
    user_domains,
    users,
    web_sessions,
)
from .store import Store, from_db, to_db

SESSION_TOUCH = timedelta(minutes=5)   # last_seen is written at most this often
COUNT_UP_TO = 1000                     # a list's total is exact up to this
_ADD_ACTIVITY = activity.insert()      # built once: every forward adds a row


@dataclass(frozen=True)
class Session:
    id_hash: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    client: str
    user_agent: str


@dataclass(frozen=True)
class Activity:
    at: datetime
    sender: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class AliasPage:
    aliases: list[AliasRecord]
    total: int                      # counted up to owned_aliases(count_up_to=)
    more_than_total: bool = False   # ... and there are more
    has_next: bool = False          # another page follows


class Accounts:
    def __init__(self, conn: sa.Connection):
        self.conn = conn

    # -- users ---------------------------------------------------------------
    def _user(self, row) -> User:
        names = tuple(self.conn.execute(
            sa.select(domains.c.name).join(user_domains, user_domains.c.domain_id == domains.c.id)
            .where(user_domains.c.user_id == row.id).order_by(domains.c.name)).scalars())
        return User(row.id, row.email, bool(row.is_admin), bool(row.enabled), row.max_aliases,
                    row.max_per_hour, row.password_hash, row.totp_secret, from_db(row.created_at),
                    from_db(row.password_changed_at), from_db(row.last_login_at), names,
                    api_ttl=timedelta(seconds=row.api_ttl_seconds) if row.api_ttl_seconds else None,
                    api_domain=row.api_domain)

    def user(self, user_id: int) -> User | None:
        row = self.conn.execute(sa.select(users).where(users.c.id == user_id)).first()
        return self._user(row) if row else None

    def user_by_email(self, email: str) -> User | None:
        row = self.conn.execute(sa.select(users).where(users.c.email == email.casefold())).first()
        return self._user(row) if row else None

    def list_users(self) -> list[User]:
        return [self._user(row) for row in self.conn.execute(sa.select(users).order_by(users.c.email))]

    def add_user(self, email: str, now: datetime, *, is_admin: bool = False,
                 max_aliases: int | None = None, max_per_hour: int | None = None) -> User:
        user_id = self.conn.execute(users.insert().values(
            email=email.casefold(), is_admin=is_admin, enabled=True, max_aliases=max_aliases,
            max_per_hour=max_per_hour, created_at=to_db(now))).inserted_primary_key[0]
        found = self.user(user_id)
        assert found is not None
        return found

    def set_user(self, user_id: int, **values) -> None:
        allowed = {"is_admin", "enabled", "max_aliases", "max_per_hour", "totp_secret", "last_login_at",
                   "api_ttl_seconds", "api_domain"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not a user setting: {', '.join(sorted(unknown))}")
        if "last_login_at" in values:
            values["last_login_at"] = to_db(values["last_login_at"])
        self.conn.execute(users.update().where(users.c.id == user_id).values(**values))

    def set_password(self, user_id: int, password_hash: str, now: datetime) -> None:
        """A new password ends every session of the user, and every password
        link still out (one mailed earlier must not undo this one)."""
        self.conn.execute(users.update().where(users.c.id == user_id).values(
            password_hash=password_hash, password_changed_at=to_db(now)))
        self.end_sessions(user_id)
        self.conn.execute(tokens.update().where(
            tokens.c.user_id == user_id, tokens.c.kind.in_((SET_PASSWORD, RESET_PASSWORD)),
            tokens.c.used_at.is_(None)).values(used_at=to_db(now)))

    def lock_user(self, user_id: int) -> None:
        """Hold the user's row until the transaction ends: what counts
        against their limits (creations, sign-in failures) is then checked
        and written by one request at a time. (SQLite's BEGIN IMMEDIATE
        serialises writers already; PostgreSQL and MariaDB need this.)"""
        self.conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())

    def lock_owned_alias(self, user_id: int, alias_id: int) -> None:
        """Before a change to an alias: the user's row, then the alias's, held
        to the end of the transaction, so that the alias is read after any
        change made meanwhile and written back without undoing it."""
        self.lock_user(user_id)
        self.conn.execute(sa.select(aliases.c.id).where(aliases.c.id == alias_id, aliases.c.owner_id == user_id)
                          .with_for_update())

    def own_destination(self, user: User) -> Destination | None:
        """The destination that is the account's own address (as it was typed
        and verified: the account's name is case-folded)."""
        return next((d for d in self.destinations(user.id) if d.address.casefold() == user.email), None)

    def rehash_password(self, user_id: int, password_hash: str) -> None:
        """The same password under new argon2 parameters: sessions stay."""
        self.conn.execute(users.update().where(users.c.id == user_id).values(password_hash=password_hash))

    def set_user_domains(self, user_id: int, names: list[str]) -> None:
        self.conn.execute(user_domains.delete().where(user_domains.c.user_id == user_id))
        ids = [Store(self.conn).require_domain(name) for name in names]
        if ids:
            self.conn.execute(user_domains.insert(), [{"user_id": user_id, "domain_id": i} for i in ids])

    def remove_user(self, user_id: int) -> None:
        """The user and everything that is only theirs (their aliases are the
        caller's to remove first: they keep a quarantine)."""
        for table in (user_domains, user_destinations, web_sessions, recovery_codes, tokens):
            self.conn.execute(table.delete().where(table.c.user_id == user_id))
        self.conn.execute(users.delete().where(users.c.id == user_id))

    def shared_domains(self) -> frozenset[str]:
        return frozenset(self.conn.execute(
            sa.select(domains.c.name).where(domains.c.shared == sa.true())).scalars())

    # -- destinations ----------------------------------------------------------
    @staticmethod
    def _destination(row) -> Destination:
        return Destination(row.id, row.user_id, row.address, from_db(row.created_at),
                           from_db(row.verified_at), from_db(row.last_sent_at))

    def destinations(self, user_id: int) -> list[Destination]:
        return [self._destination(row) for row in self.conn.execute(
            sa.select(user_destinations).where(user_destinations.c.user_id == user_id)
            .order_by(user_destinations.c.address))]

    def destination(self, user_id: int, destination_id: int) -> Destination | None:
        row = self.conn.execute(sa.select(user_destinations).where(
            user_destinations.c.user_id == user_id, user_destinations.c.id == destination_id)).first()
        return self._destination(row) if row else None

    def destination_by_address(self, user_id: int, address: str) -> Destination | None:
        row = self.conn.execute(sa.select(user_destinations).where(
            user_destinations.c.user_id == user_id, user_destinations.c.address == address)).first()
        return self._destination(row) if row else None

    def add_destination(self, user_id: int, address: str, now: datetime,
                        verified: bool = False) -> Destination:
        found = self.destination_by_address(user_id, address)
        if found is None:
            self.conn.execute(user_destinations.insert().values(
                user_id=user_id, address=address, created_at=to_db(now),
                verified_at=to_db(now) if verified else None))
        elif verified and not found.verified:
            self.verify_destination(user_id, address, now)
        result = self.destination_by_address(user_id, address)
        assert result is not None
        return result

    def verify_destination(self, user_id: int, address: str, now: datetime) -> None:
        self.conn.execute(user_destinations.update().where(
            user_destinations.c.user_id == user_id, user_destinations.c.address == address)
            .values(verified_at=to_db(now)))

    def mark_sent(self, destination_id: int, now: datetime) -> None:
        self.conn.execute(user_destinations.update().where(user_destinations.c.id == destination_id)
                          .values(last_sent_at=to_db(now)))

    def remove_destination(self, user_id: int, destination_id: int) -> None:
        self.conn.execute(user_destinations.delete().where(
            user_destinations.c.user_id == user_id, user_destinations.c.id == destination_id))

    # -- one-time tokens -----------------------------------------------------------
    def issue_token(self, kind: str, user_id: int | None, subject: str, now: datetime,
                    lifetime: timedelta) -> str:
        token, hashed = new_token()
        self.conn.execute(tokens.insert().values(
            token_hash=hashed, kind=kind, user_id=user_id, subject=subject, created_at=to_db(now),
            expires_at=to_db(now + lifetime)))
        return token

    def peek_token(self, kind: str, token: str, now: datetime) -> tuple[int | None, str] | None:
        """(user id, subject) of a valid, unused token, without using it."""
        row = self.conn.execute(sa.select(tokens).where(
            tokens.c.token_hash == token_hash(token), tokens.c.kind == kind,
            tokens.c.used_at.is_(None), tokens.c.expires_at > to_db(now))).first()
        return (row.user_id, row.subject) if row else None

    def use_token(self, kind: str, token: str, now: datetime) -> tuple[int | None, str] | None:
        """Use a token once: (user id, subject), or None when it is unknown,
        used or expired. One conditional UPDATE: two uses at once, one wins."""
        found = self.peek_token(kind, token, now)
        if found is None:
            return None
        done = self.conn.execute(tokens.update().where(
            tokens.c.token_hash == token_hash(token), tokens.c.used_at.is_(None))
            .values(used_at=to_db(now)))
        return found if done.rowcount == 1 else None

    def forget_tokens(self, before: datetime) -> int:
        return self.conn.execute(tokens.delete().where(tokens.c.expires_at < to_db(before))).rowcount

    # -- web sessions ----------------------------------------------------------------
    def new_session(self, user_id: int, now: datetime, lifetime: timedelta, client: str,
                    user_agent: str) -> str:
        """A session id for the cookie; only its hash is stored."""
        session_id, hashed = new_token()
        self.conn.execute(web_sessions.insert().values(
            id_hash=hashed, user_id=user_id, created_at=to_db(now), last_seen_at=to_db(now),
            expires_at=to_db(now + lifetime), client=client[:64], user_agent=user_agent[:200]))
        return session_id

    def session(self, session_id: str, now: datetime) -> Session | None:
        """The live session of a cookie value. Only reads: pages are read in
        read-only transactions; touch_session() writes last_seen_at."""
        row = self.conn.execute(sa.select(web_sessions).where(
            web_sessions.c.id_hash == token_hash(session_id),
            web_sessions.c.expires_at > to_db(now))).first()
        return self._session(row) if row else None

    @staticmethod
    def touch_due(session: Session, now: datetime) -> bool:
        return now - session.last_seen_at > SESSION_TOUCH

    def touch_session(self, id_hash: str, now: datetime) -> None:
        self.conn.execute(web_sessions.update().where(web_sessions.c.id_hash == id_hash)
                          .values(last_seen_at=to_db(now)))

    @staticmethod
    def _session(row) -> Session:
        return Session(row.id_hash, row.user_id, from_db(row.created_at), from_db(row.last_seen_at),
                       from_db(row.expires_at), row.client, row.user_agent)

    def sessions(self, user_id: int) -> list[Session]:
        return [self._session(row) for row in self.conn.execute(
            sa.select(web_sessions).where(web_sessions.c.user_id == user_id)
            .order_by(web_sessions.c.last_seen_at.desc()))]

    def user_session(self, user_id: int, id_hash: str) -> Session | None:
        row = self.conn.execute(sa.select(web_sessions).where(
            web_sessions.c.user_id == user_id, web_sessions.c.id_hash == id_hash)).first()
        return self._session(row) if row else None

    def end_session(self, user_id: int, id_hash: str) -> None:
        self.conn.execute(web_sessions.delete().where(
            web_sessions.c.user_id == user_id, web_sessions.c.id_hash == id_hash))

    def end_sessions(self, user_id: int, keep: str | None = None) -> None:
        query = web_sessions.delete().where(web_sessions.c.user_id == user_id)
        if keep:
            query = query.where(web_sessions.c.id_hash != keep)
        self.conn.execute(query)

    def forget_sessions(self, before: datetime) -> int:
        return self.conn.execute(
            web_sessions.delete().where(web_sessions.c.expires_at < to_db(before))).rowcount

    # -- recovery codes ----------------------------------------------------------
    def set_recovery_codes(self, user_id: int, codes: list[str]) -> None:
        self.conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
        if codes:
            self.conn.execute(recovery_codes.insert(), [
                {"user_id": user_id, "code_hash": token_hash(code.strip().lower())} for code in codes])

    def use_recovery_code(self, user_id: int, code: str, now: datetime) -> bool:
        done = self.conn.execute(recovery_codes.update().where(
            recovery_codes.c.user_id == user_id,
            recovery_codes.c.code_hash == token_hash(code.strip().lower()),
            recovery_codes.c.used_at.is_(None)).values(used_at=to_db(now)))
        return done.rowcount == 1

    def recovery_codes_left(self, user_id: int) -> int:
        return self.conn.execute(sa.select(sa.func.count()).where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))).scalar_one()

    # -- second factor -----------------------------------------------------------
    def use_totp_step(self, user_id: int, step: int, now: datetime, kept: timedelta) -> bool:
        """Note that the user's TOTP code of time step `step` was used: False
        if it was already (a code seen over a shoulder or replayed). Kept
        as a token row, so forget_tokens() cleans it up with the rest."""
        hashed = token_hash(f"totp:{user_id}:{step}")
        if self.conn.execute(sa.select(tokens.c.token_hash).where(tokens.c.token_hash == hashed)).first():
            return False
        self.conn.execute(tokens.insert().values(
            token_hash=hashed, kind="totp-step", user_id=user_id, subject="", created_at=to_db(now),
            expires_at=to_db(now + kept), used_at=to_db(now)))
        return True

    # -- sign-in failures (throttling) ------------------------------------------
    def note_failure(self, keys: list[str], now: datetime) -> list[int]:
        """The rows' ids, for drop_failures."""
        return [self.conn.execute(login_failures.insert().values(key=k[:330], at=to_db(now)))
                .inserted_primary_key[0] for k in keys]

    def drop_failures(self, ids: list[int]) -> None:
        self.conn.execute(login_failures.delete().where(login_failures.c.id.in_(ids)))

    def failures(self, key: str, since: datetime) -> int:
        return self.conn.execute(sa.select(sa.func.count()).where(
            login_failures.c.key == key[:330], login_failures.c.at > to_db(since))).scalar_one()

    def oldest_failure(self, key: str, since: datetime) -> datetime | None:
        """The first counted attempt still in the window (when it frees a place)."""
        return from_db(self.conn.execute(sa.select(sa.func.min(login_failures.c.at)).where(
            login_failures.c.key == key[:330], login_failures.c.at > to_db(since))).scalar_one())

    def clear_failures(self, key: str) -> None:
        self.conn.execute(login_failures.delete().where(login_failures.c.key == key[:330]))

    def forget_failures(self, before: datetime) -> int:
        return self.conn.execute(
            login_failures.delete().where(login_failures.c.at < to_db(before))).rowcount

    # -- activity ---------------------------------------------------------------------
    def add_activity(self, rows: list[tuple[int, datetime, str, str, str]]) -> None:
        """(alias id, time, sender, verdict, reason) rows."""
        if rows:
            self.conn.execute(_ADD_ACTIVITY, [
                {"alias_id": a, "at": to_db(at), "sender": sender[:320], "verdict": verdict[:16],
                 "reason": reason[:200]} for a, at, sender, verdict, reason in rows])

    def activity(self, alias_id: int, limit: int = 50, since: datetime | None = None) -> list[Activity]:
        """The newest rows first. `since`: pass the alias's creation, so
        that rows of an earlier alias that had the same id (SQLite reuses
        the highest id after a delete) are never shown to the new owner."""
        query = sa.select(activity).where(activity.c.alias_id == alias_id)
        if since is not None:
            query = query.where(activity.c.at >= to_db(since))
        return [Activity(from_db(r.at), r.sender, r.verdict, r.reason) for r in self.conn.execute(
            query.order_by(activity.c.at.desc(), activity.c.id.desc()).limit(limit))]

    def forget_alias_activity(self, alias_id: int) -> None:
        """An alias's rows go with it (its id may be reused)."""
        self.conn.execute(activity.delete().where(activity.c.alias_id == alias_id))

    def forget_activity(self, before: datetime) -> int:
        return self.conn.execute(activity.delete().where(activity.c.at < to_db(before))).rowcount

    # -- a user's aliases ------------------------------------------------------------
    def owned_alias(self, user_id: int, alias_id: int) -> AliasRecord | None:
        row = self.conn.execute(sa.select(aliases.c.local_key, domains.c.name).join(
            domains, domains.c.id == aliases.c.domain_id).where(
            aliases.c.id == alias_id, aliases.c.owner_id == user_id)).first()
        return Store(self.conn).get_alias(row.local_key, row.name) if row else None

    def count_active(self, user_id: int, now: datetime) -> int:
        """Enabled aliases not past their date (count and idle limits are
        left out: an alias used up still counts until disabled or deleted)."""
        return self.conn.execute(sa.select(sa.func.count()).where(
            aliases.c.owner_id == user_id, aliases.c.enabled == sa.true(),
            sa.or_(aliases.c.expires_at.is_(None), aliases.c.expires_at > to_db(now)))).scalar_one()

    def active_counts(self, now: datetime) -> dict[int, int]:
        """Active aliases of every owner (as count_active), in one query."""
        return dict(self.conn.execute(
            sa.select(aliases.c.owner_id, sa.func.count()).where(
                aliases.c.owner_id.is_not(None), aliases.c.enabled == sa.true(),
                sa.or_(aliases.c.expires_at.is_(None), aliases.c.expires_at > to_db(now)))
            .group_by(aliases.c.owner_id)).all())

    def aliases_using(self, user_id: int, address: str) -> int:
        """How many of the user's aliases forward to `address`."""
        return self.conn.execute(sa.select(sa.func.count(sa.distinct(aliases.c.id))).select_from(
            aliases.join(destinations, destinations.c.alias_id == aliases.c.id)).where(
            aliases.c.owner_id == user_id, destinations.c.address == address)).scalar_one()

    def note_creation(self, user_id: int, now: datetime) -> None:
        self.conn.execute(alias_creations.insert().values(user_id=user_id, at=to_db(now)))

    def created_since(self, user_id: int, since: datetime) -> int:
        """Addresses the user created since then, deleted ones included."""
        return self.conn.execute(sa.select(sa.func.count()).where(
            alias_creations.c.user_id == user_id, alias_creations.c.at > to_db(since))).scalar_one()

    def oldest_creation(self, user_id: int, since: datetime) -> datetime | None:
        return from_db(self.conn.execute(sa.select(sa.func.min(alias_creations.c.at)).where(
            alias_creations.c.user_id == user_id, alias_creations.c.at > to_db(since))).scalar_one())

    def forget_creations(self, before: datetime) -> int:
        return self.conn.execute(
            alias_creations.delete().where(alias_creations.c.at < to_db(before))).rowcount

    def owned_aliases(self, user_id: int, now: datetime, *, search: str = "", state: str = "",
                      domain: str = "", sort: str = "created", offset: int = 0,
                      limit: int = 50, count_up_to: int = COUNT_UP_TO) -> AliasPage:
        """One page of a user's aliases, filtered, sorted and paged in SQL, so
        that 100,000 aliases cost about what 10 do: no join, the total
        counted only up to `count_up_to`, and each order served by an index
        on (owner_id, column) where the database has one."""
        where = [aliases.c.owner_id == user_id]
        if search:
            # a search is literal text: LIKE's wildcards are escaped ("/", not a
            # backslash, which MariaDB's string literals would read too)
            text = search.casefold().replace("/", "//").replace("%", "/%").replace("_", "/_")
            pattern = f"%{text}%"
            # the note in any case: SQLite's LIKE and MariaDB's collation ignore
            # it already (lower() would double the cost of the scan)
            note = aliases.c.note.ilike if self.conn.dialect.name == "postgresql" else aliases.c.note.like
            where.append(sa.or_(aliases.c.local_key.like(pattern, escape="/"), note(pattern, escape="/")))
        if domain:
            where.append(aliases.c.domain_id == sa.select(domains.c.id).where(domains.c.name == domain)
                         .scalar_subquery())
        where += _state_condition(state, now)
        ids = self._page_ids(where, sort, offset, limit + 1)
        if len(ids) <= limit and (ids or not offset):
            counted = offset + len(ids)        # the last page: no second scan to count
        else:
            counted = self.conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(aliases.c.id).where(*where).limit(count_up_to + 1).subquery())).scalar_one()
        records = {r.id: r for r in Store(self.conn)._records_where(aliases.c.id.in_(ids[:limit]))} if ids else {}
        return AliasPage([records[i] for i in ids[:limit] if i in records], min(counted, count_up_to),
                         more_than_total=counted > count_up_to, has_next=len(ids) > limit)

    def _page_ids(self, where: list, sort: str, offset: int, limit: int) -> list[int]:
        """Ids in the page's order. Aliases without an expiry (or without
        mail) come last on every database, as a second segment, rather than
        by ORDER BY "column IS NULL", which no index can serve."""
        newest = (aliases.c.created_at.desc(), aliases.c.id.desc())
        column = {"expiry": aliases.c.expires_at, "activity": aliases.c.last_forwarded_at}.get(sort)
        if column is None:
            return self._ids(where, newest, offset, limit)
        # one direction for both keys: an index on (owner_id, column) serves
        # it (rowid ties follow the index), mixed directions need a sort
        order = (column, aliases.c.id) if sort == "expiry" else (column.desc(), aliases.c.id.desc())
        dated = self._ids([*where, column.is_not(None)], order, offset, limit)
        if len(dated) == limit:
            return dated
        if dated:
            before = offset + len(dated)
        else:       # the page lies past every dated alias: how many were there?
            before = self.conn.execute(sa.select(sa.func.count()).where(*where, column.is_not(None))).scalar_one()
        return dated + self._ids([*where, column.is_(None)], newest, max(0, offset - before), limit - len(dated))

    def _ids(self, where: list, order, offset: int, limit: int) -> list[int]:
        return list(self.conn.execute(
            sa.select(aliases.c.id).where(*where).order_by(*order).offset(offset).limit(limit)).scalars())

    def alias_owner(self, local: str, domain: str) -> int | None:
        return self.conn.execute(sa.select(aliases.c.owner_id).join(
            domains, domains.c.id == aliases.c.domain_id).where(
            domains.c.name == domain, aliases.c.local_key == local_key(local))).scalar()


def _state_condition(state: str, now: datetime) -> list:
    """active / expired / disabled in SQL. Expired here is what SQL can tell
    (a date passed, a count used up); an idle limit shows on the page."""
    past = sa.and_(aliases.c.expires_at.is_not(None), aliases.c.expires_at <= to_db(now))
    used_up = sa.and_(aliases.c.max_messages.is_not(None), aliases.c.forwarded >= aliases.c.max_messages)
    if state == "disabled":
        return [aliases.c.enabled == sa.false()]
    if state == "expired":
        return [aliases.c.enabled == sa.true(), sa.or_(past, used_up)]
    if state == "active":
        return [aliases.c.enabled == sa.true(), sa.not_(sa.or_(past, used_up))]
    return []
