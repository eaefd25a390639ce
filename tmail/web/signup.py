"""Creating an account, as [web] signup allows:

- "closed": no page (the admin adds users with `tmail user add`);
- "invite": the link `tmail user invite` prints opens the form;
- "open": anyone whose address is at one of [web] signup_domains.

Either way the address is verified first: the form mails a link (valid an
hour), and only the person who opens it chooses a password and gets the
account, whose own address is then its first, verified destination. An
invitation is used when the account is made, not when the mail is sent,
so a mistyped address does not waste it. Whether an account exists is
never said: the answer is the same and no mail goes out.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from .. import defaults, passwords
from ..core import accounts as rules
from ..core import aliases as alias_rules
from ..core import mails
from ..core.accounts import AccountError
from ..core.address import AddressError, parse_address
from . import access, forms, mailer, throttle
from . import database as db
from .access import public
from .links import dead_link

bp = Blueprint("signup", __name__)

SENT = "Check your mail: if this address can have an account, a link to create it is on its way (valid an hour)."


def _state():
    return current_app.extensions["tmail"]


def _mode() -> str:
    mode = _state().config["web"]["signup"]
    if mode == "closed":
        abort(404)
    return mode


def _invite_ok(invite: str) -> bool:
    return bool(invite) and db.accounts().peek_token(rules.INVITE, invite, _state().now()) is not None


def check_address(text: str) -> str:
    """An address that may own an account: well-formed, allowed by the
    sign-up mode, and a possible destination (not at tmail's own domains)."""
    try:
        address = parse_address(text)
        alias_rules.check_destinations([str(address)], alias_rules.Rules(
            tmail_domains=frozenset(db.store().domain_names()), service_domains=_state().config.service_domains,
            recipient_delimiter="", role_local_parts=defaults.ROLE_LOCAL_PARTS))
        rules.check_account_address(str(address))
    except (AddressError, AccountError) as exc:
        raise forms.FormError(str(exc)) from None
    allowed = _state().config.signup_domains
    if _mode() == "open" and address.domain not in allowed:
        raise forms.FormError(f"Accounts are open to addresses at {', '.join(sorted(allowed)) or 'no domain'} only.")
    return str(address)


@bp.route("/signup", methods=["GET", "POST"])
@public
def start():
    mode = _mode()
    invite = (request.values.get("token") or "")[:100] if mode == "invite" else ""
    if mode == "invite" and not _invite_ok(invite):
        return dead_link()
    domains = sorted(_state().config.signup_domains) if mode == "open" else []
    if request.method == "GET":
        return render_template("signup.html", invite=invite, domains=domains, email="")
    email = request.form.get("email", "").strip()[:320]
    try:
        address = check_address(email)
    except forms.FormError as exc:
        return render_template("signup.html", invite=invite, domains=domains, email=email, error=str(exc)), 400
    accounts, now = db.accounts(), _state().now()
    checks = ((throttle.MAIL_TO_ADDRESS, address), (throttle.MAIL_FROM_CLIENT, request.remote_addr or ""))
    if throttle.exceeded(accounts, now, *checks):
        return render_template("signup.html", invite=invite, domains=domains, email=email,
                               error="Too many requests. Try again later."), 429
    throttle.note(accounts, now, *checks)
    if accounts.user_by_email(address) is not None:
        db.commit()
        return render_template("signup_sent.html", message=SENT)
    token = accounts.issue_token(rules.SIGNUP, None, address, now, rules.TOKEN_LIFETIMES[rules.SIGNUP])
    db.commit()
    values = {"token": token, "invite": invite} if invite else {"token": token}
    mailer.send_later(address, mails.signup_link, link=mailer.link("signup.confirm", **values))
    return render_template("signup_sent.html", message=SENT)


@bp.route("/signup/confirm", methods=["GET", "POST"])
@public
def confirm():
    mode = _mode()
    token = (request.values.get("token") or "")[:100]
    invite = (request.values.get("invite") or "")[:100] if mode == "invite" else ""
    accounts, now = db.accounts(), _state().now()
    found = accounts.peek_token(rules.SIGNUP, token, now) if token else None
    if found is None or (mode == "invite" and not _invite_ok(invite)):
        return dead_link()
    email = found[1]
    if request.method == "GET":
        return render_template("signup_confirm.html", token=token, invite=invite, email=email)
    try:
        password = rules.check_password(forms.passwords(request.form))
    except (AccountError, forms.FormError) as exc:
        return render_template("signup_confirm.html", token=token, invite=invite, email=email, error=str(exc)), 400
    if accounts.use_token(rules.SIGNUP, token, now) is None or \
            (invite and accounts.use_token(rules.INVITE, invite, now) is None) or \
            accounts.user_by_email(email) is not None:
        return dead_link()
    user = accounts.add_user(email, now)
    accounts.add_destination(user.id, email, now, verified=True)
    accounts.set_password(user.id, passwords.hash_password(password), now)
    session.clear()
    access.start_session(user)
    flash(f"Welcome. Your account {email} is ready; mail to your addresses goes there.")
    return redirect(url_for("addresses.index"), 303)
