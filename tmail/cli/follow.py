"""tmail postfix follow: this host's Postfix tables follow the database.

On several MX hosts sharing one database, a domain added or removed on any
of them must reach every host's Postfix. Every [fleet] sync_interval_s the
follower reads the database's domains, rewrites tmail's tables when they
differ and reloads Postfix (which needs root), then reports in (`tmail
fleet status`).

Root is needed only for the tables and the reload: the database is read
and written by a child process running as the tmail user, which hands back
nothing but a list of names (checked again before they reach a table).
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import time

import click

from .app import CommandError, pass_app

MAX_ANSWER = 64 * 1024 * 1024     # a million long domain names fit


def as_user(user: str, work, deadline: int = 60):
    """work()'s JSON-able result, computed as `user` when running as root
    (in a child process that drops to it and is ended after `deadline`
    seconds), else here."""
    if os.geteuid() != 0:
        return work()
    entry = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                             # the child: never returns
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            signal.alarm(deadline)           # SIGALRM's default action ends it
            result = {"result": work()}
        except BaseException as exc:
            result = {"error": str(exc) or type(exc).__name__}
        try:
            with os.fdopen(write_end, "w") as out:
                json.dump(result, out)
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as incoming:
        data = incoming.read(MAX_ANSWER + 1)
    if len(data) > MAX_ANSWER:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    text = data.decode("utf-8", "replace") if len(data) <= MAX_ANSWER else ""
    try:
        answer = json.loads(text)
    except ValueError:
        raise CommandError(f"the follower's {user} process ended without an answer") from None
    if "error" in answer:
        raise CommandError(answer["error"])
    return answer["result"]


@click.command("follow")
@click.option("--once", is_flag=True, help="Sync once and exit (errors exit 1).")
@pass_app
def follow(app, once):
    """Keep this host's Postfix tables following the database (as root).

    Every [fleet] sync_interval_s: write tmail's tables from the database's
    domains and reload Postfix if they changed, then report in (`tmail
    fleet status`). Run by tmail-follow.service on each of several MX hosts
    that share one database; a failure is printed and tried again."""
    from ..core.durations import utcnow
    from ..core.fleet import tables_digest
    from ..db import fleet as fleet_db
    from ..db.engine import make_engine
    from ..db.store import Store
    from .postfix import Postconf, installed_transport, routed_domains, write_tables
    cfg = app.config
    postconf = Postconf(cfg["postfix"]["config_directory"])
    user, db = cfg["postfix"]["pipe_user"], cfg["database"]
    interval = cfg["fleet"]["sync_interval_s"]

    @contextlib.contextmanager
    def transaction():
        """In the child: one transaction, every wait on the database
        bounded as the daemon's are; the engine goes with the child's work."""
        engine = make_engine(db["url"], db["busy_timeout_ms"], op_timeout=db["timeout_s"])
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def domain_names():
        with transaction() as conn:
            return Store(conn).domain_names()

    def report(transport, digest):
        def work():
            with transaction() as conn:
                fleet_db.report(conn, cfg.host_name, tables_seen_at=utcnow(), transport=transport,
                                tables_digest=digest)
        return work

    def say(text):
        click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} tmail-follow: {text}", err=True)

    reload_pending = False     # tables written, Postfix not yet told: told next time round
    while True:
        started = time.monotonic()
        try:
            names = as_user(user, domain_names, deadline=3 * interval)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise CommandError("the domain list came back malformed")
            transport = installed_transport(postconf)
            routed = routed_domains(cfg, names, postconf.own_domains())
            for path in write_tables(cfg, routed, postconf, transport):
                say(f"wrote {path}")
                reload_pending = True
            if reload_pending:
                postconf.reload()       # False: Postfix is not running, and reads them at start
                reload_pending = False
            as_user(user, report(transport, tables_digest(routed)), deadline=3 * interval)
        except Exception as exc:
            if once:
                raise
            say(f"error: {exc}")
        if once:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
