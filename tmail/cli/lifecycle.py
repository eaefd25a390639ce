"""tmail purge | notify | stats: what the daily timer and the admin run."""
from __future__ import annotations

import os
import socket
from collections import Counter
from datetime import timedelta

import click

from ..core import lifecycle
from ..core import stats as stats_mod
from ..core.aliases import state
from ..core.durations import utcnow
from .app import json_option, pass_app

EVENTS_KEPT = timedelta(days=8)       # stats look back 7 days
RECEIPTS_KEPT = timedelta(days=30)  # longer than Postfix keeps a message queued
FAILURES_KEPT = timedelta(days=1)   # sign-in throttling looks back minutes, not days
CREATIONS_KEPT = timedelta(days=1)  # the per-hour limit looks back an hour
MESSAGE_IDS_KEPT = timedelta(days=365)   # a reply's Message-ID mapping: a year of threading


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="List what would go; remove nothing.")
@json_option
@pass_app
def purge(app, dry_run):
    """Remove aliases expired for longer than the grace period.

    Removed addresses stay quarantined (not creatable) for the quarantine
    period. Old statistics events and delivery records go too.
    """
    cfg = app.config
    grace, quarantine = cfg.duration("lifecycle", "purge_grace"), cfg.duration("lifecycle", "quarantine")
    now = utcnow()
    with app.store() as store:
        due = [r for r in store.purge_candidates(now, grace) if lifecycle.purge_due(r, now, grace)]
        if not dry_run:
            for record in due:
                store.remove_alias(record, now)
            store.forget_events(now - EVENTS_KEPT)
            store.forget_receipts(now - RECEIPTS_KEPT)
            store.forget_retired(now - quarantine)
            from ..db.accounts import Accounts
            accounts = Accounts(store.conn)
            accounts.forget_activity(now - cfg.duration("lifecycle", "activity_kept"))
            accounts.forget_tokens(now)          # expired links
            accounts.forget_sessions(now)        # expired sessions
            accounts.forget_failures(now - FAILURES_KEPT)
            accounts.forget_creations(now - CREATIONS_KEPT)
            from ..db.contacts import Contacts
            Contacts(store.conn).forget_ids(now - MESSAGE_IDS_KEPT)   # threading of old replies
        if dry_run:
            store.conn.rollback()
    addresses = [r.address for r in due]
    app.emit({"ok": True, "changed": bool(due) and not dry_run, "dry_run": dry_run,
              "removed": addresses},
             "\n".join(("would remove " if dry_run else "removed ") + a for a in addresses)
             or "nothing to purge")


@click.command("notify")
@click.option("--dry-run", is_flag=True, help="List the warnings due; send nothing.")
@json_option
@pass_app
def notify(app, dry_run):
    """Warn aliases' owners before their address expires (once per expiry date)."""
    from .. import outbound
    cfg = app.config
    now = utcnow()
    due = []
    with app.store() as store:
        for domain in store.domain_names():
            warn_before = store.domain_settings(domain).warn_before
            if warn_before is None:
                continue
            due += [r for r in store.warning_candidates(domain, now, now + warn_before)
                    if lifecycle.warning_due(r, now, warn_before)]
    sent = []
    for record in due:
        if dry_run:
            continue
        notice = lifecycle.expiry_notice(record, sender=cfg.notice_from, now=now,
                                         host=cfg["srs"]["domain"] or socket.getfqdn())
        outbound.send(cfg, list(record.destinations), notice)
        # One transaction per warning: a failure later on never re-sends
        # the warnings already out.
        with app.store() as store:
            store.mark_warned(record.id, record.expires_at)
        sent.append(record.address)
    addresses = [r.address for r in due]
    app.emit({"ok": True, "changed": bool(sent), "dry_run": dry_run, "warned": sent if not dry_run else [],
              "due": addresses},
             "\n".join(("would warn " if dry_run else "warned ") + a for a in addresses)
             or "no warnings due")


@click.command("stats")
@click.option("--prometheus", "prom_file", metavar="FILE",
              help="Write Prometheus text to FILE (atomically; '-' for stdout).")
@json_option
@pass_app
def stats(app, prom_file):
    """Per domain: aliases by state, messages forwarded and refused (24 h, 7 d)."""
    from ..db.store import AliasFilter
    now = utcnow()
    with app.reading() as store:
        domains = store.domain_names()
        states = Counter((r.domain, state(r, now)) for r in store.iter_aliases(AliasFilter(), now))
        events = {"24h": store.event_counts(now - timedelta(hours=24)),
                  "7d": store.event_counts(now - timedelta(days=7))}
    rows = stats_mod.domain_stats(domains, states, events)
    if prom_file == "-":
        click.echo(stats_mod.prometheus_text(rows), nl=False)
        return
    if prom_file:
        tmp = f"{prom_file}.{os.getpid()}.tmp"   # node_exporter must never read half a file
        with open(tmp, "w") as handle:
            handle.write(stats_mod.prometheus_text(rows))
        os.chmod(tmp, 0o644)
        os.replace(tmp, prom_file)
    text = "\n".join(
        f"{r['domain']}: aliases {r['aliases']['active']} active, {r['aliases']['expired']} expired, "
        f"{r['aliases']['disabled']} disabled; forwarded {r['forwarded']['24h']} (24h) "
        f"{r['forwarded']['7d']} (7d); refused {r['refused']['24h']} (24h) {r['refused']['7d']} (7d)"
        for r in rows) or "no domains"
    app.emit({"ok": True, "domains": rows}, text)


COMMANDS = [purge, notify, stats]
