"""Alembic migrations, run on tmail's own engine (no alembic.ini to ship)."""
from __future__ import annotations

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


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `revision`; returns (before, after). Idempotent."""
    head()
    before = current(engine)
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    return before, current(engine)


def downgrade(engine: sa.Engine, revision: str) -> tuple[str | None, str | None]:
    before = current(engine)
    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)
    return before, current(engine)
