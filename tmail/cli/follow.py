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

import json
import os
import pwd
import time

import click

from .app import CommandError, pass_app


def as_user(user: str, work):
    """work()'s JSON-able result, computed as `user` when running as root
    (in a child process that drops to it), else here."""
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
    with os.fdopen(read_end) as incoming:
        text = incoming.read()
    os.waitpid(pid, 0)
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
    from .postfix import Postconf, installed_transport, routed_domains, sync_maps
    cfg = app.config
    postconf = Postconf(cfg["postfix"]["config_directory"])
    user = cfg["postfix"]["pipe_user"]

    def domain_names():
        with app.reading() as store:
            return store.domain_names()

    def report(transport, digest):
        def work():
            with app.engine.begin() as conn:
                fleet_db.report(conn, cfg.host_name, tables_seen_at=utcnow(), transport=transport,
                                tables_digest=digest)
        return work

    while True:
        started = time.monotonic()
        try:
            names = as_user(user, domain_names)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise CommandError("the domain list came back malformed")
            transport = installed_transport(postconf)
            for path in sync_maps(cfg, names, postconf, transport=transport):
                click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} tmail-follow: wrote {path}", err=True)
            as_user(user, report(transport, tables_digest(routed_domains(cfg, names))))
        except Exception as exc:
            if once:
                raise
            click.echo(f"{utcnow():%Y-%m-%d %H:%M:%S} tmail-follow: error: {exc}", err=True)
        if once:
            return
        time.sleep(max(0.0, cfg["fleet"]["sync_interval_s"] - (time.monotonic() - started)))
