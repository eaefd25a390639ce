"""Shared fixtures: a real database of each kind, a config file, the CLI."""
from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from conftest_db import MARIA_ADMIN, PG_ADMIN
from helpers import Cli, write_config


def _pg_url(schema: str) -> str:
    return f"{PG_ADMIN}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path):
    """A fresh, empty database of each kind; dropped afterwards.

    Each run gets its own PostgreSQL schema or MariaDB database, so parallel
    runs never collide and nothing is left behind.
    """
    name = f"tmail_t_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tmail.db"
        return
    if request.param == "postgresql":
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        try:
            yield _pg_url(name)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
            admin.dispose()
        return
    admin = sa.create_engine(MARIA_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield MARIA_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


@pytest.fixture
def engine(db_url):
    from tmail.db import migrate
    from tmail.db.engine import make_engine
    eng = make_engine(db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def cli(tmp_path):
    """The CLI on a migrated SQLite file with domain d.test."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db")
    run = Cli(config)
    run("db", "upgrade")
    run("domain", "add", "d.test")
    return run
