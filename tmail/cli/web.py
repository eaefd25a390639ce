"""tmail web: serve the web app under gunicorn (what systemd starts).

gunicorn runs in this process (no second script): the master binds
`[web] listen`, each worker builds its own app with tmail.web.create_app, so
no database connection crosses a fork. Started as root, it first becomes the
tmail user: the web app never needs root.
"""
from __future__ import annotations

import logging
import os
import pwd
import sys

import click

from .. import config as config_mod
from .. import defaults
from .app import UsageError, pass_app

# X-Forwarded-Proto (the one scheme header nginx sets) is believed only from
# these peers; a client cannot pass another scheme header through.
TRUSTED_PROXIES = "127.0.0.1,::1"
log = logging.getLogger("tmail.web")


class StartError(Exception):
    """Why the web app cannot start, and the exit code that says so."""

    def __init__(self, message: str, code: int = defaults.EXIT_ERROR):
        super().__init__(message)
        self.code = code


def parse_listen(value: str) -> str:
    """`host:port`, `[v6]:port` or `unix:/absolute/path`, as gunicorn binds it."""
    if value.startswith("unix:"):
        path = value[5:]
        if not os.path.isabs(path):
            raise ValueError(f"expected unix:/absolute/path, got {value!r}")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port (127.0.0.1:8025) or unix:/path, got {value!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"an IPv6 address needs brackets ([::1]:8025), got {value!r}")
    return value


def _become(user: str) -> None:
    """Root gives way to `user` (its groups too) before anything is opened."""
    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.chdir("/")


def _preflight(cfg) -> None:
    """What would stop every worker, found once, as one line."""
    path = cfg["web"]["secret_key_file"]
    try:
        with open(path, "rb") as handle:
            if not handle.read().strip():
                raise StartError(f"{path}: the web secret is empty (remove it and run `tmail init`)")
    except OSError as exc:
        raise StartError(f"{path}: cannot read the web secret: {exc.strerror} "
                         "(`tmail init` creates it; it must be readable by the tmail user)") from None
    for key in ("tls_cert", "tls_key"):
        tls = cfg["web"][key]
        if tls and not os.access(tls, os.R_OK):
            raise StartError(f"{tls}: [web] {key} cannot be read by the user {pwd.getpwuid(os.geteuid()).pw_name}")
    logging.getLogger("alembic").setLevel(logging.WARNING)   # its plugins, at import
    from sqlalchemy.exc import SQLAlchemyError

    from ..db import migrate
    from ..db.engine import make_engine
    db = cfg["database"]
    engine = make_engine(db["url"], db["busy_timeout_ms"])
    try:
        current = migrate.current(engine)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        first = str(orig if orig is not None else exc).strip().splitlines()[0]
        raise StartError(f"database error: {first} (is it reachable and migrated? run `tmail db upgrade`)",
                         defaults.EXIT_DATABASE) from None
    finally:
        engine.dispose()   # nothing of it may reach the workers
    if current != migrate.head():
        raise StartError(f"the database schema is {current or 'empty'}, not {migrate.head()}: "
                         "run `tmail db upgrade`", defaults.EXIT_DATABASE)
    try:
        from ..web import create_app  # noqa: F401
    except ImportError as exc:
        raise StartError(f"cannot load the web app: {exc}") from None


def _server(cfg, listen: str, workers: int, log_file: str | None):
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    class TmailLogger(Logger):
        # the daemon's line format; control characters from clients escaped
        error_fmt = "%(asctime)s tmail-web[%(process)d]: %(levelname)s %(message)s"
        datefmt = None

        def _set_handler(self, log, output, fmt, stream=None):
            from ..mailpath.daemon import EscapingFormatter
            super()._set_handler(log, output, EscapingFormatter(fmt._fmt, fmt.datefmt), stream)

    class Server(BaseApplication):
        def load_config(self):
            settings = {
                "bind": [listen],
                "workers": workers,
                "worker_class": "sync",
                "proc_name": "tmail-web",
                "errorlog": log_file or "-",
                # No access log: one-time links carry their token in the
                # URL; nginx keeps the access log.
                "accesslog": None,
                "loglevel": "info",
                "logger_class": TmailLogger,
                "forwarded_allow_ips": TRUSTED_PROXIES,
                "secure_scheme_headers": {"X-FORWARDED-PROTO": "https"},
                # the socket's mode: its directory decides who reaches it,
                # as the loopback port is open to every local user
                "umask": 0,
                "timeout": 30,
                "graceful_timeout": 20,
                "keepalive": 5,
                "preload_app": False,
                "capture_output": False,
                # gunicorn 25.1+ would make a control socket under $HOME
                # (/var/lib/tmail): nothing uses it
                "control_socket_disable": True,
            }
            web = cfg["web"]
            if web["tls_cert"]:        # TLS in gunicorn: a host without nginx
                settings.update(certfile=web["tls_cert"], keyfile=web["tls_key"])
            for key, value in settings.items():
                if key in self.cfg.settings:   # an older gunicorn lacks some
                    self.cfg.set(key, value)

        def load(self):
            # In each worker: its own app, engine and connections.
            from ..web import create_app
            try:
                # the address really served: forwarded headers are believed
                # only behind a proxy on this host (loopback, a UNIX socket)
                return create_app(cfg, listen=listen)
            except Exception as exc:
                log.error("tmail web cannot start: %s: %s (traceback below)", type(exc).__name__, exc)
                raise

    return Server()


@click.command("web")
@click.option("--listen", help="host:port or unix:/path (default: [web] listen, 127.0.0.1:8025).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: [web] workers).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log here instead of stderr.")
@pass_app
def web(app, listen, workers, log_file):
    """Serve the web app for the people who own addresses (gunicorn)."""
    from .daemon import start_logging
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise UsageError(f"--listen: {exc}") from None
    cfg = app.config
    if listen is None:
        try:
            listen = parse_listen(cfg["web"]["listen"])
        except ValueError as exc:
            raise config_mod.ConfigError(f"{cfg.path}: [web] listen: {exc}") from None
    if os.geteuid() == 0:
        user = cfg["postfix"]["pipe_user"]
        try:
            _become(user)
        except (KeyError, OSError) as exc:
            raise UsageError(f"cannot switch to the user {user!r} to serve the web app: {exc}") from None
    # Logging next: whatever stops the start-up lands where the log goes.
    start_logging(log_file)
    try:
        _preflight(cfg)
    except StartError as exc:
        log.error("tmail web cannot start: %s", exc)
        if log_file:  # the log went to the file; a person at a terminal sees it too
            click.echo(f"tmail: error: {exc}", err=True)
        sys.exit(exc.code)
    log.info("tmail web on %s, %d workers, as %s", listen, workers or cfg["web"]["workers"],
             pwd.getpwuid(os.geteuid()).pw_name)
    _server(cfg, listen, workers or cfg["web"]["workers"], log_file).run()


COMMANDS = [web]
