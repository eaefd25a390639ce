"""Pages reached from a link in a mail: set or reset a password, and the
"forgot my password" form that mails such a link ([web] password_reset).

Opening a link (GET) changes nothing: mail scanners open links too. The
form it shows posts the token back; the token is used then, once. A used,
expired or unknown link shows the same page and does nothing.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from .. import passwords
from ..core import accounts as rules
from ..core import mails
from ..core.accounts import AccountError
from ..db.api_tokens import ApiTokens
from . import database as db
from . import forms, mailer, throttle
from .access import public

bp = Blueprint("links", __name__)

PASSWORD_KINDS = (rules.SET_PASSWORD, rules.RESET_PASSWORD)
SENT = ("If an account with that address exists, a link to choose a new password is on its way. "
        "It works once, for an hour.")


def _state():
    return current_app.extensions["tmail"]


def dead_link():
    return render_template("link_invalid.html"), 410


def _token() -> str:
    return (request.values.get("token") or "")[:100]


def _password_token(token: str):
    """(kind, user id) of a valid password link, or None."""
    accounts, now = db.accounts(), _state().now()
    for kind in PASSWORD_KINDS:
        found = accounts.peek_token(kind, token, now) if token else None
        if found is not None and found[0] is not None:
            return kind, found[0]
    return None


@bp.route("/password", methods=["GET", "POST"])
@public
def password():
    token = _token()
    found = _password_token(token)
    user = db.accounts().user(found[1]) if found else None
    if found is None or user is None:
        return dead_link()
    if request.method == "GET":
        return render_template("password.html", token=token, email=user.email)
    try:
        new = rules.check_password(forms.passwords(request.form))
    except (AccountError, forms.FormError) as exc:
        return render_template("password.html", token=token, email=user.email, error=str(exc)), 400
    accounts, now = db.accounts(), _state().now()
    if accounts.use_token(found[0], token, now) is None:
        return dead_link()
    accounts.set_password(user.id, passwords.hash_password(new), now)   # ends every session
    if found[0] == rules.RESET_PASSWORD:        # "I was broken into": an intruder's tokens go too
        ApiTokens(db.conn()).revoke_all(user.id)
    throttle.clear(accounts, throttle.SIGN_IN_ACCOUNT, user.email)
    flash("Your password is set. Sign in with it.")
    return redirect(url_for("auth.sign_in"), 303)


@bp.route("/password/forgot", methods=["GET", "POST"])
@public
def forgot():
    state = _state()
    if not state.config["web"]["password_reset"]:
        abort(404)
    if request.method == "GET":
        return render_template("forgot.html")
    email = request.form.get("email", "").strip()[:320]
    accounts, now = db.accounts(), state.now()
    checks = ((throttle.MAIL_TO_ADDRESS, email), (throttle.MAIL_FROM_CLIENT, request.remote_addr or ""))
    if throttle.exceeded(accounts, now, *checks):
        return render_template("forgot.html", error="Too many requests. Try again later."), 429
    throttle.note(accounts, now, *checks)
    user = accounts.user_by_email(email) if email else None
    own = accounts.own_destination(user) if user else None
    # A link goes only to an account's own address once it is verified:
    # an address someone mistyped at sign-up never receives one.
    if user is None or not user.enabled or own is None or not own.verified:
        db.commit()
        return render_template("forgot.html", sent=SENT)
    token = accounts.issue_token(rules.RESET_PASSWORD, user.id, "", now, rules.TOKEN_LIFETIMES[rules.RESET_PASSWORD])
    db.commit()
    # to the address as it was verified (the account's name is case-folded)
    mailer.send_later(own.address, mails.password_link, link=mailer.link("links.password", token=token),
                      reset=True, valid="an hour")
    return render_template("forgot.html", sent=SENT)
