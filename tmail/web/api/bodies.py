"""JSON request bodies, turned into the core's values with errors that name
the field; and the address a password manager asks for, with the user's
API defaults.
"""
from __future__ import annotations

import json
from datetime import timedelta

from flask import current_app, request

from ...core import aliases as alias_rules
from ...core.accounts import User, usable_domains
from ...core.verdict import AliasRecord
from .. import creation, forms
from .. import database as db
from . import ApiError, user

HOUR = timedelta(hours=1)


def json_body(allowed: frozenset[str] | None) -> dict:
    """The body as an object (an empty body is {}), with only `allowed` keys
    (None: any, for the generators' endpoints, whose clients may add some)."""
    data = request.get_data(cache=True)
    if not data:
        return {}
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):     # "[[[[...": nesting deeper than the parser goes
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed) if allowed is not None else []
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return body


DURATIONS = frozenset({"ttl", "idle", "by"})     # "7d", or a number of seconds


def as_text(body: dict, keys: tuple[str, ...]) -> dict[str, str]:
    """The given keys as the strings a form would hold (null: not given), for
    tmail.web.forms; a value of another type is refused naming its key."""
    found = {}
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ApiError(400, f"{key}: expected a string or a number")
        found[key] = f"{value}s" if key in DURATIONS and isinstance(value, int) else str(value)
    return found


def strings(body: dict, key: str, limit: int = 50) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > limit:
        raise ApiError(400, f"{key}: expected a list of at most {limit} strings")
    return value


def flag(body: dict, key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, f"{key}: expected true or false")
    return value


def refused(exc: forms.FormError) -> ApiError:
    """The API's answer to what a form would show; past the per-hour limit,
    with when the oldest creation of the hour stops counting."""
    headers = {}
    if exc.status == 429:
        now = current_app.extensions["tmail"].now()
        oldest = db.accounts().oldest_creation(user().id, now - HOUR) or now
        headers["Retry-After"] = str(int((oldest + HOUR - now).total_seconds()) + 1)
    return ApiError(exc.status, str(exc), headers)


def default_domain(user: User) -> str:
    """Where a password manager's address goes: the user's API domain while
    they may still use it, else their own domains before the shared ones."""
    usable = usable_domains(user, db.accounts().shared_domains())
    if user.api_domain in usable:
        return user.api_domain
    mine = [d for d in usable if d in user.domains]
    if not (mine or usable):
        raise ApiError(403, "this account may not create addresses at any domain; ask the admin")
    return (mine or list(usable))[0]


def create_with_api_defaults(user: User, *, note: str, domain: str | None = None, local: str | None = None,
                             style: str | None = None) -> AliasRecord:
    """A new address for a password manager: the user's API defaults (no
    expiry unless they chose one: the address is an account's login), to
    their own (or first) verified destination."""
    destinations = creation.default_destinations(user)
    if not destinations:
        raise ApiError(409, "you have no verified destination yet: add one in the web app and follow "
                            "the link mailed to it")
    settings = alias_rules.Settings(ttl=user.api_ttl, note=note or None)
    try:
        return creation.create(user, local, domain or default_domain(user), destinations, settings,
                               style=style, domain_defaults=False)
    except forms.FormError as exc:
        raise refused(exc) from None
