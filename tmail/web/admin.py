"""A read-only overview for admins: users and domains. Changing them stays
the CLI's job (tmail user, tmail domain). access.py hides this blueprint
from everyone else (404)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from . import database as db

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
def users():
    accounts = db.accounts()
    now = current_app.extensions["tmail"].now()
    found = accounts.list_users()
    return render_template("admin_users.html", users=found, active=accounts.active_counts(now),
                           destinations={u.id: accounts.destinations(u.id) for u in found},
                           shared=sorted(accounts.shared_domains()))


@bp.get("/domains")
def domains():
    store = db.store()
    rows = [(row, store.domain_settings(row["domain"])) for row in store.list_domains()]
    return render_template("admin_domains.html", rows=rows)
