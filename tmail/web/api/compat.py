"""The two requests password managers send for a new address (Bitwarden's
username generator accepts a self-hosted server for exactly these):

- SimpleLogin: POST /api/alias/random/new[?hostname=<site>&mode=uuid|word],
  `Authentication: <token>`, {"note": "..."}; it reads `alias`.
- addy.io: POST /api/v1/aliases, `Authorization: Bearer <token>`,
  {"domain", "description", "format", "local_part"}; it reads `data.email`.

Both answer 201 with the fields those services return that mean something
for tmail; the rest keep the type the clients expect (0, false, null).
"""
from __future__ import annotations

import uuid

from flask import current_app, jsonify, request

from ...core.api_tokens import CREATE, website
from ...core.verdict import AliasRecord
from .. import forms
from . import ApiError, bp, requires, user
from .bodies import as_text, create_with_api_defaults, json_body, refused

SIMPLELOGIN_MODES = {"uuid": "uuid", "word": "words"}
ADDY_FORMATS = ("random_characters", "uuid", "random_words", "custom")


def _note(body: dict, key: str) -> str:
    try:
        return forms.field(as_text(body, (key,)), key, key, forms.MAX_NOTE)
    except forms.FormError as exc:
        raise refused(exc) from None


def _uuid() -> str:
    """A UUID as a local part; without its hyphens where '-' is the
    recipient delimiter (an alias may not hold it)."""
    value = str(uuid.uuid4())
    delimiter = current_app.extensions["tmail"].config["aliases"]["recipient_delimiter"]
    return value.replace("-", "") if delimiter and delimiter in value else value


def _stamp(when) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else None


def simplelogin_alias(record: AliasRecord) -> dict:
    created = record.created_at
    return {
        "alias": record.address, "email": record.address, "id": record.id, "name": None,
        "enabled": record.enabled, "note": record.note or None,
        "creation_date": created.strftime("%Y-%m-%d %H:%M:%S+00:00") if created else None,
        "creation_timestamp": int(created.timestamp()) if created else None,
        "nb_forward": record.forwarded, "nb_block": record.refused, "nb_reply": 0,
        "latest_activity": None, "pinned": False, "support_pgp": False, "disable_pgp": False,
    }


def addy_alias(record: AliasRecord) -> dict:
    local, _, domain = record.address.rpartition("@")
    return {
        "id": str(record.id), "user_id": str(record.owner_id), "aliasable_id": None, "aliasable_type": None,
        "local_part": local, "extension": None, "domain": domain, "email": record.address,
        "active": record.enabled, "description": record.note or None, "from_name": None,
        "emails_forwarded": record.forwarded, "emails_blocked": record.refused, "emails_replied": 0,
        "emails_sent": 0, "recipients": [], "last_forwarded": _stamp(record.last_forwarded_at),
        "created_at": _stamp(record.created_at), "updated_at": _stamp(record.created_at), "deleted_at": None,
    }


@bp.post("/alias/random/new", strict_slashes=False)
@requires(CREATE)
def simplelogin_random():
    body = json_body(None)
    note = _note(body, "note")
    site = website(request.args.get("hostname"))
    if not note and site:
        note = f"Website: {site}"
    mode = request.args.get("mode", "")
    if mode and mode not in SIMPLELOGIN_MODES:
        raise ApiError(400, f"mode: expected one of {', '.join(SIMPLELOGIN_MODES)}")
    local = _uuid() if mode == "uuid" else None
    record = create_with_api_defaults(user(), note=note, local=local, style=SIMPLELOGIN_MODES.get(mode))
    return jsonify(simplelogin_alias(record)), 201


@bp.post("/v1/aliases", strict_slashes=False)
@requires(CREATE)
def addy_create():
    body = json_body(None)
    fields = as_text(body, ("domain", "format", "local_part"))
    domain = fields.get("domain", "").strip().lower().rstrip(".")[:255] or None
    kind = fields.get("format") or "random_characters"
    if kind not in ADDY_FORMATS:
        raise ApiError(400, f"format: expected one of {', '.join(ADDY_FORMATS)}")
    local, style = None, {"random_characters": "token", "random_words": "words"}.get(kind)
    if kind == "uuid":
        local = _uuid()
    elif kind == "custom":
        local = fields.get("local_part", "").strip()
        if not local:
            raise ApiError(400, "local_part: give the name before the @ for format 'custom'")
    record = create_with_api_defaults(user(), note=_note(body, "description"), domain=domain, local=local,
                                      style=style)
    return jsonify({"data": addy_alias(record)}), 201
