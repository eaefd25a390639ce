"""One address: its counters, limits and recent activity, and what its
owner can do with it (extend, disable or enable, block or unblock a
sender, change destinations or the note, delete). Its Replies section
(contacts and their reverse aliases) is changed through tmail.web.replies.

Every view starts from access.owned_alias(): someone else's address, or
one that does not exist, is a 404 whatever the id.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..core.address import AddressError, parse_block_pattern
from ..core.glance import glance
from ..core.lifecycle import quarantined_until
from ..core.verdict import OnExpiry
from ..db.contacts import Contacts
from . import access, changes, creation, forms
from . import database as db

bp = Blueprint("address_page", __name__)

ACTIVITY_ROWS = 50
CONTACT_ROWS = 200       # the most recent contacts shown


def _state():
    return current_app.extensions["tmail"]


def block_choices(sender: str) -> list[tuple[str, str]]:
    """The patterns an activity row's sender can be blocked by: (label, pattern)."""
    try:
        exact = parse_block_pattern(sender)
    except AddressError:
        return []
    if exact.startswith("@"):
        return [("Block this domain", exact)]
    return [("Block sender", exact), ("Block domain", "@" + exact.rpartition("@")[2])]


def replies_section(record) -> dict | None:
    """What the Replies section shows (None: no reply domain on this server,
    no section). The contacts with their reverse alias and whether their
    address, or its domain, is blocked; `written`: the contact the person
    just asked to write to (?contact=id, if it is this alias's)."""
    domain = _state().config["replies"]["domain"]
    if not domain:
        return None
    book = Contacts(db.conn())
    rows = []
    for contact in book.of_alias(record.id, CONTACT_ROWS):
        try:
            pattern = parse_block_pattern(contact.address)
        except AddressError:
            pattern = None
        rows.append({"contact": contact, "reply": contact.reply_address(domain), "pattern": pattern,
                     "blocked": pattern is not None and pattern in record.blocked,
                     "domain_blocked": pattern is not None and "@" + pattern.rpartition("@")[2] in record.blocked})
    wanted = request.args.get("contact", "")
    written = None
    if record.replies_on and wanted.isascii() and wanted.isdigit() and int(wanted) <= access.MAX_ID:
        written = book.get_by_id(int(wanted))
        if written is not None and written.alias_id != record.id:     # only this alias's own
            written = None
    return {"domain": domain, "rows": rows, "total": book.count(record.id), "written": written,
            "written_reply": written.reply_address(domain) if written else ""}


def result(verdict: str, record) -> str:
    """What happened to a message, in a word: the activity rows keep the
    verdict's kind ("forward", "sender-blocked", "expired", ...)."""
    if verdict == "forward":
        return "forwarded"
    if verdict == "expired" and record.on_expiry is OnExpiry.DROP:
        return "discarded"
    return "refused"


@bp.get("/addresses/<int:alias_id>")
def show(alias_id: int, error: str = "", status: int = 200):
    record = access.owned_alias(alias_id)
    state, now = _state(), _state().now()
    since = max(record.created_at or now, now - state.config.duration("lifecycle", "activity_kept"))
    rows = [(row, result(row.verdict, record), block_choices(row.sender))
            for row in db.accounts().activity(record.id, ACTIVITY_ROWS, since)]
    verified = creation.verified(access.user())
    choices = list(dict.fromkeys([*record.destinations, *verified]))
    return render_template("address.html", alias=record, glance=glance(record, now), rows=rows, now=now,
                           choices=choices, verified=verified, error=error, replies=replies_section(record),
                           quarantine=state.config.duration("lifecycle", "quarantine")), status


def _save(record, message: str):
    db.store().replace_alias(record)
    flash(message)
    return redirect(url_for("address_page.show", alias_id=record.id), 303)


@bp.post("/addresses/<int:alias_id>/extend")
def extend(alias_id: int):
    record = access.owned_alias(alias_id)
    now = _state().now()
    try:
        wanted = forms.extension(request.form, now)
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    limit = wanted.max_messages if wanted.max_messages is not None else record.max_messages
    try:
        changed = dataclasses.replace(record, expires_at=wanted.expiry(record.expires_at, now), max_messages=limit)
        creation.check_revival(access.user(), record, changed)
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    return _save(changed, "Extended.")


@bp.post("/addresses/<int:alias_id>/disable")
def disable(alias_id: int):
    record = access.owned_alias(alias_id)
    return _save(dataclasses.replace(record, enabled=False), "Disabled: mail to it is refused.")


@bp.post("/addresses/<int:alias_id>/enable")
def enable(alias_id: int):
    record = access.owned_alias(alias_id)
    changed = dataclasses.replace(record, enabled=True)
    try:
        creation.check_revival(access.user(), record, changed)
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    return _save(changed, "Enabled: mail to it is forwarded again.")


@bp.post("/addresses/<int:alias_id>/block")
def block(alias_id: int):
    record = access.owned_alias(alias_id)
    try:
        changed, pattern = changes.blocking(record, forms.field(request.form, "sender", "The sender", 320))
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    return _save(changed, f"Mail from {pattern} is now refused.")


@bp.post("/addresses/<int:alias_id>/unblock")
def unblock(alias_id: int):
    record = access.owned_alias(alias_id)
    pattern = request.form.get("sender", "")[:330]
    changed, was_blocked = changes.unblocking(record, pattern)
    if not was_blocked:
        return show(alias_id, f"{pattern} is not blocked here.", 400)
    return _save(changed, f"Mail from {pattern} is accepted again.")


@bp.post("/addresses/<int:alias_id>/destinations")
def destinations(alias_id: int):
    record = access.owned_alias(alias_id)
    try:
        dests = creation.chosen_destinations(access.user(), request.form.getlist("destination")[:50])
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    return _save(dataclasses.replace(record, destinations=dests), "Destinations saved.")


@bp.post("/addresses/<int:alias_id>/note")
def note(alias_id: int):
    record = access.owned_alias(alias_id)
    try:
        text = forms.note(request.form)
    except forms.FormError as exc:
        return show(alias_id, str(exc), 400)
    return _save(dataclasses.replace(record, note=text), "Note saved.")


@bp.route("/addresses/<int:alias_id>/delete", methods=["GET", "POST"])
def delete(alias_id: int):
    record = access.owned_alias(alias_id)
    state = _state()
    quarantine = state.config.duration("lifecycle", "quarantine")
    if request.method == "GET":
        return render_template("address_delete.html", alias=record, days=quarantine // timedelta(days=1),
                               until=quarantined_until(state.now(), quarantine))
    changes.delete(record)
    flash(f"{record.address} is deleted. Mail to it is refused; nobody can take it for "
          f"{quarantine // timedelta(days=1)} days.")
    return redirect(url_for("addresses.index"), 303)
