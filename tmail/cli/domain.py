"""tmail domain add | list | remove"""
from __future__ import annotations

import dataclasses

import click

from ..core.durations import format_duration, utcnow
from ..core.fromrewrite import DEFAULT_MODE as FROM_REWRITE_DEFAULT
from ..core.verdict import OnExpiry
from .app import CommandError, UsageError, json_option, pass_app
from .params import DOMAIN, DURATION_OR_NONE
from .postfix import sync_maps


@click.group()
def domain():
    """The domains tmail hands out aliases at."""


@domain.command("add")
@click.argument("name", type=DOMAIN)
@json_option
@pass_app
def add(app, name):
    """Add a domain (nothing changes if it is there already)."""
    with app.store() as store:
        changed = _add(app, store, name)
    maps = _sync_after_add(app, name)
    app.emit({"ok": True, "domain": name, "changed": changed, "postfix_maps": maps},
             f"added {name}" if changed else f"{name} exists already")


def _add(app, store, name) -> bool:
    if name in app.config.service_domains:
        raise CommandError(f"{name} is tmail's SRS or reply domain; it cannot also hold aliases")
    return store.add_domain(name, utcnow())


def _sync_after_add(app, name) -> list[str]:
    """Postfix learns of a domain only once the database has it: it never
    routes mail to tmail for a domain the milter does not know yet."""
    with app.reading() as store:
        names = store.domain_names()
    try:
        return sync_maps(app.config, names)
    except (CommandError, OSError) as exc:
        raise CommandError(f"{name} was added, but Postfix's tables could not be written "
                           f"({exc}); run `tmail postfix sync`") from None


def _remove(store, name, force) -> int:
    """Remove a domain (and with `force` its aliases); how many aliases went.
    Each alias goes the way `alias remove` does, so its address stays
    quarantined: re-adding the domain must not hand a previous owner's
    address to someone else."""
    from ..db.store import AliasFilter
    now = utcnow()
    records = store.list_aliases(AliasFilter(domain=name), now) if force else []
    for record in records:
        store.remove_alias(record, now)
    return len(records) + store.remove_domain(name, force)


@domain.command("list")
@json_option
@pass_app
def list_(app):
    """List domains with their alias counts."""
    with app.store() as store:
        rows = store.list_domains()
    text = "\n".join(f"{r['domain']:40} {r['aliases']:>8} aliases" for r in rows) or "no domains"
    app.emit({"ok": True, "domains": rows}, text)


@domain.command("remove")
@click.argument("name", type=DOMAIN)
@click.option("--force", is_flag=True, help="Remove the domain's aliases too.")
@json_option
@pass_app
def remove(app, name, force):
    """Remove a domain; refused while it has aliases unless --force."""
    with app.store() as store:
        removed = _remove(store, name, force)
        # Postfix stops routing the domain to tmail before the database
        # forgets it; a failure here rolls the removal back.
        sync_maps(app.config, store.domain_names())
    app.emit({"ok": True, "domain": name, "changed": True, "aliases_removed": removed},
             f"removed {name}" + (f" and its {removed} alias(es)" if removed else ""))


def _settings_json(settings) -> dict:
    def seconds(value):
        return int(value.total_seconds()) if value else None
    return {"default_ttl_seconds": seconds(settings.ttl), "default_idle_seconds": seconds(settings.idle),
            "default_on_expiry": settings.on_expiry.value if settings.on_expiry else None,
            "random_style": settings.random_style, "warn_before_seconds": seconds(settings.warn_before),
            "from_rewrite": settings.from_rewrite or FROM_REWRITE_DEFAULT, "shared": settings.shared,
            "replies": settings.replies}


def _settings_text(name, settings) -> str:
    def show(value):
        return format_duration(value) if value else "-"
    return (f"{name}: default ttl {show(settings.ttl)}, default idle {show(settings.idle)}, "
            f"on expiry {settings.on_expiry.value if settings.on_expiry else '-'}, "
            f"random style {settings.random_style or '-'}, warn before {show(settings.warn_before)}, "
            f"from rewrite {settings.from_rewrite or FROM_REWRITE_DEFAULT}"
            f"{', shared with every user' if settings.shared else ''}"
            f"{', replies on' if settings.replies else ''}")


@domain.command("show")
@click.argument("name", type=DOMAIN)
@json_option
@pass_app
def show(app, name):
    """Show a domain's defaults for new aliases and its warning setting."""
    with app.store() as store:
        settings = store.domain_settings(name)
    app.emit({"ok": True, "domain": name, "settings": _settings_json(settings)},
             _settings_text(name, settings))


def settings_options(func):
    """The options of `domain set` (and `domain ensure`)."""
    for option in reversed((
        click.option("--default-ttl", type=DURATION_OR_NONE, help="TTL of new aliases ('none' clears)."),
        click.option("--default-idle", type=DURATION_OR_NONE, help="Idle limit of new aliases."),
        click.option("--on-expiry", type=click.Choice(["reject", "drop", "none"]),
                     help="Default on-expiry action of new aliases."),
        click.option("--random-style", type=click.Choice(["token", "words", "none"]),
                     help="Style of random local parts."),
        click.option("--warn-before", type=DURATION_OR_NONE,
                     help="Warn the owner this long before expiry (off: 'none')."),
        click.option("--from-rewrite", type=click.Choice(["never", "when-needed", "always"]),
                     help="DMARC-safe From rewriting for the domain's aliases (default when-needed)."),
        click.option("--shared/--not-shared", default=None,
                     help="Every user may create addresses here (else only users given the domain)."),
        click.option("--replies", type=click.Choice(["on", "off"]),
                     help="Replies through reverse aliases for the domain's aliases that do not say "
                          "(default off)."),
    )):
        func = option(func)
    return func


def _set_settings(app, store, name, default_ttl=None, default_idle=None, on_expiry=None, random_style=None,
                  warn_before=None, from_rewrite=None, shared=None, replies=None):
    """Apply the settings given (None: left as it is); the settings after, and whether they changed."""
    given = {"ttl": default_ttl, "idle": default_idle, "on_expiry": on_expiry,
             "random_style": random_style, "warn_before": warn_before, "from_rewrite": from_rewrite,
             "shared": shared, "replies": None if replies is None else replies == "on"}
    if replies == "on" and not app.config["replies"]["domain"]:
        raise UsageError("replies need a reply domain: set [replies] domain in the configuration first")
    changes = {k: (None if v == "none" else v) for k, v in given.items() if v is not None}
    if changes.get("on_expiry"):
        changes["on_expiry"] = OnExpiry(changes["on_expiry"])
    if changes.get("from_rewrite") == FROM_REWRITE_DEFAULT:
        changes["from_rewrite"] = None     # the default is kept as "not set": no change to report
    before = store.domain_settings(name)
    after = dataclasses.replace(before, **changes)
    if after != before:
        store.set_domain_settings(name, after)
    return after, after != before


@domain.command("set")
@click.argument("name", type=DOMAIN)
@settings_options
@json_option
@pass_app
def set_(app, name, **settings):
    """Set a domain's defaults; options not given stay as they are."""
    with app.store() as store:
        after, changed = _set_settings(app, store, name, **settings)
    app.emit({"ok": True, "domain": name, "changed": changed, "settings": _settings_json(after)},
             _settings_text(name, after))


@domain.command("ensure")
@click.argument("name", type=DOMAIN)
@click.option("--absent", is_flag=True, help="Make sure the domain is not tmail's.")
@click.option("--force", is_flag=True, help="With --absent: remove its aliases too.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing (check mode).")
@settings_options
@json_option
@pass_app
def ensure(app, name, absent, force, dry_run, **settings):
    """Make NAME a tmail domain with these settings, or none with --absent;
    says whether anything changed (idempotent, for Ansible). With --dry-run
    the same work is done and rolled back, Postfix left alone."""
    with app.store(dry_run=dry_run) as store:
        exists = store.is_tmail_domain(name)
        if absent:
            removed = _remove(store, name, force) if exists else 0
            if exists and not dry_run:
                sync_maps(app.config, store.domain_names())   # before the removal commits
            after, changed = None, exists
        else:
            if not exists:
                _add(app, store, name)
            after, changed = _set_settings(app, store, name, **settings)
            changed = changed or not exists
    if changed and not absent and not dry_run:
        _sync_after_add(app, name)
    data = {"ok": True, "domain": name, "changed": changed, "dry_run": dry_run,
            "settings": _settings_json(after) if after else None}
    if absent:
        data["aliases_removed"] = removed
    done = ("would be " if dry_run else "") + ("removed" if absent else "changed")
    app.emit(data, f"{name}: " + (done if changed else "absent" if absent else "unchanged"))


COMMANDS = [domain]
