"""Who may see and change what: every request passes through here.

- A page needs a signed-in user unless its view is marked @public.
- The admin pages (the "admin" blueprint) need an admin; to anyone else
  they do not exist (404).
- A user's things are fetched with the user's id (tmail.db.accounts), so
  another user's alias, destination or session is simply not found: 404,
  the same answer as for an id that does not exist, whatever is guessed.

Sessions: the cookie holds a random id; the database keeps only its hash
(Accounts.new_session). The cookie is HttpOnly and SameSite=Lax, Secure
(with the __Host- prefix) when [web] secure_cookies is on.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, url_for

from ..core.accounts import User
from . import database as db

DEFAULT_PAGE = "/addresses"


def public(view):
    """Reachable without signing in (sign-in, links from mail, sign-up)."""
    view.public = True
    return view


def cookie_name() -> str:
    secure = current_app.extensions["tmail"].config["web"]["secure_cookies"]
    return "__Host-tmail_sid" if secure else "tmail_sid"


def user() -> User:
    """The signed-in user (the gate let only them through)."""
    assert g.user is not None
    return g.user


def _load_user() -> None:
    g.user, g.session = None, None
    session_id = request.cookies.get(cookie_name())
    if not session_id or request.endpoint == "static":
        return
    state = current_app.extensions["tmail"]
    now = state.now()
    accounts = db.accounts()
    found = accounts.session(session_id, now)
    owner = accounts.user(found.user_id) if found else None
    if found is None or owner is None or not owner.enabled:
        g.clear_cookie = True
        return
    if accounts.touch_due(found, now):
        db.write(lambda conn: type(accounts)(conn).touch_session(found.id_hash, now))
    g.user, g.session = owner, found


def _gate():
    if request.path == "/api" or request.path.startswith("/api/"):
        g.user = g.session = None      # the API reads no cookie: its own token check (tmail.web.api)
        return None
    _load_user()
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or request.endpoint == "static" or getattr(view, "public", False):
        return None
    if g.user is None:
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.sign_in", next=wanted), 303)
    if request.blueprint == "admin" and not g.user.is_admin:
        abort(404)
    return None


def start_session(user: User) -> None:
    """Sign `user` in: a new session (any previous one of this browser ends)."""
    state = current_app.extensions["tmail"]
    accounts = db.accounts()
    if g.get("session") is not None:
        accounts.end_session(g.session.user_id, g.session.id_hash)
    g.set_session = accounts.new_session(
        user.id, state.now(), state.config.duration("web", "session_lifetime"),
        request.remote_addr or "", request.user_agent.string or "")


def end_session() -> None:
    if g.get("session") is not None:
        db.accounts().end_session(g.session.user_id, g.session.id_hash)
    g.clear_cookie = True


def _cookies(response):
    state = current_app.extensions["tmail"]
    if g.get("set_session"):
        response.set_cookie(
            cookie_name(), g.set_session, max_age=int(state.config.duration("web", "session_lifetime")
                                                      .total_seconds()),
            path="/", secure=state.config["web"]["secure_cookies"], httponly=True, samesite="Lax")
    elif g.get("clear_cookie"):
        response.delete_cookie(cookie_name(), path="/", secure=state.config["web"]["secure_cookies"],
                               httponly=True, samesite="Lax")
    return response


# -- a user's things: found with the user's id, or 404 -------------------------
MAX_ID = 2**63 - 1      # what the databases store; a longer number in a URL is nobody's


def owned_alias(alias_id: int):
    if alias_id <= MAX_ID and request.method not in ("GET", "HEAD"):
        db.accounts().lock_owned_alias(user().id, alias_id)     # a change: read it under a lock
    found = db.accounts().owned_alias(user().id, alias_id) if alias_id <= MAX_ID else None
    if found is None:
        abort(404)
    return found


def owned_destination(destination_id: int):
    found = db.accounts().destination(user().id, destination_id) if destination_id <= MAX_ID else None
    if found is None:
        abort(404)
    return found


def owned_session(id_hash: str):
    found = db.accounts().user_session(user().id, id_hash)
    if found is None:
        abort(404)
    return found


def safe_next(value: str | None, default: str = DEFAULT_PAGE) -> str:
    """Where to go after signing in: a path on this site, else the default.
    No scheme, no host, no '//' or backslash (browsers read '/\\evil' as
    '//evil'), nothing unprintable."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or not value.isprintable() or any(c.isspace() for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def init_app(app: Flask) -> None:
    app.before_request(_gate)
    app.after_request(_cookies)
