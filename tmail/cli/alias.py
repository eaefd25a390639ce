"""tmail alias ...: create, inspect and change aliases."""
from __future__ import annotations

import dataclasses

import click

from .. import defaults
from ..core import aliases as rules_mod
from ..core.address import local_key
from ..core.durations import format_duration, utcnow
from ..core.verdict import AliasRecord
from .app import CommandError, UsageError, json_option, pass_app
from .params import ADDRESS, BLOCK_PATTERN, DOMAIN, DURATION, TEXT, WHEN


def alias_rules(app, store, allow_tmail_destination=False) -> rules_mod.Rules:
    cfg = app.config
    return rules_mod.Rules(
        tmail_domains=frozenset(store.domain_names()),
        service_domains=cfg.service_domains,
        recipient_delimiter=cfg["aliases"]["recipient_delimiter"],
        role_local_parts=defaults.ROLE_LOCAL_PARTS,
        allow_tmail_destinations=allow_tmail_destination or cfg["aliases"]["allow_tmail_destinations"],
    )


def check_not_quarantined(app, store, local: str, domain: str, now) -> None:
    """A removed address stays unused for the quarantine period, so nobody
    receives mail meant for its previous owner."""
    retired_at = store.retired_at(domain, local_key(local))
    if retired_at is None:
        return
    until = retired_at + app.config.duration("lifecycle", "quarantine")
    if now < until:
        raise CommandError(f"{local}@{domain} was removed on {retired_at:%Y-%m-%d}; it is quarantined "
                           f"until {until:%Y-%m-%d} so that nobody receives its previous owner's mail")


def settings_options(func):
    options = [
        click.option("--ttl", type=DURATION, help="Expire this long after creation (7d, 12h, 2w)."),
        click.option("--expires", type=WHEN, help="Expire at this date (YYYY-MM-DD[THH:MM], UTC)."),
        click.option("--max-messages", type=click.IntRange(min=1), help="Expire after N forwarded messages."),
        click.option("--idle", type=DURATION, help="Expire after this long without mail."),
        click.option("--on-expiry", type=click.Choice(["reject", "drop"]),
                     help="Once expired: refuse mail (550 5.2.1) or accept and discard it."),
        click.option("--note", type=TEXT, help="A note for the admin."),
        click.option("--from-rewrite", type=click.Choice(["never", "when-needed", "always", "domain"]),
                     help="DMARC-safe From rewriting for this alias ('domain': the domain's setting)."),
        click.option("--replies", type=click.Choice(["on", "off", "domain"]),
                     help="Replies through reverse aliases ('domain': the domain's setting)."),
        click.option("--display-name", type=TEXT,
                     help="The name replies go out with ('' for none; never the person's own unless set)."),
        click.option("--reply-scrub", type=click.Choice(["on", "off"]),
                     help="Replace exact occurrences of the destinations in replies' text parts."),
        click.option("--allow-tmail-destination", is_flag=True,
                     help="Allow a destination at one of tmail's own domains."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(**kw) -> rules_mod.Settings:
    if kw.get("reply_scrub") is not None:
        kw["reply_scrub"] = kw["reply_scrub"] == "on"
    try:
        return rules_mod.Settings(**kw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def text_of(record: AliasRecord, now) -> str:
    info = rules_mod.describe(record, now)
    lines = [f"{record.address}  ({info['state']}{': ' + info['expiry_reason'] if info['expiry_reason'] else ''})",
             f"  to:        {', '.join(record.destinations)}"]
    if record.expires_at:
        left = format_duration(record.expires_at - now)
        lines.append(f"  expires:   {record.expires_at:%Y-%m-%d %H:%M:%S} UTC ({left} left)")
    if record.max_messages:
        lines.append(f"  messages:  {record.forwarded} of {record.max_messages}")
    if record.idle_limit:
        lines.append(f"  idle:      {format_duration(record.idle_limit)}")
    lines.append(f"  on expiry: {record.on_expiry.value}")
    lines.append(f"  forwarded: {record.forwarded}, refused: {record.refused}, last: "
                 f"{record.last_forwarded_at:%Y-%m-%d %H:%M} UTC" if record.last_forwarded_at
                 else f"  forwarded: {record.forwarded}, refused: {record.refused}")
    if record.blocked:
        lines.append(f"  blocked:   {', '.join(record.blocked)}")
    if record.note:
        lines.append(f"  note:      {record.note}")
    if record.replies_on:
        lines.append(f"  replies:   on{' as ' + repr(record.display_name) if record.display_name else ''}"
                     f"{', real address scrubbed from their text' if record.reply_scrub else ''}")
    return "\n".join(lines)


def owner_email(store, record) -> str | None:
    if record.owner_id is None:
        return None
    from ..db.accounts import Accounts
    found = Accounts(store.conn).user(record.owner_id)
    return found.email if found else None


def _emit_alias(app, record, now, owner=None, **extra):
    app.emit({"ok": True, **extra, "alias": rules_mod.describe(record, now, owner)},
             text_of(record, now) + (f"\n  owner:     {owner}" if owner else ""))


def _owner(store, email):
    """The user --owner names, or a clear refusal."""
    from ..db.accounts import Accounts
    from .user import require_user
    return None if email is None else require_user(Accounts(store.conn), email)


@click.group()
def alias():
    """Aliases: temporary addresses forwarded to real mailboxes."""


@alias.command("add")
@click.argument("local", required=False)
@click.option("--domain", "domain", type=DOMAIN, required=True, help="A tmail domain.")
@click.option("--to", "to", multiple=True, required=True, help="Destination (repeatable).")
@click.option("--random", "random_", is_flag=True, help="Pick an unguessable local part.")
@click.option("--style", type=click.Choice(["token", "words"]),
              help="Random local part style (default from the configuration).")
@click.option("--owner", type=ADDRESS, help="The user who owns it (forwards only to their verified "
              "destinations; a new --to is added to theirs, to be verified).")
@settings_options
@json_option
@pass_app
def add(app, local, domain, to, random_, style, owner, allow_tmail_destination, **options):
    """Create an alias LOCAL@DOMAIN (or a random one with --random)."""
    if bool(local) == bool(random_):
        raise UsageError("give a LOCAL part or --random (one of them)")
    now = utcnow()
    with app.store() as store:
        owner_user = _owner(store, owner)
        store.require_domain(domain)
        domain_defaults = store.domain_settings(domain)
        settings = rules_mod.with_defaults(_settings(**options), domain_defaults)
        rules = alias_rules(app, store, allow_tmail_destination)
        dests = rules_mod.check_destinations(list(to), rules)
        if random_:
            cfg = app.config["aliases"]
            style = style or domain_defaults.random_style or cfg["random_style"]
            for _attempt in range(10):
                local = rules_mod.random_local(style, cfg["random_length"])
                if store.get_alias(local, domain) is None and store.retired_at(domain, local) is None:
                    break
        rules_mod.check_alias_local(local, rules)
        check_not_quarantined(app, store, local, domain, now)
        new = rules_mod.new_alias(local, domain, dests, settings, now)
        if owner_user is not None:
            from ..db.accounts import Accounts
            accounts = Accounts(store.conn)
            for address in dests:
                accounts.add_destination(owner_user.id, address, now)
            new = dataclasses.replace(new, owner_id=owner_user.id)
        record = store.add_alias(new)
    _emit_alias(app, record, now, owner_user.email if owner_user else None, changed=True)


def _lookup(store, address):
    return store.require_alias(address.key, address.domain)


@alias.command("show")
@click.argument("address", type=ADDRESS)
@json_option
@pass_app
def show(app, address):
    """Show an alias with its counters and time left."""
    with app.store() as store:
        record = _lookup(store, address)
        owner = owner_email(store, record)
    _emit_alias(app, record, utcnow(), owner)


@alias.command("list")
@click.option("--domain", type=DOMAIN)
@click.option("--state", type=click.Choice(["active", "expired", "disabled"]))
@click.option("--destination", type=ADDRESS)
@click.option("--expiring-within", type=DURATION, help="Only aliases expiring this soon (3d).")
@click.option("--owner", type=ADDRESS, help="Only the aliases this user owns.")
@json_option
@pass_app
def list_(app, domain, state, destination, expiring_within, owner):
    """List aliases, optionally filtered."""
    from ..db.accounts import Accounts
    from ..db.store import AliasFilter
    now = utcnow()
    with app.reading() as store:
        owner_user = _owner(store, owner)
        records = store.iter_aliases(
            AliasFilter(domain, state, str(destination) if destination else None, expiring_within,
                        owner_user.id if owner_user else None), now)
        emails = {u.id: u.email for u in Accounts(store.conn).list_users()}
        rows = (rules_mod.describe(r, now, emails.get(r.owner_id)) for r in records)
        # written as read: 1,000,000 aliases never sit in memory at once
        app.emit_list("aliases", rows, lambda r: f"{r['address']:45} {r['state']:9} {', '.join(r['destinations'])}",
                      "no aliases")


def _change(app, address, change, describe_change):
    """Apply `change(record) -> record` in one transaction; report if it changed."""
    now = utcnow()
    with app.store() as store:
        record = _lookup(store, address)
        updated = change(record, now)
        changed = not rules_mod.same_settings(record, updated)
        if changed:
            updated = store.replace_alias(updated)
    app.emit({"ok": True, "changed": changed, "alias": rules_mod.describe(updated, now)},
             f"{record.address}: {describe_change if changed else 'unchanged'}")


@alias.command("disable")
@click.argument("address", type=ADDRESS)
@json_option
@pass_app
def disable(app, address):
    """Refuse mail to the alias (550 5.2.1) until enabled again."""
    _change(app, address, lambda r, now: dataclasses.replace(r, enabled=False), "disabled")


@alias.command("enable")
@click.argument("address", type=ADDRESS)
@json_option
@pass_app
def enable(app, address):
    """Accept mail for a disabled alias again."""
    _change(app, address, lambda r, now: dataclasses.replace(r, enabled=True), "enabled")


@alias.command("extend")
@click.argument("address", type=ADDRESS)
@click.option("--by", type=DURATION, help="Move the expiry this much later (from now if past).")
@click.option("--until", type=WHEN, help="Set the expiry to this date.")
@click.option("--max-messages", type=click.IntRange(min=1), help="Raise the message limit.")
@json_option
@pass_app
def extend(app, address, by, until, max_messages):
    """Give an alias more time (or more messages)."""
    if (by is None) == (until is None) and max_messages is None:
        raise UsageError("give --by or --until (one of them), or --max-messages")
    if by is not None and until is not None:
        raise UsageError("give --by or --until, not both")

    def change(record, now):
        expires = record.expires_at
        if by is not None:
            try:
                expires = rules_mod.extended_expiry(expires, now, by)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if until is not None:
            expires = until.replace(microsecond=0)
        limit = max_messages if max_messages is not None else record.max_messages
        return dataclasses.replace(record, expires_at=expires, max_messages=limit)

    _change(app, address, change, "extended")


@alias.command("block-sender")
@click.argument("address", type=ADDRESS)
@click.argument("sender", type=BLOCK_PATTERN)
@json_option
@pass_app
def block_sender(app, address, sender):
    """Refuse mail from SENDER (an address, or @domain) to this alias."""
    _change(app, address,
            lambda r, now: dataclasses.replace(r, blocked=tuple(sorted(set(r.blocked) | {sender}))),
            f"blocked {sender}")


@alias.command("unblock-sender")
@click.argument("address", type=ADDRESS)
@click.argument("sender", type=BLOCK_PATTERN)
@json_option
@pass_app
def unblock_sender(app, address, sender):
    """Accept mail from SENDER again."""
    _change(app, address,
            lambda r, now: dataclasses.replace(r, blocked=tuple(p for p in r.blocked if p != sender)),
            f"unblocked {sender}")


@alias.command("set")
@click.argument("address", type=ADDRESS)
@settings_options
@json_option
@pass_app
def set_(app, address, allow_tmail_destination, **options):
    """Change an alias's settings; options not given stay as they are."""
    settings = _settings(**options)
    if settings.replies == "on" and not app.config["replies"]["domain"]:
        raise UsageError("replies need a reply domain: set [replies] domain in the configuration first")
    _change(app, address, lambda r, now: rules_mod.apply(r, settings, r.created_at or now), "changed")


@alias.command("remove")
@click.argument("address", type=ADDRESS)
@json_option
@pass_app
def remove(app, address):
    """Delete an alias (its address is then quarantined)."""
    with app.store() as store:
        record = _lookup(store, address)
        store.remove_alias(record, utcnow())
    app.emit({"ok": True, "changed": True, "address": record.address}, f"removed {record.address}")


COMMANDS = [alias]

from . import alias_bulk, contact  # noqa: E402,F401  (register ensure, import and contact on the group)
