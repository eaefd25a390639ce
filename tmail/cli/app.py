"""What every command shares: configuration, one transaction, output, errors."""
from __future__ import annotations

import contextlib
import json
import re
import sys

import click

from .. import config as config_mod
from .. import defaults, jsontext
from ..core.address import AddressError


class CommandError(click.ClickException):
    """A refused request: the message says why; nothing was written."""

    exit_code = defaults.EXIT_ERROR


class UsageError(CommandError):
    exit_code = defaults.EXIT_USAGE


class App:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self.json = False
        self._config = None
        self._engine = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    @property
    def engine(self):
        if self._engine is None:
            from ..db.engine import make_engine
            db = self.config["database"]
            self._engine = make_engine(db["url"], db["busy_timeout_ms"])
        return self._engine

    @contextlib.contextmanager
    def store(self, dry_run: bool = False):
        """One transaction for the whole command: all of it lands or none.
        `dry_run`: the command runs as it would, and then rolls back, so
        what it reports is exactly what it would have done (check mode)."""
        from ..db.store import Store
        with self.engine.begin() as conn:
            yield Store(conn)
            if dry_run:
                conn.rollback()

    @contextlib.contextmanager
    def reading(self):
        """A read-only transaction (on SQLite a plain BEGIN: a long listing
        never holds the write lock the mail path needs)."""
        from ..db.store import Store
        with self.engine.connect().execution_options(readonly=True) as conn, conn.begin():
            yield Store(conn)

    def emit_list(self, key: str, rows, line, empty: str) -> None:
        """{"aliases": [...], "ok": true} (or lines of text) written row by
        row as `rows` yields them: the same output as emit(), in bounded memory."""
        first = True
        if self.json:
            click.echo(f'{{"{key}": [', nl=False)
        for row in rows:
            if self.json:
                click.echo(("" if first else ", ") + jsontext.dumps(row), nl=False)
            else:
                click.echo(line(row))
            first = False
        if self.json:
            click.echo('], "ok": true}')
        elif first:
            click.echo(empty)

    def emit(self, data, text: str | None = None) -> None:
        if self.json:
            click.echo(jsontext.dumps(data))
        elif text is not None:
            click.echo(text)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")


def printable(text: str) -> str:
    """Text from the database (written by any host, or anyone with access
    to it) as shown on a terminal: control characters, ESC sequences and
    bidi overrides escaped, so nothing can rewrite or fake a line."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def error_exit(message: str, code: int, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message}))
    click.echo(f"tmail: error: {message}", err=True)
    sys.exit(code)


class TmailGroup(click.Group):
    """Turns known failures into one clear line and a documented exit code."""

    def invoke(self, ctx):
        from sqlalchemy.exc import DBAPIError

        from ..db.store import StoreError

        def fail(message: str, code: int):
            error_exit(message, code, getattr(ctx.obj, "json", False))

        try:
            return super().invoke(ctx)
        except CommandError as exc:
            fail(exc.message, exc.exit_code)
        except config_mod.ConfigError as exc:
            fail(str(exc), defaults.EXIT_CONFIG)
        except AddressError as exc:
            fail(str(exc), defaults.EXIT_USAGE)
        except StoreError as exc:
            fail(str(exc), defaults.EXIT_ERROR)
        except DBAPIError as exc:
            first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
            fail(f"database error: {first} (is it reachable and migrated? "
                 "run `tmail db upgrade`)", defaults.EXIT_DATABASE)


def json_option(func):
    """--json on every command: machine-readable output with a stable schema."""
    def callback(ctx, _param, value):
        if value:
            ctx.find_object(App).json = True
        return value
    return click.option("--json", "as_json", is_flag=True, expose_value=False,
                        is_eager=True, callback=callback,
                        help="Print JSON (schema in README.md).")(func)


pass_app = click.make_pass_decorator(App)
