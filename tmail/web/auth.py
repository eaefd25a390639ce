"""Signing in and out: the password, then the second factor when the
account has one (a TOTP code or a recovery code).

An unknown account and a wrong password get the same answer, after the
same work (tmail.passwords checks a dummy hash); both count towards the
same limits (tmail.web.throttle). Between the two steps the browser holds
only a token valid for five minutes and one use; the password step is not
remembered anywhere else.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for

from .. import passwords
from ..core.accounts import User
from . import access, forms, throttle, totp
from . import database as db
from .access import public

bp = Blueprint("auth", __name__)
log = logging.getLogger("tmail.web")

WRONG = "Wrong e-mail address or password."
WRONG_CODE = "That code is not right."
TOO_MANY = "Too many attempts. Try again later."
PENDING = "second-factor"        # token kind: the password was right, the code is next
PENDING_LIFETIME = timedelta(minutes=5)


def _now():
    return current_app.extensions["tmail"].now()


def _client() -> str:
    return request.remote_addr or ""


@bp.get("/")
def home():
    return redirect(url_for("addresses.index"))


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in():
    target = access.safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.user is not None:
            return redirect(target, 303)
        return render_template("sign_in.html", next=target, email="")
    email = request.form.get("email", "").strip()[:320]
    password = request.form.get("password", "")
    accounts, now = db.accounts(), _now()
    found = accounts.user_by_email(email) if email else None
    if found is not None:
        accounts.lock_user(found.id)     # one attempt at a time counts against the account
    checks = ((throttle.SIGN_IN_ACCOUNT, email), (throttle.SIGN_IN_CLIENT, _client()))
    reserved = throttle.reserve(accounts, now, *checks)
    if reserved is None:
        log.warning("sign-in refused: too many failures (client %s)", _client())
        return render_template("sign_in.html", next=target, email=email, error=TOO_MANY), 429
    # The attempt is counted and no lock is held while argon2 runs (a fifth
    # of a second): neither other sign-ins nor the mail path wait for it.
    db.commit()
    ok, rehashed = passwords.check(found.password_hash if found else None, password[:forms.MAX_FIELD])
    if not ok or found is None:
        # one line an admin's fail2ban can read; the address typed is not logged
        log.info("sign-in failed (client %s)", _client())
        return render_template("sign_in.html", next=target, email=email, error=WRONG), 401
    accounts.drop_failures(reserved)
    if not found.enabled:
        db.commit()
        return render_template("sign_in.html", next=target, email=email,
                               error="This account is disabled. Ask your admin."), 403
    if rehashed:
        accounts.rehash_password(found.id, rehashed)
    if found.totp_secret:
        session["pending"] = accounts.issue_token(PENDING, found.id, "", now, PENDING_LIFETIME)
        session["next"] = target
        return redirect(url_for("auth.code"), 303)
    return _signed_in(found, target)


def _signed_in(user: User, target: str, message: str = ""):
    accounts = db.accounts()
    throttle.clear(accounts, throttle.SIGN_IN_ACCOUNT, user.email)
    session.clear()                 # a new CSRF token for the new session
    if message:
        flash(message)
    access.start_session(user)
    accounts.set_user(user.id, last_login_at=_now())
    return redirect(target, 303)


def _pending_user() -> User | None:
    token = session.get("pending")
    found = db.accounts().peek_token(PENDING, token, _now()) if isinstance(token, str) else None
    if found is None or found[0] is None:
        return None
    user = db.accounts().user(found[0])
    return user if user is not None and user.enabled and user.totp_secret else None


def second_factor(user: User, code: str) -> str | None:
    """A current TOTP code not used before, or an unused recovery code:
    None if neither, else what to tell the person ("" for a TOTP code)."""
    accounts, now = db.accounts(), _now()
    code = code.replace(" ", "").replace("-", "")
    assert user.totp_secret is not None
    if totp.looks_like_code(code):
        step = totp.matching_step(user.totp_secret, code, now)
        ok = step is not None and accounts.use_totp_step(user.id, step, now, totp.STEP_KEPT)
        return "" if ok else None
    if len(code) > 40 or not accounts.use_recovery_code(user.id, code, now):
        return None
    return (f"You used a recovery code; {accounts.recovery_codes_left(user.id)} left. "
            "New ones are on your Account page.")


@bp.route("/sign-in/code", methods=["GET", "POST"])
@public
def code():
    user = _pending_user()
    if user is None:
        session.pop("pending", None)
        flash("Sign in again: that step took too long.")
        return redirect(url_for("auth.sign_in"), 303)
    if request.method == "GET":
        return render_template("sign_in_code.html")
    accounts, now = db.accounts(), _now()
    accounts.lock_user(user.id)
    checks = ((throttle.SIGN_IN_ACCOUNT, user.email), (throttle.SIGN_IN_CLIENT, _client()))
    reserved = throttle.reserve(accounts, now, *checks)
    if reserved is None:
        return render_template("sign_in_code.html", error=TOO_MANY), 429
    message = second_factor(user, request.form.get("code", "")[:64])
    if message is None:
        db.commit()
        return render_template("sign_in_code.html", error=WRONG_CODE), 401
    accounts.drop_failures(reserved)
    if accounts.use_token(PENDING, session["pending"], now) is None:
        return redirect(url_for("auth.sign_in"), 303)
    return _signed_in(user, access.safe_next(session.get("next")), message)


@bp.post("/sign-out")
@public
def sign_out():
    access.end_session()
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.sign_in"), 303)
