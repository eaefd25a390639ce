"""tmail's own API, under /api/v1/tmail/: a user's addresses and destinations.

Bodies use the keys of the CLI's --json output (core.aliases.describe),
plus the alias's `id`; an alias is named by its id or its address. The
whole of it is written down once, in openapi.json, served at
/api/v1/tmail/openapi.json.
"""
from __future__ import annotations

import dataclasses
from importlib import resources

from flask import current_app, request

from ... import jsontext
from ...core import aliases as alias_rules
from ...core.address import AddressError, local_key, parse_address
from ...core.api_tokens import CHANGE, CREATE, READ
from ...core.verdict import AliasRecord, OnExpiry
from .. import changes, creation, forms
from .. import database as db
from ..addresses import SORTS, STATES
from . import ApiError, bp, requires, user
from .bodies import as_text, flag, json_body, refused, strings

BASE = "/v1/tmail"
PER_PAGE, MAX_PER_PAGE = 50, 100
CREATE_FIELDS = frozenset({"local", "domain", "destinations", "style", "ttl", "expires_at", "max_messages",
                           "idle", "on_expiry", "note"})
CHANGE_FIELDS = frozenset({"destinations", "note", "max_messages", "enabled", "on_expiry"})
EXTEND_FIELDS = frozenset({"by", "until", "max_messages"})


def answer(data: dict, status: int = 200):
    """JSON as the CLI writes it (dates in ISO 8601 UTC with a Z)."""
    return current_app.response_class(jsontext.dumps({"ok": True, **data}), status=status,
                                      mimetype="application/json")


def alias_json(record: AliasRecord) -> dict:
    now = current_app.extensions["tmail"].now()
    return {"id": record.id, **alias_rules.describe(record, now, user().email)}


def _owned(ref: str) -> AliasRecord:
    """The user's alias by id or address; anyone else's is not found."""
    found = None
    if ref.isascii() and ref.isdigit() and len(ref) < 12:
        found = db.accounts().owned_alias(user().id, int(ref))
    elif "@" in ref:
        try:
            address = parse_address(ref)
        except AddressError:
            address = None
        if address is not None:
            found = db.store().get_alias(local_key(address.local), address.domain)
    if found is None or found.owner_id != user().id:
        raise ApiError(404, f"you have no address {ref!r}")
    if request.method != "GET":     # a change: read it again under a lock (see Accounts.lock_owned_alias)
        db.accounts().lock_owned_alias(user().id, found.id)
        found = db.accounts().owned_alias(user().id, found.id)
        if found is None:
            raise ApiError(404, f"you have no address {ref!r}")
    return found


def _field(call, *args):
    try:
        return call(*args)
    except forms.FormError as exc:
        raise refused(exc) from None


@bp.get(f"{BASE}/aliases", strict_slashes=False)
@requires(READ)
def list_aliases():
    args = request.args
    state = args.get("state", "")
    sort = args.get("sort", "") or "created"
    if state and state not in STATES:
        raise ApiError(400, f"state: expected one of {', '.join(STATES)}")
    if sort not in SORTS:
        raise ApiError(400, f"sort: expected one of {', '.join(SORTS)}")
    page = forms.page(args.get("page"))
    per_page = min(forms.page(args.get("per_page") or str(PER_PAGE)), MAX_PER_PAGE)
    found = db.accounts().owned_aliases(
        user().id, current_app.extensions["tmail"].now(), search=(args.get("search") or "").strip()[:100],
        state=state, domain=(args.get("domain") or "").strip().lower().rstrip(".")[:255], sort=sort,
        offset=(page - 1) * per_page, limit=per_page)
    return answer({"aliases": [alias_json(r) for r in found.aliases], "page": page, "per_page": per_page,
                   "total": found.total, "more_than_total": found.more_than_total, "has_next": found.has_next})


@bp.post(f"{BASE}/aliases", strict_slashes=False)
@requires(CREATE)
def create_alias():
    body = json_body(CREATE_FIELDS)
    text = as_text(body, ("local", "domain", "style", "ttl", "expires_at", "max_messages", "idle", "on_expiry",
                          "note"))
    now = current_app.extensions["tmail"].now()
    ttl = _field(forms.duration, text, "ttl", "ttl")
    expires = _field(forms.future_time, text, "expires_at", "expires_at", now)
    if ttl is not None and expires is not None:
        raise ApiError(400, "ttl, expires_at: give one of them, not both")
    try:
        settings = alias_rules.Settings(
            ttl=ttl, expires=expires, max_messages=_field(forms.count, text, "max_messages", "max_messages"),
            idle=_field(forms.duration, text, "idle", "idle"),
            on_expiry=_field(forms.choice, text, "on_expiry", "on_expiry", ("reject", "drop")),
            note=_field(forms.field, text, "note", "note", forms.MAX_NOTE))
    except ValueError as exc:       # the core's own bounds (Settings)
        raise ApiError(400, str(exc).replace("--", "")) from None
    style = _field(forms.choice, text, "style", "style", ("token", "words"))
    local = _field(forms.field, text, "local", "local", 64) or None
    domain = text.get("domain", "").strip().lower().rstrip(".")[:255]
    if not domain:
        raise ApiError(400, "domain: give one of the domains you may use")
    wanted = strings(body, "destinations")
    destinations = creation.default_destinations(user()) if wanted is None else wanted
    if wanted is None and not destinations:
        raise ApiError(409, "you have no verified destination yet: add one in the web app and follow "
                            "the link mailed to it")
    try:
        record = creation.create(user(), local, domain, destinations, settings, style=style)
    except forms.FormError as exc:
        raise refused(exc) from None
    return answer({"alias": alias_json(record)}, 201)


@bp.get(f"{BASE}/aliases/<ref>", strict_slashes=False)
@requires(READ)
def get_alias(ref: str):
    return answer({"alias": alias_json(_owned(ref))})


def _save(before: AliasRecord, after: AliasRecord):
    _field(creation.check_revival, user(), before, after)
    db.store().replace_alias(after)
    return answer({"alias": alias_json(after)})


@bp.patch(f"{BASE}/aliases/<ref>", strict_slashes=False)
@requires(CHANGE)
def change_alias(ref: str):
    record = _owned(ref)
    body = json_body(CHANGE_FIELDS)
    text = as_text(body, ("note", "max_messages", "on_expiry"))
    changed = record
    if "destinations" in body:
        wanted = strings(body, "destinations") or []
        changed = dataclasses.replace(changed, destinations=_field(creation.chosen_destinations, user(), wanted))
    if "note" in body:
        changed = dataclasses.replace(changed, note=_field(forms.field, text, "note", "note", forms.MAX_NOTE))
    if "max_messages" in body:      # null: no limit
        changed = dataclasses.replace(changed, max_messages=_field(forms.count, text, "max_messages",
                                                                   "max_messages"))
    if body.get("on_expiry") is not None:
        choice = _field(forms.choice, text, "on_expiry", "on_expiry", ("reject", "drop"))
        changed = dataclasses.replace(changed, on_expiry=OnExpiry(choice))
    enabled = flag(body, "enabled")
    if enabled is not None:
        changed = dataclasses.replace(changed, enabled=enabled)
    return _save(record, changed)


@bp.post(f"{BASE}/aliases/<ref>/extend", strict_slashes=False)
@requires(CHANGE)
def extend_alias(ref: str):
    record = _owned(ref)
    text = as_text(json_body(EXTEND_FIELDS), ("by", "until", "max_messages"))
    now = current_app.extensions["tmail"].now()
    wanted = forms.Extension(_field(forms.duration, text, "by", "by"),
                             _field(forms.future_time, text, "until", "until", now),
                             _field(forms.count, text, "max_messages", "max_messages"))
    if wanted.by is not None and wanted.until is not None:
        raise ApiError(400, "by, until: give one of them, not both")
    if wanted.by is None and wanted.until is None and wanted.max_messages is None:
        raise ApiError(400, "by, until, max_messages: give at least one")
    limit = wanted.max_messages if wanted.max_messages is not None else record.max_messages
    expires = _field(wanted.expiry, record.expires_at, now)
    return _save(record, dataclasses.replace(record, expires_at=expires, max_messages=limit))


def _sender(body: dict) -> str:
    sender = as_text(body, ("sender",)).get("sender", "").strip()
    if not sender:
        raise ApiError(400, "sender: give an address (a@b.example) or a domain (@b.example)")
    return sender[:330]


@bp.post(f"{BASE}/aliases/<ref>/block-sender", strict_slashes=False)
@requires(CHANGE)
def block_sender(ref: str):
    record = _owned(ref)
    changed, _pattern = _field(changes.blocking, record, _sender(json_body(frozenset({"sender"}))))
    return _save(record, changed)


@bp.post(f"{BASE}/aliases/<ref>/unblock-sender", strict_slashes=False)
@requires(CHANGE)
def unblock_sender(ref: str):
    record = _owned(ref)
    sender = _sender(json_body(frozenset({"sender"})))
    changed, was_blocked = changes.unblocking(record, sender)
    if not was_blocked:
        raise ApiError(404, f"{sender} is not blocked at {record.address}")
    return _save(record, changed)


@bp.delete(f"{BASE}/aliases/<ref>", strict_slashes=False)
@requires(CHANGE)
def delete_alias(ref: str):
    record = _owned(ref)
    changes.delete(record)
    return answer({"removed": record.address})


@bp.get(f"{BASE}/destinations", strict_slashes=False)
@requires(READ)
def list_destinations():
    return answer({"destinations": [
        {"id": d.id, "address": d.address, "verified": d.verified, "verified_at": d.verified_at,
         "created_at": d.created_at} for d in db.accounts().destinations(user().id)]})


@bp.get(f"{BASE}/openapi.json")
def openapi():
    document = resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8")
    return current_app.response_class(document, mimetype="application/json")
