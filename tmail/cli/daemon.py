"""tmail daemon: run the milter, the delivery socket and the policy guard."""
from __future__ import annotations

import logging
import sys

import click

from .. import config as config_mod
from .. import defaults
from .app import pass_app


def start_logging(log_file: str | None) -> None:
    """Logging for a long-running command (the daemon, the web app), or one
    line on stderr and exit 1 when the log file cannot be opened."""
    from ..mailpath.daemon import setup_logging
    try:
        setup_logging("info", log_file)
    except OSError as exc:
        click.echo(f"tmail: error: cannot open the log file {log_file}: {exc.strerror}", err=True)
        sys.exit(defaults.EXIT_ERROR)


@click.command("daemon")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log here instead of stderr.")
@pass_app
def daemon(app, log_file):
    """Run tmail's long-lived daemon (what systemd starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..mailpath.daemon import run
    # Logging first: whatever stops the start-up (a bad configuration, an
    # unreadable secret, the database) must land where the log goes, not on
    # a stderr that a service manager or nohup may have thrown away.
    start_logging(log_file)
    try:
        run(app.config, log_file)
    except config_mod.ConfigError as exc:
        _fail(str(exc), defaults.EXIT_CONFIG, log_file)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        first = str(orig if orig is not None else exc).strip().splitlines()[0]
        _fail(f"database error: {first} (is it reachable and migrated? run `tmail db upgrade`)",
              defaults.EXIT_DATABASE, log_file)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", defaults.EXIT_ERROR, log_file)
    except Exception as exc:  # noqa: BLE001
        # Anything else is a bug: keep the traceback, after the one line.
        _fail(f"{type(exc).__name__}: {exc}", defaults.EXIT_ERROR, log_file, trace=True)


def _fail(message: str, code: int, log_file: str | None, trace: bool = False) -> None:
    log = logging.getLogger("tmail")
    log.error("tmail daemon cannot run: %s", message, exc_info=trace)
    if log_file:  # the log went to the file; a person at a terminal sees it too
        click.echo(f"tmail: error: {message}", err=True)
    sys.exit(code)


COMMANDS = [daemon]
