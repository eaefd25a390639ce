"""The API page: the user's API tokens (made after the password is typed
again, shown once, revoked at once) and their API defaults.

A token is shown on the page that creates it and never again: the
database keeps only its hash and its first characters (tmail.db.api_tokens).
Addresses made through the API (a password manager's) get the user's API
defaults, not the domain's: no expiry unless the user sets one, and the
domain the user chose, else the first they may use (api.bodies).
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from ..core import api_tokens as rules
from ..core.accounts import User, usable_domains
from ..db.api_tokens import ApiTokens
from ..db.store import StoreError
from . import access, forms
from . import database as db
from .account import password_refusal
from .api import ApiError
from .api.bodies import default_domain

bp = Blueprint("tokens", __name__)

MAX_TOKENS = 50
SCOPE_TEXT = {
    rules.CREATE: "create addresses",
    rules.READ: "list your addresses and destinations",
    rules.CHANGE: "change, extend, disable and delete your addresses",
}


def _state():
    return current_app.extensions["tmail"]


def exact_duration(delta: timedelta | None) -> str:
    """A duration as the form reads it back, to the second ("1d2h3m")."""
    if not delta:
        return ""
    seconds, parts = int(delta.total_seconds()), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:]


def _automatic(user: User) -> str | None:
    """The domain the API picks when the user chose none (or one no longer theirs)."""
    try:
        return default_domain(dataclasses.replace(user, api_domain=None))
    except ApiError:
        return None


def _page(error: str = "", status: int = 200, values: dict | None = None, defaults: dict | None = None):
    user, state = access.user(), _state()
    now = state.now()
    domains = usable_domains(user, db.accounts().shared_domains())
    return render_template(
        "tokens.html", error=error, tokens=ApiTokens(db.conn()).of_user(user.id), now=now,
        scopes=rules.SCOPES, scope_text=SCOPE_TEXT, max_name=rules.MAX_NAME,
        values=values or {"name": "", "expires": "", "scopes": rules.SCOPES},
        defaults=defaults or {"ttl": exact_duration(user.api_ttl), "domain": user.api_domain or ""},
        api_ttl=exact_duration(user.api_ttl), api_domain=user.api_domain, domains=domains,
        automatic=_automatic(user), tomorrow=(now + timedelta(days=1)).date().isoformat(),
        base_url=state.config.base_url), status


@bp.get("/account/api")
def index():
    return _page()


@bp.post("/account/api/tokens")
def create():
    user, now = access.user(), _state().now()
    wanted = [scope[:40] for scope in request.form.getlist("scopes")[:len(rules.SCOPES) + 1]]
    values = {"name": request.form.get("name", "")[:rules.MAX_NAME], "expires": request.form.get("expires", "")[:40],
              "scopes": wanted}
    refused = password_refusal()
    if refused:
        return _page(refused, 400, values)
    try:
        name = rules.check_name(forms.field(request.form, "name", "The name", rules.MAX_NAME))
        scopes = rules.check_scopes(wanted)
        expires = forms.future_time(request.form, "expires", "Expiry date", now)
    except (rules.TokenError, forms.FormError) as exc:
        return _page(_sentence(exc), 400, values)
    tokens = ApiTokens(db.conn())
    if len(tokens.of_user(user.id)) >= MAX_TOKENS:
        return _page(f"You have {MAX_TOKENS} API tokens, the most you may; revoke one first.", 400, values)
    try:
        token, record = tokens.add(user.id, name, scopes, now, expires)
    except StoreError:      # the same name (maybe from a request at the same time)
        return _page(f"You have a token named “{name}” already: revoke it or choose another name.", 400, values)
    return render_template("token_created.html", token=token, record=record, scope_text=SCOPE_TEXT,
                           base_url=_state().config.base_url)


@bp.post("/account/api/tokens/<int:token_id>/revoke")
def revoke(token_id: int):
    user = access.user()
    tokens = ApiTokens(db.conn())
    found = tokens.get(user.id, token_id) if token_id <= access.MAX_ID else None
    if found is None:
        abort(404)                  # another user's token is not found either
    tokens.revoke(user.id, found.id)
    flash(f"The token “{found.name}” is revoked: it no longer works.")
    return redirect(url_for("tokens.index"), 303)


@bp.post("/account/api/defaults")
def defaults():
    user = access.user()
    values = {"ttl": request.form.get("ttl", "")[:40], "domain": request.form.get("domain", "")[:255]}
    try:
        ttl = forms.duration(request.form, "ttl", "Expire after")
        domain = forms.field(request.form, "domain", "The domain", 255).lower() or None
    except forms.FormError as exc:
        return _page(str(exc), 400, defaults=values)
    if domain is not None and domain not in usable_domains(user, db.accounts().shared_domains()):
        return _page(f"You cannot create addresses at {domain}; choose one of your domains.", 400, defaults=values)
    db.accounts().set_user(user.id, api_ttl_seconds=int(ttl.total_seconds()) if ttl else None, api_domain=domain)
    when = f"expire {exact_duration(ttl)} after they are made" if ttl else "never expire"
    flash(f"Saved: addresses made through the API {when}, at "
          f"{'@' + domain if domain else 'the domain chosen automatically'}.")
    return redirect(url_for("tokens.index"), 303)
