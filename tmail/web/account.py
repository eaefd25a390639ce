"""The Account page: password, two-factor sign-in with recovery codes, and
the sessions (signed-in browsers) with a way to end them.

Whatever could lock the owner out (a new password, the second factor on
or off, new recovery codes) asks for the current password first, counted
by the sign-in limits: a stolen session cannot guess it either.
"""
from __future__ import annotations

import base64
import binascii

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from .. import passwords
from ..core import accounts as rules
from ..core.accounts import AccountError
from . import access, forms, throttle, totp
from . import database as db

bp = Blueprint("account", __name__)

WRONG_PASSWORD = "Your current password is not right."


def _now():
    return current_app.extensions["tmail"].now()


def _page(error: str = "", status: int = 200):
    user = access.user()
    return render_template("account.html", user=user, error=error,
                           codes_left=db.accounts().recovery_codes_left(user.id),
                           sessions=len(db.accounts().sessions(user.id))), status


@bp.get("/account")
def index():
    return _page()


def password_refusal() -> str | None:
    """Why the current password (field current_password) is refused, or None."""
    user, accounts, now = access.user(), db.accounts(), _now()
    checks = ((throttle.SIGN_IN_ACCOUNT, user.email), (throttle.SIGN_IN_CLIENT, request.remote_addr or ""))
    if throttle.exceeded(accounts, now, *checks):
        return "Too many attempts. Try again later."
    ok, _ = passwords.check(user.password_hash, request.form.get("current_password", "")[:forms.MAX_FIELD])
    if not ok:
        throttle.note(accounts, now, *checks)
        db.commit()      # counted, although the answer is an error
        return WRONG_PASSWORD
    return None


@bp.post("/account/password")
def change_password():
    user = access.user()
    refused = password_refusal()
    if refused:
        return _page(refused, 400)
    try:
        new = rules.check_password(forms.passwords(request.form))
    except (AccountError, forms.FormError) as exc:
        return _page(str(exc), 400)
    db.accounts().set_password(user.id, passwords.hash_password(new), _now())   # ends every session
    g.session = None
    access.start_session(user)                                                 # ... but this one
    flash("Your password is changed. Every other browser was signed out.")
    return redirect(url_for("account.index"), 303)


def _secret(value: str) -> str | None:
    value = value.strip().upper()
    if not 16 <= len(value) <= 64:
        return None
    try:
        base64.b32decode(value + "=" * (-len(value) % 8))
    except (binascii.Error, ValueError):
        return None
    return value


@bp.get("/account/totp")
def totp_setup():
    user = access.user()
    if user.totp_secret:
        return redirect(url_for("account.index"))
    secret = totp.new_secret()
    return render_template("totp_setup.html", secret=secret, uri=totp.setup_uri(secret, user.email))


def _new_codes():
    codes = rules.recovery_codes()
    db.accounts().set_recovery_codes(access.user().id, codes)
    return render_template("recovery_codes.html", codes=codes)


@bp.post("/account/totp")
def totp_enable():
    user, now = access.user(), _now()
    secret = _secret(request.form.get("secret", ""))
    if secret is None or user.totp_secret:
        return redirect(url_for("account.totp_setup"), 303)

    def again(error: str):
        return render_template("totp_setup.html", secret=secret, uri=totp.setup_uri(secret, user.email),
                               error=error), 400
    refused = password_refusal()
    if refused:
        return again(refused)
    step = totp.matching_step(secret, request.form.get("code", "").replace(" ", ""), now)
    if step is None:
        return again("That code is not right. Check the time on your phone and try the next code.")
    accounts = db.accounts()
    accounts.set_user(user.id, totp_secret=secret)
    accounts.use_totp_step(user.id, step, now, totp.STEP_KEPT)
    flash("Two-factor sign-in is on.")
    return _new_codes()


@bp.post("/account/totp/disable")
def totp_disable():
    user = access.user()
    refused = password_refusal()
    if refused:
        return _page(refused, 400)
    db.accounts().set_user(user.id, totp_secret=None)
    db.accounts().set_recovery_codes(user.id, [])
    flash("Two-factor sign-in is off.")
    return redirect(url_for("account.index"), 303)


@bp.post("/account/recovery-codes")
def recovery_codes():
    if not access.user().totp_secret:
        return redirect(url_for("account.index"), 303)
    refused = password_refusal()
    if refused:
        return _page(refused, 400)
    flash("New recovery codes; the old ones no longer work.")
    return _new_codes()


@bp.get("/account/sessions")
def sessions():
    user = access.user()
    return render_template("sessions.html", sessions=db.accounts().sessions(user.id),
                           current=g.session.id_hash, now=_now())


@bp.post("/account/sessions/<id_hash>/revoke")
def revoke(id_hash: str):
    found = access.owned_session(id_hash[:64])
    if found.id_hash == g.session.id_hash:
        access.end_session()
        flash("You are signed out.")
        return redirect(url_for("auth.sign_in"), 303)
    db.accounts().end_session(found.user_id, found.id_hash)
    flash("That session is signed out.")
    return redirect(url_for("account.sessions"), 303)


@bp.post("/account/sessions/revoke-others")
def revoke_others():
    db.accounts().end_sessions(access.user().id, keep=g.session.id_hash)
    flash("Every other browser is signed out.")
    return redirect(url_for("account.sessions"), 303)
