"""The HTTP API: tokens only, JSON only, never a redirect.

- Every request but the CORS preflight and the OpenAPI document carries a
  token: `Authorization: Bearer <token>` (addy.io's clients, tmail's own) or
  `Authentication: <token>` (SimpleLogin's). Cookies are not read here, so
  a browser's session cannot be ridden (no CSRF to defend against).
- A token acts as its user: their domains, destinations and limits. Its
  scopes decide what it may do (core.api_tokens).
- Requests are counted per token and per user (throttle.API_*): 429 with
  Retry-After past the limit.
- Errors are {"ok": false, "error": "..."} with 400, 401, 403, 404, 405,
  409, 413, 429 or 503, including for paths that do not exist.
"""
from __future__ import annotations

import functools

from flask import Blueprint, Flask, current_app, g, jsonify, request

from ...core.accounts import User, token_hash
from ...core.api_tokens import ApiToken
from ...db.accounts import Accounts
from ...db.api_tokens import ApiTokens
from .. import database as db
from .. import throttle

bp = Blueprint("api", __name__, url_prefix="/api")

PREFIX = "/api/"
MAX_TOKEN = 200
PUBLIC = frozenset({"api.openapi"})
WRONG_TOKENS = "tmail_wrong_api_tokens"
INVALID = "this API token is not valid (revoked, mistyped, or its account is disabled)"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Authentication, Content-Type, Accept, X-Requested-With",
    "Access-Control-Max-Age": "86400",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def is_api_request() -> bool:
    return request.path == PREFIX.rstrip("/") or request.path.startswith(PREFIX)


def error(status: int, message: str, headers: dict | None = None):
    response = jsonify({"ok": False, "error": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def user() -> User:
    assert g.api_user is not None
    return g.api_user


def requires(scope: str):
    """The view needs a token with `scope`."""
    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            token: ApiToken = g.api_token
            if not token.allows(scope):
                raise ApiError(403, f"this token may not {scope}: give it the {scope!r} scope "
                                    "(a new token, on the web app's API page)")
            return view(*args, **kwargs)
        return checked
    return decorate


def _presented() -> str | None:
    bearer = request.headers.get("Authorization", "")
    scheme, _, value = bearer.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    plain = request.headers.get("Authentication", "").strip()     # SimpleLogin: no scheme
    return plain or None


def _unauthorised(message: str):
    return error(401, message, {"WWW-Authenticate": 'Bearer realm="tmail"'})


@bp.before_request
def _authenticate():
    g.api_token = g.api_user = None
    if request.method == "OPTIONS":
        return current_app.response_class(status=204)
    if request.endpoint in PUBLIC:
        return None
    presented = _presented()
    if presented is None:
        return _unauthorised("no API token: send 'Authorization: Bearer <token>'")
    state = current_app.extensions["tmail"]
    now, client, wrong = state.now(), request.remote_addr or "", current_app.extensions[WRONG_TOKENS]
    wait = wrong.retry_after(client, now)
    if wait is not None:
        return error(429, f"too many wrong tokens from your address; try again in {wait} s",
                     {"Retry-After": str(wait)})
    # Read first, in a read-only transaction: a wrong token (anyone on the
    # network can send one) never takes SQLite's write lock.
    with state.engine.connect().execution_options(readonly=True) as conn:
        found = ApiTokens(conn).by_hash(token_hash(presented)) if len(presented) <= MAX_TOKEN else None
        owner = Accounts(conn).user(found.user_id) if found else None
    if found is None or owner is None or not owner.enabled:
        wrong.note(client, now)
        return _unauthorised(INVALID)
    if not found.usable(now):
        return _unauthorised(f"this API token expired on {found.expires_at:%Y-%m-%d %H:%M} UTC")
    checks = ((throttle.API_TOKEN, str(found.id)), (throttle.API_USER, str(owner.id)))

    def count(conn):
        """In one short write transaction of its own, before the request's
        (on SQLite a second writer would wait for the first)."""
        accounts = Accounts(conn)
        accounts.lock_user(owner.id)       # parallel requests are counted one by one
        if ApiTokens(conn).get(owner.id, found.id) is None:       # revoked meanwhile
            return _unauthorised(INVALID)
        if throttle.exceeded(accounts, now, *checks):
            wait = throttle.retry_after(accounts, now, *checks)
            return error(429, f"too many requests: at most {throttle.API_TOKEN.attempts} a minute per token "
                              f"and {throttle.API_USER.attempts} per account; try again in {wait} s",
                         {"Retry-After": str(wait)})
        throttle.note(accounts, now, *checks)
        if ApiTokens(conn).touch_due(found, now):
            ApiTokens(conn).touch(found.id, now)
        return None
    refusal = db.write(count)
    if refusal is None:
        g.api_token, g.api_user = found, owner
    return refusal


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error(exc.status, exc.message, exc.headers)


def _cors(response):
    if is_api_request():
        response.headers.update(CORS)
        response.headers.remove("Set-Cookie")      # the API never sets one
    return response


def init_app(app: Flask) -> None:
    app.extensions[WRONG_TOKENS] = throttle.LocalWindow(throttle.API_BAD_TOKEN)
    app.register_blueprint(bp)
    app.after_request(_cors)


from . import aliases, compat  # noqa: E402,F401  (their routes join bp)
