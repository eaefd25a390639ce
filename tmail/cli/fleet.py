"""tmail fleet keygen | import | status | forget, and tmail srs rotate:
several MX hosts on one database.

In a fleet ([fleet] key_file set), DKIM keys, active selectors and SRS
secrets live in the shared database, sealed with the fleet key; `import`
moves a host's files there once. Each host's daemon and follower report
what they use, and `status` (and `tmail doctor`) compare the reports.
"""
from __future__ import annotations

import secrets as secrets_mod
from datetime import timedelta

import click

from ..core import fleet as fleet_core
from ..core.durations import utcnow
from ..db import fleet as fleet_db
from ..keys import KeyStore
from ..sealing import new_key
from .app import CommandError, json_option, pass_app, printable


@click.group()
def fleet():
    """Several MX hosts on one database: shared keys and secrets, host reports."""


def _fleet_only(app) -> None:
    if not app.config.fleet:
        raise CommandError(f"{app.config.path}: set [fleet] key_file first (the same file on every "
                           "host; make one with `tmail fleet keygen`)")


@fleet.command("keygen")
def keygen():
    """Print a new fleet key (store it as [fleet] key_file, mode 0600, owner tmail, on every host)."""
    click.echo(new_key())


@fleet.command("import")
@json_option
@pass_app
def import_(app):
    """Copy this host's DKIM keys, selectors and SRS secrets into the database (idempotent).

    What the database has already is kept: the first host to import sets
    the fleet's keys and secrets; other hosts' files are then unused."""
    _fleet_only(app)
    cfg = app.config
    files = KeyStore(cfg["dkim"]["key_directory"])
    shared = cfg.key_store(app.engine)
    keys = selectors = 0
    kept = []
    for domain in files.domains():
        for key in files.keys(domain):
            keys += shared.put(domain, key.selector, key.algorithm, files.read(key))
        active, current = files.active(domain), shared.active(domain)
        if active and current is None:
            selectors += shared.activate(domain, active)
        elif active and current != active:
            kept.append(f"{domain} signs with selector {current!r} (the database's), not {active!r}")
    srs = 0
    with app.engine.begin() as conn:
        if cfg["srs"]["domain"] and fleet_db.count_srs_secrets(conn) == 0:
            from ..config import read_secrets
            now = utcnow()
            for secret in reversed(read_secrets(cfg["srs"]["secret_file"])):   # the first signs
                fleet_db.add_srs_secret(conn, cfg.sealer(), secret, now, now)
                srs += 1
    changed = bool(keys or selectors or srs)
    app.emit({"ok": True, "changed": changed, "dkim_keys": keys, "selectors": selectors,
              "srs_secrets": srs, "kept": kept},
             "\n".join([f"imported {keys} DKIM key(s), {selectors} selector(s), {srs} SRS secret(s)"]
                       + kept))


def _status(app) -> tuple[list[fleet_core.HostReport], list[str]]:
    """The hosts' reports and what is wrong with them."""
    from .postfix import routed_domains
    cfg = app.config
    with app.engine.connect() as conn:
        hosts = fleet_db.hosts(conn)
    with app.reading() as store:
        expected = fleet_core.tables_digest(routed_domains(cfg, store.domain_names()))
    return hosts, fleet_core.disagreements(hosts, utcnow(), cfg["fleet"]["sync_interval_s"], expected)


def fleet_problems(app) -> list[str]:
    """For doctor and postfix check: [] on a lone host that is not a fleet;
    reports that cannot be read are a problem, not a crash."""
    try:
        hosts, problems = _status(app)
    except Exception as exc:
        return [f"cannot read the hosts' reports: {exc}"]
    if not app.config.fleet and len(hosts) <= 1:
        return []
    return problems


def require_key_opens(app) -> None:
    """Refuse to add a sealed secret that the other hosts could not open."""
    if not app.config.fleet:
        return
    sealer = app.config.sealer()
    with app.engine.connect() as conn:
        if not fleet_db.key_opens(conn, sealer):
            raise CommandError(f"this host's fleet key (id {sealer.key_id}) opens none of the secrets "
                               "in the database: its key file differs from the other hosts'; nothing "
                               "was written")


@fleet.command("status")
@json_option
@pass_app
def status(app):
    """What each host reports using, and where hosts disagree. Exit 1 if they do."""
    hosts, problems = _status(app)
    now = utcnow()

    def age(seen):
        return None if seen is None else int((now - seen).total_seconds())

    def ago(seconds):
        return "never" if seconds is None else f"{seconds}s ago"

    rows = [{"host": h.name, "version": h.version, "daemon_seen_s": age(h.daemon_seen_at),
             "tables_seen_s": age(h.tables_seen_at), "transport": h.transport,
             "fleet_key_id": h.fleet_key_id, "keys": h.keys_digest, "srs": h.srs_digest,
             "tables": h.tables_digest} for h in hosts]
    lines = [printable(f"{r['host']:30} daemon {ago(r['daemon_seen_s'])}, tables {ago(r['tables_seen_s'])}, "
                       f"keys {r['keys'] or '-'}, srs {r['srs'] or '-'}, fleet key {r['fleet_key_id'] or '-'}")
             for r in rows] or ["no host has reported"]
    app.emit({"ok": not problems, "hosts": rows, "problems": problems},
             "\n".join(lines + [f"problem: {printable(p)}" for p in problems]))
    if problems:
        raise SystemExit(1)


@fleet.command("forget")
@click.argument("host")
@json_option
@pass_app
def forget(app, host):
    """Drop a host that is gone from the reports (it reappears if it reports again)."""
    with app.engine.begin() as conn:
        changed = fleet_db.forget(conn, host)
    app.emit({"ok": True, "changed": changed, "host": host},
             printable(f"forgot {host}" if changed else f"{host} was not reported"))


@click.group()
def srs():
    """The SRS secrets (in a fleet: the shared database's)."""


@srs.command("rotate")
@json_option
@pass_app
def rotate(app):
    """Add a new SRS secret: every host verifies with it at once, and signs
    with it after three sync intervals (when every host has it). Secrets
    that stopped signing longer ago than an SRS address lives are dropped."""
    _fleet_only(app)
    require_key_opens(app)
    cfg = app.config
    now = utcnow()
    signs_from = now + timedelta(seconds=3 * cfg["fleet"]["sync_interval_s"])
    with app.engine.begin() as conn:
        fleet_db.add_srs_secret(conn, cfg.sealer(), secrets_mod.token_urlsafe(32).encode(), now, signs_from)
        dropped = fleet_db.retire_srs_secrets(conn, now, timedelta(days=cfg["srs"]["max_age_days"]))
        count = fleet_db.count_srs_secrets(conn)
    app.emit({"ok": True, "changed": True, "signs_from": signs_from.isoformat(timespec="seconds"),
              "secrets": count, "dropped": dropped},
             f"added an SRS secret; it signs from {signs_from:%Y-%m-%d %H:%M:%S} UTC "
             f"({count} secret(s), {dropped} dropped)")


COMMANDS = [fleet, srs]
