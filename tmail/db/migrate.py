"""Alembic migrations, run on tmail's own engine (no alembic.ini to ship)."""
from __future__ import annotations

import contextlib
import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_HERE = os.path.join(os.path.dirname(__file__), "migrations")


def _config(conn: sa.Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _HERE)
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _HERE)
    found = ScriptDirectory.from_config(cfg).get_current_head()
    if found is None:  # an install without the revisions must not pass for "up to date"
        raise RuntimeError(f"no alembic revisions found under {_HERE}")
    return found


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _migrating(engine: sa.Engine):
    """One transaction for a migration. On SQLite without foreign key
    enforcement meanwhile: a column change there rebuilds the table
    (DROP TABLE, then a copy renamed), and with foreign keys on, dropping
    `domains` cascaded into deleting every alias."""
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:   # only outside a transaction does this pragma take effect
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `revision`; returns (before, after). Idempotent."""
    head()
    before = current(engine)
    with _migrating(engine) as conn:
        command.upgrade(_config(conn), revision)
    return before, current(engine)


def downgrade(engine: sa.Engine, revision: str) -> tuple[str | None, str | None]:
    before = current(engine)
    with _migrating(engine) as conn:
        command.downgrade(_config(conn), revision)
    return before, current(engine)
