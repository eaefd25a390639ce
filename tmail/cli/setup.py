"""tmail init | db upgrade | db downgrade | db status | config show"""
from __future__ import annotations

import os
import pwd
import secrets

import click

from .. import config as config_mod
from .. import defaults
from ..core.address import normalise_domain, parse_address
from .app import CommandError, json_option, pass_app


def _owner(name: str | None):
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CommandError(f"no such user: {name}") from None
    return entry.pw_uid, entry.pw_gid


def _write_private(path: str, data: bytes, mode: int, owner) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if owner:
        os.chown(path, *owner)


def files_beside(path: str) -> dict:
    """Where a new configuration at `path` keeps its files, when not told.

    At the default place (/etc/tmail) the defaults hold: /etc/tmail/srs.secret,
    /var/lib/tmail/tmail.db, /etc/tmail/dkim. Anywhere else -- someone trying
    tmail in a scratch directory -- the secret, the SQLite database and the
    DKIM keys go beside the file, written into it explicitly: nothing lands
    in /etc or /var/lib, owned by whoever ran init.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if directory == os.path.dirname(defaults.CONFIG_PATH):
        return {}
    return {"database": {"url": f"sqlite:///{os.path.join(directory, 'tmail.db')}"},
            "srs": {"secret_file": os.path.join(directory, "srs.secret")},
            "dkim": {"key_directory": os.path.join(directory, "dkim")},
            "web": {"secret_key_file": os.path.join(directory, "web.secret")}}


@click.command("init")
@click.option("--srs-domain", help="The domain SRS addresses use (bounces come back to it).")
@click.option("--database-url", help="SQLAlchemy URL (default: SQLite under /var/lib/tmail, "
              "or beside a configuration outside /etc/tmail).")
@click.option("--admin", "admin", help="Where postmaster@ every tmail domain goes.")
@click.option("--secret-file", help="Where to keep the SRS secret (default /etc/tmail/srs.secret, "
              "or beside a configuration outside /etc/tmail).")
@click.option("--owner", help="The user that runs tmail; owns the secret and the database.")
@json_option
@pass_app
def init(app, srs_domain, database_url, admin, secret_file, owner):
    """Create the configuration (if missing), the SRS secret and the database."""
    owner_ids = _owner(owner)
    path = config_mod.config_path(app.config_path)
    created = []
    if not os.path.exists(path):
        values = {"database": {}, "srs": {}, "aliases": {}, "dkim": {}, "web": {}}
        for section, items in files_beside(path).items():
            values[section].update(items)
        if database_url:
            values["database"]["url"] = database_url
        if srs_domain:
            values["srs"]["domain"] = normalise_domain(srs_domain)
        if secret_file:  # the daemon runs from /: a relative path would miss
            values["srs"]["secret_file"] = os.path.abspath(secret_file)
        if admin:
            values["aliases"]["admin_address"] = str(parse_address(admin))
        values = {k: v for k, v in values.items() if v}
        config_mod.validate(values, path)  # refuse bad values before writing
        # The configuration may hold a database password: not world-readable;
        # the owner's group reads it, the file stays its writer's (root's).
        _write_private(path, config_mod.render(values).encode(), 0o640,
                       owner_ids and (-1, owner_ids[1]))
        created.append(path)
    cfg = config_mod.load(path)
    app._config = cfg
    for secret_file in (cfg["srs"]["secret_file"], cfg["web"]["secret_key_file"]):
        if not os.path.exists(secret_file):
            _write_private(secret_file, secrets.token_urlsafe(32).encode() + b"\n", 0o600, owner_ids)
            created.append(secret_file)
    from ..db import migrate
    from ..db.engine import sqlite_path
    before, after = migrate.upgrade(app.engine)
    db_file = sqlite_path(cfg["database"]["url"])
    if db_file and owner_ids:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db_file + suffix):
                os.chown(db_file + suffix, *owner_ids)
        os.chown(os.path.dirname(os.path.abspath(db_file)), *owner_ids)
    app.emit({"ok": True, "changed": bool(created) or before != after, "created": created,
              "schema": {"before": before, "after": after}},
             "\n".join([f"created {p}" for p in created] +
                       [f"database schema: {before or 'empty'} -> {after}"]))


@click.group("db")
def db():
    """The database schema (alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@json_option
@pass_app
def upgrade(app, revision):
    """Upgrade the schema; running it again changes nothing."""
    from ..db import migrate
    before, after = migrate.upgrade(app.engine, revision)
    app.emit({"ok": True, "changed": before != after, "before": before, "after": after},
             f"schema: {before or 'empty'} -> {after}" if before != after else f"schema at {after}")


@db.command("downgrade")
@click.argument("revision")
@json_option
@pass_app
def downgrade(app, revision):
    """Downgrade the schema to REVISION ('base' removes every table)."""
    from ..db import migrate
    before, after = migrate.downgrade(app.engine, revision)
    app.emit({"ok": True, "changed": before != after, "before": before, "after": after},
             f"schema: {before} -> {after or 'empty'}")


@db.command("status")
@json_option
@pass_app
def status(app):
    """Show the schema revision and whether it is the newest."""
    from ..db import migrate
    now, head = migrate.current(app.engine), migrate.head()
    app.emit({"ok": True, "current": now, "head": head, "up_to_date": now == head},
             f"schema {now or 'empty'} (newest {head})")


@click.group("config")
def config_group():
    """The configuration file."""


@config_group.command("show")
@json_option
@pass_app
def show(app):
    """Print the effective configuration, secrets masked."""
    shown = app.config.masked()
    app.emit({"ok": True, "path": app.config.path, "config": shown},
             f"# {app.config.path}\n" + config_mod.render(shown))


COMMANDS = [init, db, config_group]
