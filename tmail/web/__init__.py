"""The web app for the people who own addresses (Flask, server-rendered).

create_app() builds it from a loaded configuration; tmail.web.wsgi builds
it for gunicorn from TMAIL_CONFIG. It reads and writes only through the
store (tmail.db), needs no root, and never touches Postfix: its own mail
goes out through tmail.outbound, or through the `send` a test passes.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Callable

from flask import Flask, g, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import outbound
from ..config import Config, ConfigError
from ..core.durations import utcnow
from . import (
    access,
    account,
    address_page,
    addresses,
    admin,
    api,
    auth,
    database,
    destinations,
    display,
    links,
    replies,
    signup,
    tokens,
)

log = logging.getLogger("tmail.web")

MAX_REQUEST = 64 * 1024      # forms are small; anything bigger is refused (413)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class State:
    """What every view reaches through current_app.extensions["tmail"]."""
    config: Config
    engine: object
    send: Callable
    now: Callable
    # mail for pages that must not reveal by their timing whether it went
    # out goes from a thread; a test's own `send` gets it at once
    send_in_background: bool = False


def read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the web secret key ([web] secret_key_file): "
                          f"{exc.strerror} (`tmail init` creates it)") from None
    if len(secret) < 16:
        raise ConfigError(f"{path}: the web secret key is shorter than 16 characters")
    return secret


def behind_local_proxy(listen: str) -> bool:
    """Whether only a proxy on this host can reach the app (a UNIX socket or
    a loopback address): then its X-Forwarded-For/-Proto are trusted."""
    if listen.startswith("unix:"):
        return True
    host = listen.rpartition(":")[0].strip("[]") or listen
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(cfg: Config, *, engine=None, send=None, clock=None, listen: str | None = None):
    """The app. `listen`: where it is really served, when a command line
    overrides [web] listen (forwarded headers are trusted only on loopback)."""
    if engine is None:
        from ..db.engine import make_engine
        db = cfg["database"]
        engine = make_engine(db["url"], db["busy_timeout_ms"], op_timeout=db["timeout_s"])
    web = cfg["web"]
    lifetime = cfg.duration("web", "session_lifetime")

    app = Flask(__name__)
    app.url_map.merge_slashes = False      # "//x" is a 404, not a redirect built from the Host header
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.extensions["tmail"] = State(cfg, engine, send if send is not None else outbound.send,
                                     clock if clock is not None else utcnow, send_in_background=send is None)
    app.config.update(
        SECRET_KEY=read_secret(web["secret_key_file"]),
        MAX_CONTENT_LENGTH=MAX_REQUEST,
        # Flask's own (signed) cookie holds only the CSRF token, messages
        # for the next page and a pending second factor's token.
        SESSION_COOKIE_NAME="__Host-tmail_state" if web["secure_cookies"] else "tmail_state",
        SESSION_COOKIE_SECURE=web["secure_cookies"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # a form left open stays usable as long as the sign-in does
        WTF_CSRF_TIME_LIMIT=int(lifetime.total_seconds()),
    )
    if behind_local_proxy(listen or web["listen"]):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)   # type: ignore[method-assign]

    access.init_app(app)           # before CSRF: the sign-in redirect comes first
    CSRFProtect(app).exempt(api.bp)     # token-only: no cookie is read there
    database.init_app(app)
    for module in (auth, links, signup, addresses, address_page, replies, destinations, account, tokens, admin):
        app.register_blueprint(module.bp)
    api.init_app(app)

    @app.after_request
    def _headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not response.headers.get("Cache-Control"):
            # pages hold addresses and tokens: never kept by a shared cache
            response.headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")
        return response

    @app.errorhandler(CSRFError)
    def _csrf(_exc):
        if api.is_api_request():
            return api.error(400, "CSRF tokens are not used here: send the API token")
        return render_template("error.html", title="Form expired", message=(
            "This form had expired or did not come from this site, so nothing was done. "
            "Go back, reload the page and try again.")), 400

    @app.errorhandler(HTTPException)
    def _http(exc):
        if api.is_api_request():
            allowed = getattr(exc, "valid_methods", None)
            return api.error(exc.code or 500, "no such API endpoint" if exc.code == 404 else exc.description,
                             {"Allow": ", ".join(allowed)} if allowed else None)
        if exc.code == 404:
            message = "There is nothing here, or it is not yours."
        else:
            message = exc.description
        return render_template("error.html", title=exc.name, message=message), exc.code

    @app.errorhandler(DataError)
    def _too_big(_exc):
        # a value the rules let through that a column cannot hold: the
        # request's fault, not an outage (no "try again in a minute")
        log.warning("value refused by the database", exc_info=True)
        message = "A value is too large for tmail's database."
        if api.is_api_request():
            return api.error(400, message)
        return render_template("error.html", title="Bad Request", message=message), 400

    @app.errorhandler(DBAPIError)
    def _database(_exc):
        log.exception("database error")
        if api.is_api_request():
            return api.error(503, "tmail cannot reach its database just now; try again in a minute",
                             {"Retry-After": "60"})
        return render_template("error.html", title="Database unavailable", message=(
            "tmail cannot reach its database just now. Try again in a minute.")), 503

    @app.context_processor
    def _globals():
        return {"current_user": g.get("user"), "signup_mode": web["signup"],
                "password_reset": web["password_reset"]}

    display.init_app(app)
    return app
