"""`tmail alias contact`: the outside parties an alias talks to, and their
reverse aliases (the addresses a reply, or a first message, is written to)."""
from __future__ import annotations

import click

from ..core.aliases import check_destinations
from ..core.durations import utcnow
from ..db.contacts import Contacts
from .alias import _lookup, alias, alias_rules
from .app import CommandError, UsageError, json_option, pass_app
from .params import ADDRESS


def _describe(contact, reply_domain: str) -> dict:
    return {"address": contact.address, "name": contact.name,
            "reply_address": contact.reply_address(reply_domain), "created_at": contact.created_at,
            "last_at": contact.last_at, "forwarded": contact.forwarded, "replied": contact.replied}


def _reply_domain(app) -> str:
    domain = app.config["replies"]["domain"]
    if not domain:
        raise UsageError("replies are not set up: set [replies] domain in the configuration first")
    return domain


@alias.group("contact")
def contact():
    """Contacts of an alias and their reverse aliases (replies)."""


@contact.command("add")
@click.argument("address", type=ADDRESS)
@click.argument("outside", type=ADDRESS)
@json_option
@pass_app
def add(app, address, outside):
    """Print the reverse alias to write to, so that ADDRESS writes to OUTSIDE
    (made if new; the same one again if not)."""
    reply_domain = _reply_domain(app)
    with app.store() as store:
        record = _lookup(store, address)
        if not record.replies_on:
            raise CommandError(f"replies are off for {record.address}: turn them on with "
                               f"`tmail alias set {record.address} --replies on`")
        # an outside address, never one of tmail's own (that would be a loop)
        (target,) = check_destinations([str(outside)], alias_rules(app, store))
        found, made = Contacts(store.conn).ensure(record.id, target, "", utcnow())
    app.emit({"ok": True, "changed": made, "alias": record.address, "contact": _describe(found, reply_domain)},
             f"write to {found.reply_address(reply_domain)} from your own mailbox: "
             f"{found.address} receives it from {record.address}")


@contact.command("list")
@click.argument("address", type=ADDRESS)
@json_option
@pass_app
def list_(app, address):
    """The contacts of ADDRESS, most recent first."""
    reply_domain = _reply_domain(app)
    with app.store() as store:
        record = _lookup(store, address)
        found = Contacts(store.conn).of_alias(record.id)
    app.emit({"ok": True, "alias": record.address, "contacts": [_describe(c, reply_domain) for c in found]},
             "\n".join(f"{c.address}  via {c.reply_address(reply_domain)}  ({c.forwarded} in, {c.replied} out)"
                       for c in found) or "no contacts")


@contact.command("remove")
@click.argument("address", type=ADDRESS)
@click.argument("outside", type=ADDRESS)
@json_option
@pass_app
def remove(app, address, outside):
    """Forget a contact: its reverse alias no longer carries replies."""
    with app.store() as store:
        record = _lookup(store, address)
        book = Contacts(store.conn)
        found = book.get(record.id, str(outside))
        if found is not None:
            book.remove(found.id)
    app.emit({"ok": True, "changed": found is not None, "alias": record.address, "contact": str(outside)},
             f"{outside}: {'removed' if found else 'no such contact'}")
