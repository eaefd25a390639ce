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
    if name in app.config.service_domains:
        raise CommandError(f"{name} is tmail's SRS or reply domain; it cannot also hold aliases")
    with app.store() as store:
        changed = store.add_domain(name, utcnow())
        names = store.domain_names()
    # Postfix learns of the domain only once the database has it: it never
    # routes mail to tmail for a domain the milter does not know yet.
    try:
        maps = sync_maps(app.config, names)
    except (CommandError, OSError) as exc:
        raise CommandError(f"{name} was added, but Postfix's tables could not be written "
                           f"({exc}); run `tmail postfix sync`") from None
    app.emit({"ok": True, "domain": name, "changed": changed, "postfix_maps": maps},
             f"added {name}" if changed else f"{name} exists already")


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
    from ..db.store import AliasFilter
    now = utcnow()
    with app.store() as store:
        # Each alias goes the way `alias remove` does, so its address stays
        # quarantined: re-adding the domain must not hand a previous owner's
        # address to someone else.
        records = store.list_aliases(AliasFilter(domain=name), now) if force else []
        for record in records:
            store.remove_alias(record, now)
        removed = len(records) + store.remove_domain(name, force)
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


@domain.command("set")
@click.argument("name", type=DOMAIN)
@click.option("--default-ttl", type=DURATION_OR_NONE, help="TTL of new aliases ('none' clears).")
@click.option("--default-idle", type=DURATION_OR_NONE, help="Idle limit of new aliases.")
@click.option("--on-expiry", type=click.Choice(["reject", "drop", "none"]),
              help="Default on-expiry action of new aliases.")
@click.option("--random-style", type=click.Choice(["token", "words", "none"]),
              help="Style of random local parts.")
@click.option("--warn-before", type=DURATION_OR_NONE,
              help="Warn the owner this long before expiry (off: 'none').")
@click.option("--from-rewrite", type=click.Choice(["never", "when-needed", "always"]),
              help="DMARC-safe From rewriting for the domain's aliases (default when-needed).")
@click.option("--shared/--not-shared", default=None,
              help="Every user may create addresses here (else only users given the domain).")
@click.option("--replies", type=click.Choice(["on", "off"]),
              help="Replies through reverse aliases for the domain's aliases that do not say (default off).")
@json_option
@pass_app
def set_(app, name, default_ttl, default_idle, on_expiry, random_style, warn_before, from_rewrite, shared,
         replies):
    """Set a domain's defaults; options not given stay as they are."""
    given = {"ttl": default_ttl, "idle": default_idle, "on_expiry": on_expiry,
             "random_style": random_style, "warn_before": warn_before, "from_rewrite": from_rewrite,
             "shared": shared, "replies": None if replies is None else replies == "on"}
    if replies == "on" and not app.config["replies"]["domain"]:
        raise UsageError("replies need a reply domain: set [replies] domain in the configuration first")
    changes = {k: (None if v == "none" else v) for k, v in given.items() if v is not None}
    if changes.get("on_expiry"):
        changes["on_expiry"] = OnExpiry(changes["on_expiry"])
    with app.store() as store:
        before = store.domain_settings(name)
        after = dataclasses.replace(before, **changes)
        if after != before:
            store.set_domain_settings(name, after)
    app.emit({"ok": True, "domain": name, "changed": after != before, "settings": _settings_json(after)},
             _settings_text(name, after))


COMMANDS = [domain]
