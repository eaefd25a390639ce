"""tmail token add | list | revoke: API tokens for users (what a password
manager or a script sends). A token is printed once, at `add`; only its
SHA-256 is kept. `revoke` of a token that is gone already succeeds
(changes nothing), so a playbook can run it twice.
"""
from __future__ import annotations

import click

from ..core.api_tokens import SCOPES, ApiToken, TokenError, check_name, check_scopes
from ..core.durations import utcnow
from .app import CommandError, UsageError, json_option, pass_app
from .params import ADDRESS, WHEN
from .user import require_user


def token_json(token: ApiToken, email: str) -> dict:
    return {"id": token.id, "user": email, "name": token.name, "shown": token.shown,
            "scopes": list(token.scopes), "created_at": token.created_at, "expires_at": token.expires_at,
            "last_used_at": token.last_used_at}


def _text(token: ApiToken, email: str) -> str:
    expires = f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "never"
    used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
    return (f"{token.id:>5}  {email}  {token.name!r}  {token.shown}…  {','.join(token.scopes)}  "
            f"expires {expires}  last used {used}")


@click.group()
def token():
    """API tokens (for password managers and scripts)."""


@token.command("add")
@click.option("--user", "email", type=ADDRESS, required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="Which program or device uses it (unique per user).")
@click.option("--expires", type=WHEN, help="Stops working at this date (YYYY-MM-DD[THH:MM], UTC).")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="What it may do (repeatable; default: all of create, read, change).")
@json_option
@pass_app
def add(app, email, name, expires, scopes):
    """Create a token; prints it once (in `token` with --json)."""
    from ..db.accounts import Accounts
    from ..db.api_tokens import ApiTokens
    from ..db.store import StoreError
    now = utcnow()
    try:
        name = check_name(name)
        wanted = check_scopes(list(scopes or SCOPES))
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    if expires is not None and expires <= now:
        raise UsageError(f"--expires: {expires:%Y-%m-%d %H:%M} is in the past")
    with app.store() as store:
        user = require_user(Accounts(store.conn), email)
        try:
            secret, made = ApiTokens(store.conn).add(user.id, name, wanted, now, expires)
        except StoreError as exc:
            raise CommandError(str(exc)) from None
    app.emit({"ok": True, "token": secret, "api_token": token_json(made, user.email)},
             f"{secret}\n(shown once: tmail keeps only its hash)")


@token.command("list")
@click.option("--user", "email", type=ADDRESS, help="Only this user's tokens.")
@json_option
@pass_app
def list_(app, email):
    """Tokens (never the tokens themselves: their first characters)."""
    from ..db.accounts import Accounts
    from ..db.api_tokens import ApiTokens
    with app.store() as store:
        accounts = Accounts(store.conn)
        users = [require_user(accounts, email)] if email else accounts.list_users()
        found = [(t, u.email) for u in users for t in ApiTokens(store.conn).of_user(u.id)]
    app.emit({"ok": True, "tokens": [token_json(t, e) for t, e in found]},
             "\n".join(_text(t, e) for t, e in found) or "no tokens")


@token.command("revoke")
@click.option("--user", "email", type=ADDRESS, required=True, help="The token's user.")
@click.option("--name", help="The token's name.")
@click.option("--id", "token_id", type=click.IntRange(min=1), help="The token's id (tmail token list).")
@json_option
@pass_app
def revoke(app, email, name, token_id):
    """Revoke a token at once (its next request gets 401)."""
    from ..db.accounts import Accounts
    from ..db.api_tokens import ApiTokens
    if (name is None) == (token_id is None):
        raise UsageError("give --name or --id (one of them)")
    with app.store() as store:
        user = require_user(Accounts(store.conn), email)
        tokens = ApiTokens(store.conn)
        found = tokens.by_name(user.id, name) if name is not None else tokens.get(user.id, token_id)
        revoked = found is not None and tokens.revoke(user.id, found.id)
    what = repr(name) if name is not None else f"#{token_id}"
    app.emit({"ok": True, "revoked": revoked},
             f"token {what} of {user.email} revoked" if revoked else f"no token {what} of {user.email}: nothing to do")


COMMANDS = [token]
