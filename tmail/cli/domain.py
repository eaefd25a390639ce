"""tmail domain add | list | remove"""
from __future__ import annotations

import click

from ..core.durations import utcnow
from .app import CommandError, json_option, pass_app
from .postfix import sync_maps
from .params import DOMAIN


@click.group()
def domain():
    """The domains tmail hands out aliases at."""


@domain.command("add")
@click.argument("name", type=DOMAIN)
@json_option
@pass_app
def add(app, name):
    """Add a domain (nothing changes if it is there already)."""
    if name == app.config["srs"]["domain"]:
        raise CommandError(f"{name} is the SRS domain; it cannot also hold aliases")
    with app.store() as store:
        changed = store.add_domain(name, utcnow())
        maps = sync_maps(app.config, store.domain_names())  # a failure rolls back
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
    with app.store() as store:
        removed = store.remove_domain(name, force)
        sync_maps(app.config, store.domain_names())
    app.emit({"ok": True, "domain": name, "changed": True, "aliases_removed": removed},
             f"removed {name}" + (f" and its {removed} alias(es)" if removed else ""))


COMMANDS = [domain]
