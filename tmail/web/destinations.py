"""Destinations: the real mailboxes a user's addresses forward to.

Nothing is forwarded to one until the link mailed to it has been opened
and confirmed (valid an hour, once; a new link at most once a minute).
tmail's own domains and the SRS domain are never destinations (a loop).
When one is verified, the account's own address is told: if someone else
added it, the owner learns of it.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..core import accounts as rules
from ..core import aliases as alias_rules
from ..core import mails
from ..core.address import AddressError, parse_address
from . import access, creation, mailer, throttle
from . import database as db
from .access import public
from .links import dead_link

bp = Blueprint("destinations", __name__)

MAX_DESTINATIONS = 50


def _state():
    return current_app.extensions["tmail"]


def _page(error: str = "", status: int = 200, address: str = ""):
    user = access.user()
    found = db.accounts().destinations(user.id)
    return render_template("destinations.html", destinations=found, error=error, address=address,
                           account=user.email), status


@bp.get("/destinations")
def index():
    return _page()


def _send_link(destination) -> bool:
    """Mail a verification link, unless one went out less than a minute ago
    or the hour's links to that address, or from this account, are spent."""
    accounts, now = db.accounts(), _state().now()
    if destination.last_sent_at is not None and now - destination.last_sent_at < rules.RESEND_AFTER:
        flash("A link was sent less than a minute ago. Wait a little, then ask again.", "error")
        return False
    checks = ((throttle.MAIL_TO_ADDRESS, destination.address), (throttle.MAIL_FROM_USER, str(destination.user_id)))
    if throttle.exceeded(accounts, now, *checks):
        flash(f"Too many links have gone to {destination.address} or from your account this hour. "
              "Ask again later.", "error")
        return False
    throttle.note(accounts, now, *checks)
    token = accounts.issue_token(rules.VERIFY_DESTINATION, destination.user_id, destination.address, now,
                                 rules.TOKEN_LIFETIMES[rules.VERIFY_DESTINATION])
    accounts.mark_sent(destination.id, now)
    db.commit()        # the link is valid before the mail leaves; no lock held while sending
    sent = mailer.send(destination.address, mails.verify_destination, user=access.user().email,
                       link=mailer.link("destinations.verify", token=token))
    if sent:
        flash(f"A link is on its way to {destination.address}. Open it within an hour.")
    else:
        flash(f"The mail to {destination.address} could not be sent just now. Try again in a minute.", "error")
    return sent


@bp.post("/destinations")
def add():
    user, now = access.user(), _state().now()
    text = request.form.get("address", "").strip()[:320]
    try:
        address = str(parse_address(text))
        alias_rules.check_destinations([address], creation.rules())   # not at tmail's own domains
    except AddressError as exc:
        return _page(str(exc), 400, text)
    accounts = db.accounts()
    existing = accounts.destination_by_address(user.id, address)
    if existing is not None:
        return _page(f"{address} is already one of your destinations", 400, text)
    if len(accounts.destinations(user.id)) >= MAX_DESTINATIONS:
        return _page(f"You have {MAX_DESTINATIONS} destinations, the most you may; remove one first", 400, text)
    created = accounts.add_destination(user.id, address, now)
    _send_link(created)
    return redirect(url_for("destinations.index"), 303)


@bp.post("/destinations/<int:destination_id>/resend")
def resend(destination_id: int):
    found = access.owned_destination(destination_id)
    if not found.verified:
        _send_link(found)
    return redirect(url_for("destinations.index"), 303)


@bp.post("/destinations/<int:destination_id>/remove")
def remove(destination_id: int):
    user = access.user()
    found = access.owned_destination(destination_id)
    if found.address.casefold() == user.email:
        return _page("This is your account's own address; it stays a destination.", 400)
    using = db.accounts().aliases_using(user.id, found.address)
    if using:
        return _page(f"{using} of your addresses forward to {found.address}. Give them another "
                     "destination first (on each address's page).", 400)
    db.accounts().remove_destination(user.id, found.id)
    flash(f"{found.address} is no longer a destination.")
    return redirect(url_for("destinations.index"), 303)


@bp.route("/destinations/verify", methods=["GET", "POST"])
@public
def verify():
    """From the link in the mail: GET shows a button (a mail scanner opening
    the link confirms nothing); POST confirms, once."""
    token = (request.values.get("token") or "")[:100]
    accounts, now = db.accounts(), _state().now()
    found = accounts.peek_token(rules.VERIFY_DESTINATION, token, now) if token else None
    if found is None or found[0] is None:
        return dead_link()
    user_id, address = found
    if request.method == "GET":
        return render_template("verify.html", token=token, address=address)
    owner = accounts.user(user_id)
    destination = accounts.destination_by_address(user_id, address)
    if accounts.use_token(rules.VERIFY_DESTINATION, token, now) is None or owner is None or destination is None:
        return dead_link()
    if destination.verified:
        return render_template("verified.html", address=address)
    accounts.verify_destination(user_id, address, now)
    db.commit()
    own = accounts.own_destination(owner)
    if address.casefold() != owner.email and own is not None:
        mailer.send(own.address, mails.destination_verified, verified=address)
    return render_template("verified.html", address=address)
