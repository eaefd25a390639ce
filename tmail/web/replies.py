"""Replies through an address, on its page: whether they are on, the name
they go out with, the contacts (each with the reverse alias a reply goes
to), blocking or removing a contact, and writing first to someone new.

All of it exists only when the server has a reply domain ([replies]
domain); without one these URLs are a 404. Every view starts from
access.owned_alias(), and a contact is looked for only among that
alias's own: another user's alias or contact is a 404 whatever the id.
The contact's id comes in the form (or query), not the path.
"""
from __future__ import annotations

import dataclasses

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for

from ..core.address import AddressError, parse_address
from ..core.contacts import Contact
from ..db.contacts import Contacts
from . import access, address_page, changes, forms
from . import database as db

bp = Blueprint("replies", __name__)

MAX_CONTACTS = 1000      # writing to someone new stops here (mail from outside is not limited)


def reply_domain() -> str:
    """The reply domain ("": replies are not set up on this server)."""
    return current_app.extensions["tmail"].config["replies"]["domain"]


def contacts() -> Contacts:
    return Contacts(db.conn())


def _alias(alias_id: int):
    record = access.owned_alias(alias_id)
    if not reply_domain():
        abort(404)
    return record


def _contact(record) -> Contact:
    """The contact the form names, if it is this alias's; else 404."""
    text = (request.form.get("contact") or "").strip()[:20]
    if not (text.isascii() and text.isdigit()) or int(text) > access.MAX_ID:
        abort(404)
    found = contacts().get_by_id(int(text))
    if found is None or found.alias_id != record.id:
        abort(404)
    return found


def _back(record, message: str, anchor: str = "replies", **args):
    flash(message)
    return redirect(url_for("address_page.show", alias_id=record.id, _anchor=anchor, **args), 303)


@bp.post("/addresses/<int:alias_id>/replies")
def settings(alias_id: int):
    record = _alias(alias_id)
    try:
        wanted = forms.reply_settings(request.form)
    except forms.FormError as exc:
        return address_page.show(alias_id, str(exc), 400)
    changed = dataclasses.replace(record, replies=wanted.replies, display_name=wanted.display_name,
                                  reply_scrub=wanted.scrub)
    db.store().replace_alias(changed)
    if changed.replies is None:
        state = f"follow the domain (now {'on' if changed.replies_on else 'off'})"
    else:
        state = "on" if changed.replies_on else "off: its reply addresses refuse mail"
    return _back(changed, f"Reply settings saved. Replies {state}.")


@bp.post("/addresses/<int:alias_id>/contacts/block")
def block(alias_id: int):
    record = _alias(alias_id)
    contact = _contact(record)
    try:
        changed, pattern = changes.blocking(record, contact.address)
    except forms.FormError as exc:
        return address_page.show(alias_id, str(exc), 400)
    db.store().replace_alias(changed)
    return _back(changed, f"Mail from {pattern} is now refused.")


@bp.post("/addresses/<int:alias_id>/contacts/unblock")
def unblock(alias_id: int):
    record = _alias(alias_id)
    contact = _contact(record)
    changed, was_blocked = changes.unblocking(record, contact.address)
    if not was_blocked:
        return address_page.show(alias_id, f"{contact.address} is not blocked here.", 400)
    db.store().replace_alias(changed)
    return _back(changed, f"Mail from {contact.address} is accepted again.")


@bp.post("/addresses/<int:alias_id>/contacts/remove")
def remove(alias_id: int):
    record = _alias(alias_id)
    contact = _contact(record)
    contacts().remove(contact.id)
    return _back(record, f"{contact.address} is no longer a contact: its reply address "
                         f"{contact.reply_address(reply_domain())} no longer works.")


def outside_address(text: str) -> str:
    """An address to write to: well formed, and not one of tmail's own."""
    if not text:
        raise forms.FormError("Give the address to write to")
    try:
        address = parse_address(text)
    except AddressError as exc:
        raise forms.FormError(f"Cannot write to that address: {exc}") from None
    cfg = current_app.extensions["tmail"].config
    if address.domain in cfg.service_domains or db.store().is_tmail_domain(address.domain):
        raise forms.FormError(f"Cannot write to {address}: {address.domain} is one of this server's own "
                              "domains. Write to an outside address.")
    return str(address)


@bp.post("/addresses/<int:alias_id>/contacts/write")
def write(alias_id: int):
    record = _alias(alias_id)
    if not record.replies_on:
        return address_page.show(alias_id, "Replies are off for this address: turn them on to write from it.",
                                 400)
    try:
        address = outside_address(forms.field(request.form, "address", "The address", 320))
    except forms.FormError as exc:
        return address_page.show(alias_id, str(exc), 400)
    book = contacts()
    if book.get(record.id, address) is None and book.count(record.id) >= MAX_CONTACTS:
        return address_page.show(alias_id, f"This address has {MAX_CONTACTS} contacts already; "
                                           "remove some first.", 409)
    contact, made = book.ensure(record.id, address, "", current_app.extensions["tmail"].now())
    message = (f"A reply address for {contact.address} is ready." if made
               else f"{contact.address} is a contact already: here is its reply address.")
    return _back(record, message, "write-from", contact=contact.id)
