"""tmail user add | list | show | set | disable | enable | remove | reset-password | invite

Accounts of the people who own addresses. A new user's own address is
their first destination, verified. Without --password-stdin, a one-time
link to set the password is printed (valid 24 hours, single use).
"""
from __future__ import annotations

import sys

import click

from ..core import accounts as rules
from ..core.accounts import AccountError, User
from ..core.durations import utcnow
from .app import CommandError, UsageError, json_option, pass_app
from .params import ADDRESS, DOMAIN


class Limit(click.ParamType):
    """A count, or 'none' for the configured default."""
    name = "n|none"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value is None:
            return value
        if value.strip().lower() == "none":
            return "none"
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number or 'none'", param, ctx)
        if number < 0:
            self.fail("must not be negative", param, ctx)
        return number


LIMIT = Limit()


def user_json(user: User, destinations) -> dict:
    return {"email": user.email, "admin": user.is_admin, "enabled": user.enabled,
            "domains": list(user.domains), "max_aliases": user.max_aliases,
            "aliases_per_hour": user.max_per_hour, "password_set": user.has_password,
            "totp": user.totp_secret is not None, "created_at": user.created_at,
            "last_login_at": user.last_login_at,
            "destinations": [{"address": d.address, "verified": d.verified} for d in destinations]}


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    try:
        return rules.check_password(password)
    except AccountError as exc:
        raise UsageError(str(exc)) from None


def _link(app, path: str, token: str) -> str:
    return f"{app.config.base_url}{path}?token={token}"


def require_user(accounts, email) -> User:
    """The user `email` names (an Accounts lookup), or a clear refusal."""
    user = accounts.user_by_email(str(email))
    if user is None:
        raise CommandError(f"no user {email} (create it with `tmail user add {email}`)")
    return user


def _limit(value):
    return None if value == "none" else value


def _destinations(app, store, addresses) -> list[str]:
    """Checked as an alias's destinations are: never at tmail's own domains
    or the SRS domain (a loop)."""
    from ..core import aliases as alias_rules
    from ..core.address import AddressError
    from .alias import alias_rules as rules_for
    try:
        return list(alias_rules.check_destinations([str(a) for a in addresses], rules_for(app, store)))
    except AddressError as exc:
        raise UsageError(str(exc)) from None


@click.group("user")
def user():
    """Accounts of the people who own addresses."""


@user.command("add")
@click.argument("email", type=ADDRESS)
@click.option("--admin", is_flag=True, help="May see every user and domain in the web app.")
@click.option("--domain", "domains", type=DOMAIN, multiple=True,
              help="A domain this user may create addresses at (besides shared ones).")
@click.option("--max-aliases", type=LIMIT, help="Active addresses at most (none: [web] max_aliases).")
@click.option("--aliases-per-hour", type=LIMIT, help="New addresses an hour at most.")
@click.option("--verified-destination", "verified", type=ADDRESS, multiple=True,
              help="A destination taken as verified (the user's own address always is).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@pass_app
def add(app, email, admin, domains, max_aliases, aliases_per_hour, verified, password_stdin):
    """Create a user; prints a one-time link to set the password."""
    from ..db.accounts import Accounts
    from ..passwords import hash_password
    try:
        rules.check_account_address(str(email))
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    password = _password(password_stdin)
    now = utcnow()
    with app.store() as store:
        accounts = Accounts(store.conn)
        if accounts.user_by_email(str(email)) is not None:
            raise CommandError(f"user {email} exists already")
        addresses = _destinations(app, store, (email, *verified))
        created = accounts.add_user(str(email), now, is_admin=admin, max_aliases=_limit(max_aliases),
                                    max_per_hour=_limit(aliases_per_hour))
        accounts.set_user_domains(created.id, list(domains))
        for address in addresses:
            accounts.add_destination(created.id, address, now, verified=True)
        link = None
        if password is not None:
            accounts.set_password(created.id, hash_password(password), now)
        else:
            token = accounts.issue_token(rules.SET_PASSWORD, created.id, "", now,
                                         rules.TOKEN_LIFETIMES[rules.SET_PASSWORD])
            link = _link(app, "/password", token)
        shown = accounts.user(created.id)
        data = user_json(shown, accounts.destinations(created.id))
    app.emit({"ok": True, "changed": True, "user": data, "link": link},
             f"created user {shown.email}" + (f"\nset the password (valid 24 h, once): {link}" if link else ""))


@user.command("list")
@json_option
@pass_app
def list_(app):
    """Every user."""
    from ..db.accounts import Accounts
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = [user_json(u, accounts.destinations(u.id)) for u in accounts.list_users()]
    app.emit({"ok": True, "users": found},
             "\n".join(f"{u['email']:40} {'admin ' if u['admin'] else ''}"
                       f"{'enabled' if u['enabled'] else 'disabled'}  domains: {', '.join(u['domains']) or '-'}"
                       for u in found) or "no users")


@user.command("show")
@click.argument("email", type=ADDRESS)
@json_option
@pass_app
def show(app, email):
    """One user, with their destinations."""
    from ..db.accounts import Accounts
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = require_user(accounts, email)
        data = user_json(found, accounts.destinations(found.id))
    lines = [f"{data['email']}: {'enabled' if data['enabled'] else 'disabled'}"
             f"{', admin' if data['admin'] else ''}, password {'set' if data['password_set'] else 'not set'}",
             f"  domains: {', '.join(data['domains']) or '-'}"]
    lines += [f"  destination {d['address']} ({'verified' if d['verified'] else 'not verified'})"
              for d in data["destinations"]]
    app.emit({"ok": True, "user": data}, "\n".join(lines))


@user.command("set")
@click.argument("email", type=ADDRESS)
@click.option("--admin/--no-admin", default=None)
@click.option("--domain", "domains", type=DOMAIN, multiple=True,
              help="The domains this user may use (replaces the ones given before).")
@click.option("--no-domains", is_flag=True, help="Take away every domain given to this user.")
@click.option("--max-aliases", type=LIMIT)
@click.option("--aliases-per-hour", type=LIMIT)
@click.option("--verified-destination", "verified", type=ADDRESS, multiple=True)
@json_option
@pass_app
def set_(app, email, admin, domains, no_domains, max_aliases, aliases_per_hour, verified):
    """Change a user's settings (what is not given stays)."""
    from ..db.accounts import Accounts
    if domains and no_domains:
        raise UsageError("--domain and --no-domains exclude each other")
    now = utcnow()
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = require_user(accounts, email)
        before = user_json(found, accounts.destinations(found.id))
        values = {}
        if admin is not None:
            values["is_admin"] = admin
        if max_aliases is not None:
            values["max_aliases"] = _limit(max_aliases)
        if aliases_per_hour is not None:
            values["max_per_hour"] = _limit(aliases_per_hour)
        if values:
            accounts.set_user(found.id, **values)
        if domains or no_domains:
            accounts.set_user_domains(found.id, list(domains))
        for address in _destinations(app, store, verified) if verified else []:
            accounts.add_destination(found.id, address, now, verified=True)
        data = user_json(accounts.user(found.id), accounts.destinations(found.id))
    app.emit({"ok": True, "changed": data != before, "user": data},
             f"{data['email']}: {'changed' if data != before else 'nothing to change'}")


def _enable(app, email, enabled: bool):
    from ..db.accounts import Accounts
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = require_user(accounts, email)
        changed = found.enabled != enabled
        accounts.set_user(found.id, enabled=enabled)
        if not enabled:
            from ..db.api_tokens import ApiTokens
            accounts.end_sessions(found.id)     # signed out everywhere, at once
            ApiTokens(store.conn).revoke_all(found.id)      # and no program acts for them
    app.emit({"ok": True, "changed": changed},
             f"{found.email} {'enabled' if enabled else 'disabled'}" + ("" if changed else " already"))


@user.command("disable")
@click.argument("email", type=ADDRESS)
@json_option
@pass_app
def disable(app, email):
    """Sign the user out everywhere and refuse their sign-ins (their addresses keep working)."""
    _enable(app, email, False)


@user.command("enable")
@click.argument("email", type=ADDRESS)
@json_option
@pass_app
def enable(app, email):
    """Allow the user to sign in again."""
    _enable(app, email, True)


@user.command("remove")
@click.argument("email", type=ADDRESS)
@click.option("--force", is_flag=True, help="Remove the user's addresses too (they stay quarantined).")
@json_option
@pass_app
def remove(app, email, force):
    """Remove a user (refused while they own addresses, unless --force)."""
    from ..db.accounts import Accounts
    from ..db.store import AliasFilter
    now = utcnow()
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = require_user(accounts, email)
        owned = [r for r in store.list_aliases(AliasFilter(owner_id=found.id), now)]
        if owned and not force:
            raise CommandError(f"{found.email} owns {len(owned)} address(es); remove them first or use --force")
        for record in owned:
            store.remove_alias(record, now)
        accounts.remove_user(found.id)
    app.emit({"ok": True, "changed": True, "removed_aliases": [r.address for r in owned]},
             f"removed {found.email}" + (f" and {len(owned)} address(es)" if owned else ""))


@user.command("reset-password")
@click.argument("email", type=ADDRESS)
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@json_option
@pass_app
def reset_password(app, email, password_stdin):
    """Print a one-time link to choose a new password (or set it); every
    session and API token of the user ends."""
    from ..db.accounts import Accounts
    from ..db.api_tokens import ApiTokens
    from ..passwords import hash_password
    password = _password(password_stdin)
    now = utcnow()
    with app.store() as store:
        accounts = Accounts(store.conn)
        found = require_user(accounts, email)
        accounts.end_sessions(found.id)
        ApiTokens(store.conn).revoke_all(found.id)     # a reset after a break-in: the intruder's tokens too
        link = None
        if password is not None:
            accounts.set_password(found.id, hash_password(password), now)
        else:
            token = accounts.issue_token(rules.SET_PASSWORD, found.id, "", now,
                                         rules.TOKEN_LIFETIMES[rules.SET_PASSWORD])
            link = _link(app, "/password", token)
    app.emit({"ok": True, "changed": True, "link": link},
             f"choose a new password (valid 24 h, once): {link}" if link else f"password of {found.email} set")


@user.command("invite")
@json_option
@pass_app
def invite(app):
    """A one-time sign-up link (valid 7 days), for [web] signup = "invite"."""
    from ..db.accounts import Accounts
    if app.config["web"]["signup"] != "invite":
        raise CommandError(f'{app.config.path}: [web] signup is "{app.config["web"]["signup"]}", '
                           'not "invite": an invitation would not be accepted')
    with app.store() as store:
        token = Accounts(store.conn).issue_token(rules.INVITE, None, "", utcnow(),
                                                 rules.TOKEN_LIFETIMES[rules.INVITE])
    link = _link(app, "/signup", token)
    app.emit({"ok": True, "changed": True, "link": link}, f"sign-up link (valid 7 days, once): {link}")


COMMANDS = [user]
