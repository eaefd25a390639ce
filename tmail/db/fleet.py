"""What several hosts on one database share beyond the aliases: DKIM keys
and selectors, SRS secrets (both sealed with the fleet key), and what
each host reports it uses (for `tmail doctor` to compare)."""
from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.durations import utcnow
from ..core.fleet import HostReport
from ..core.signer import Key
from ..keys import ALGORITHMS, DkimKeyError, StoredKey, dns_selector, generate_private
from ..sealing import Sealer, SealError
from .schema import dkim_keys, dkim_selectors, fleet_hosts, srs_secrets
from .store import from_db, to_db

log = logging.getLogger("tmail.fleet")


def _what(domain: str, selector: str, algorithm: str) -> str:
    return f"dkim:{domain}:{selector}:{algorithm}"


class DbKeyStore:
    """The DKIM key port (as tmail.keys.KeyStore) over the shared database.

    Readers see a change within `refresh_s`: stamp() names the current
    period, and the deliverability's cache re-reads keys when it changes."""

    def __init__(self, engine: sa.Engine, sealer: Sealer, refresh_s: float = 10):
        self.engine, self.sealer, self.refresh_s = engine, sealer, refresh_s

    def stamp(self, domain: str):
        return int(time.monotonic() // self.refresh_s)

    def keys(self, domain: str) -> list[StoredKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dkim_keys.c.selector, dkim_keys.c.algorithm)
                                .where(dkim_keys.c.domain == domain)
                                .order_by(dkim_keys.c.selector, dkim_keys.c.algorithm)).all()
        return [StoredKey(domain, r.selector, r.algorithm, f"database:{domain}/{r.selector}/{r.algorithm}")
                for r in rows]

    def domains(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(dkim_keys.c.domain).distinct()
                                     .order_by(dkim_keys.c.domain)).scalars())

    def active(self, domain: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(dkim_selectors.c.selector)
                                .where(dkim_selectors.c.domain == domain)).scalar()

    def read(self, stored: StoredKey) -> bytes:
        with self.engine.connect() as conn:
            sealed = conn.execute(sa.select(dkim_keys.c.sealed).where(
                dkim_keys.c.domain == stored.domain, dkim_keys.c.selector == stored.selector,
                dkim_keys.c.algorithm == stored.algorithm)).scalar()
        if sealed is None:
            raise DkimKeyError(f"no key {stored.selector}/{stored.algorithm} of {stored.domain}")
        return self.sealer.open(_what(stored.domain, stored.selector, stored.algorithm), sealed)

    def signing_keys(self, domain: str) -> list[Key]:
        """The active selector's keys, RSA first; read in one transaction,
        so a rotation is seen whole or not at all."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(dkim_keys.c.selector, dkim_keys.c.algorithm, dkim_keys.c.sealed)
                .join(dkim_selectors, sa.and_(dkim_selectors.c.domain == dkim_keys.c.domain,
                                              dkim_selectors.c.selector == dkim_keys.c.selector))
                .where(dkim_keys.c.domain == domain)).all()
        rows = sorted(rows, key=lambda r: ALGORITHMS.index(r.algorithm))
        return [Key(domain, dns_selector(r.selector, r.algorithm), r.algorithm,
                    self.sealer.open(_what(domain, r.selector, r.algorithm), r.sealed)) for r in rows]

    # -- changes (the CLI) ---------------------------------------------------
    def put(self, domain: str, selector: str, algorithm: str, private: bytes) -> bool:
        """Store a key made elsewhere (an import); False if that slot is
        taken (by another host too, at the same moment: the first one wins)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(dkim_keys.insert().values(
                    domain=domain, selector=selector, algorithm=algorithm,
                    sealed=self.sealer.seal(_what(domain, selector, algorithm), private),
                    created_at=to_db(utcnow())))
        except sa.exc.IntegrityError:
            return False
        return True

    def create(self, domain: str, selector: str, algorithm: str, bits: int = 2048) -> tuple[StoredKey, bool]:
        stored = StoredKey(domain, selector, algorithm, f"database:{domain}/{selector}/{algorithm}")
        if any(k.selector == selector and k.algorithm == algorithm for k in self.keys(domain)):
            return stored, False
        return stored, self.put(domain, selector, algorithm, generate_private(algorithm, bits))

    def activate(self, domain: str, selector: str) -> bool:
        if not any(k.selector == selector for k in self.keys(domain)):
            raise DkimKeyError(f"no key for selector {selector!r} of {domain} (run `tmail dkim keygen`)")
        if self.active(domain) == selector:
            return False
        with self.engine.begin() as conn:
            if conn.execute(dkim_selectors.update().where(dkim_selectors.c.domain == domain)
                            .values(selector=selector)).rowcount:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(dkim_selectors.insert().values(domain=domain, selector=selector))
            except sa.exc.IntegrityError:     # another host activated one meanwhile: this one wins
                conn.execute(dkim_selectors.update().where(dkim_selectors.c.domain == domain)
                             .values(selector=selector))
        return True

    def remove(self, domain: str, selector: str) -> list[StoredKey]:
        if self.active(domain) == selector:
            raise DkimKeyError(f"selector {selector!r} signs {domain}'s mail: activate another first")
        removed = [k for k in self.keys(domain) if k.selector == selector]
        with self.engine.begin() as conn:
            conn.execute(dkim_keys.delete().where(dkim_keys.c.domain == domain,
                                                  dkim_keys.c.selector == selector))
        return removed


def _digest(material: bytes, sealer: Sealer | None) -> bytes:
    return sealer.digest(material) if sealer else hashlib.sha256(material).digest()


def keys_digest(store, sealer: Sealer | None = None) -> str:
    """What a key store signs with, as one short digest (either kind of
    store; equal on hosts that sign alike). Keyed with the fleet key where
    there is one; a key that does not open counts as "unreadable"."""
    h = hashlib.sha256()
    for domain in store.domains():
        h.update(f"{domain}\0{store.active(domain) or ''}\0".encode())
        for key in store.keys(domain):
            h.update(f"{key.selector}\0{key.algorithm}\0".encode())
            try:
                h.update(_digest(store.read(key), sealer))
            except (SealError, OSError):
                h.update(b"unreadable")
    return h.hexdigest()[:16]


def secrets_digest(secrets: list[bytes], sealer: Sealer | None = None) -> str:
    """The SRS secrets in use, signing one first, as a short digest (keyed
    with the fleet key where there is one)."""
    h = hashlib.sha256()
    for secret in secrets:
        h.update(_digest(secret, sealer))
    return h.hexdigest()[:16]


# -- SRS secrets --------------------------------------------------------------
def _srs_what(row_id: int) -> str:
    return f"srs:{row_id}"


def read_srs_secrets(conn: sa.Connection, sealer: Sealer, now: datetime) -> list[bytes]:
    """Every SRS secret that opens, the one that signs first: the newest
    whose signs_from has come (all of them verify). A row that does not
    open (sealed on a host with another key, or altered) is left out and
    logged: it must not stop every host, nor ever sign or verify."""
    opened = []
    for row in conn.execute(sa.select(srs_secrets).order_by(srs_secrets.c.id.desc())):
        try:
            opened.append((row, sealer.open(_srs_what(row.id), row.sealed)))
        except SealError as exc:
            log.error("SRS secret left out: %s", exc)
    due = [pair for pair in opened if from_db(pair[0].signs_from) <= now]
    first = due[0] if due else (opened[-1] if opened else None)
    return ([first[1]] if first else []) + [pair[1] for pair in opened if pair is not first]


def key_opens(conn: sa.Connection, sealer: Sealer) -> bool:
    """Whether this host's fleet key opens the secrets already in the
    database (True when there are none): a host with another key must not
    add secrets no other host can open."""
    rows = [("srs", r.id, r.sealed) for r in conn.execute(sa.select(srs_secrets).limit(5))]
    rows += [("dkim", r, r.sealed) for r in conn.execute(sa.select(dkim_keys).limit(5))]
    if not rows:
        return True
    for kind, ident, sealed in rows:
        what = _srs_what(ident) if kind == "srs" else _what(ident.domain, ident.selector, ident.algorithm)
        try:
            sealer.open(what, sealed)
            return True
        except SealError:
            continue
    return False


def add_srs_secret(conn: sa.Connection, sealer: Sealer, secret: bytes, now: datetime,
                   signs_from: datetime) -> None:
    row_id = conn.execute(srs_secrets.insert().values(
        sealed="", created_at=to_db(now), signs_from=to_db(signs_from))).inserted_primary_key[0]
    conn.execute(srs_secrets.update().where(srs_secrets.c.id == row_id)
                 .values(sealed=sealer.seal(_srs_what(row_id), secret)))


def retire_srs_secrets(conn: sa.Connection, now: datetime, max_age: timedelta) -> int:
    """Forget secrets that stopped signing longer ago than an SRS address
    lives: nothing they signed can still verify."""
    rows = conn.execute(sa.select(srs_secrets.c.id, srs_secrets.c.signs_from)
                        .order_by(srs_secrets.c.id.desc())).all()
    cutoff = now - max_age - timedelta(days=1)
    gone, newer_from = [], None     # rows come newest first
    for row in rows:
        if newer_from is not None and newer_from < cutoff:
            gone.append(row.id)
        started = from_db(row.signs_from)
        newer_from = started if newer_from is None else min(newer_from, started)
    if gone:
        conn.execute(srs_secrets.delete().where(srs_secrets.c.id.in_(gone)))
    return len(gone)


def count_srs_secrets(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(srs_secrets)).scalar_one()


# -- what each host reports ---------------------------------------------------
def report(conn: sa.Connection, name: str, **values) -> None:
    """Write this host's row (the columns given), made if missing."""
    values = {k: to_db(v) if isinstance(v, datetime) else v for k, v in values.items()}
    done = conn.execute(fleet_hosts.update().where(fleet_hosts.c.name == name).values(**values))
    if done.rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(fleet_hosts.insert().values(name=name, **values))
    except sa.exc.IntegrityError:    # the host's other process made it meanwhile
        conn.execute(fleet_hosts.update().where(fleet_hosts.c.name == name).values(**values))


def _when(value) -> datetime | None:
    """A report's time; anything that is not one (a zero date) is None."""
    return from_db(value) if isinstance(value, datetime) else None


def hosts(conn: sa.Connection) -> list[HostReport]:
    """The reports; every text in them as written by whoever can write the
    database: escaped where shown (tmail.cli.fleet)."""
    rows = conn.execute(sa.select(fleet_hosts).order_by(fleet_hosts.c.name)).all()
    return [HostReport(r.name, r.version, _when(r.daemon_seen_at), r.fleet_key_id, r.keys_digest,
                       r.srs_digest, _when(r.tables_seen_at), r.tables_digest, r.transport)
            for r in rows]


def forget(conn: sa.Connection, name: str) -> bool:
    """Drop a host that is gone from the reports."""
    return bool(conn.execute(fleet_hosts.delete().where(fleet_hosts.c.name == name)).rowcount)
