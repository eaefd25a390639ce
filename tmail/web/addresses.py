"""The Addresses page (search, filter, sort, pages: all in SQL) and the
creation of new addresses: random in one click, or with every setting."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..core import aliases as alias_rules
from ..core.accounts import usable_domains
from ..core.glance import glance
from . import access, creation, forms
from . import database as db

bp = Blueprint("addresses", __name__)

PAGE_SIZE = 50
STATES = {"active": "Active", "expired": "Expired", "disabled": "Disabled"}
SORTS = {"created": "Newest first", "expiry": "Expiring soonest", "activity": "Latest mail first"}


def _now():
    return current_app.extensions["tmail"].now()


def _domains() -> list[str]:
    return list(usable_domains(access.user(), db.accounts().shared_domains()))


@bp.get("/addresses")
def index():
    user, now = access.user(), _now()
    args = request.args
    search = (args.get("q") or "").strip()[:100]
    state = args.get("state") if args.get("state") in STATES else ""
    domain = (args.get("domain") or "").strip()[:255]
    sort = args.get("sort") if args.get("sort") in SORTS else "created"
    page = forms.page(args.get("page"))
    found = db.accounts().owned_aliases(user.id, now, search=search, state=state, domain=domain, sort=sort,
                                        offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    # past the counted total, the number of pages is not known: "page 250"
    pages = None if found.more_than_total else max(1, -(-found.total // PAGE_SIZE))
    query = {k: v for k, v in (("q", search), ("state", state), ("domain", domain), ("sort", sort)) if v}
    return render_template(
        "addresses.html", rows=[(r, glance(r, now)) for r in found.aliases], found=found, page=page,
        pages=pages, query=query, search=search, state=state, domain=domain, sort=sort, states=STATES,
        sorts=SORTS, domains=_domains(), can_create=bool(creation.verified(user)), now=now)


@bp.post("/addresses/random")
def random():
    """One click: a random address at the chosen domain, with its defaults,
    forwarding to the account's own (or first verified) destination."""
    user = access.user()
    domain = request.form.get("domain", "").strip()[:255]
    try:
        record = creation.create(user, None, domain, creation.default_destinations(user), alias_rules.Settings())
    except forms.FormError as exc:
        flash(str(exc), "error")
        return redirect(url_for("addresses.index"), 303)
    flash(f"Your new address: {record.address}", "created")
    return redirect(url_for("address_page.show", alias_id=record.id), 303)


def _form_page(values, error: str = "", status: int = 200):
    user = access.user()
    store = db.store()
    domains = _domains()
    settings = {d: store.domain_settings(d) for d in domains}
    return render_template("new_address.html", values=values, domains=domains, domain_settings=settings,
                           destinations=creation.verified(user), error=error), status


@bp.get("/addresses/new")
def new():
    user = access.user()
    domains = _domains()
    domain = request.args.get("domain") if request.args.get("domain") in domains else (domains[:1] or [""])[0]
    values = {"kind": "random", "domain": domain, "destination": creation.default_destinations(user),
              "on_expiry": ""}
    if len(domains) == 1:      # one domain: its defaults, written out
        defaults = db.store().domain_settings(domain)
        values.update(ttl=_duration(defaults.ttl), idle=_duration(defaults.idle),
                      on_expiry=defaults.on_expiry.value if defaults.on_expiry else "")
    return _form_page(values)


def _duration(value) -> str:
    from ..core.durations import format_duration
    return format_duration(value) if value else ""


@bp.post("/addresses/new")
def create():
    user, form = access.user(), request.form
    values = {key: form.get(key, "") for key in ("kind", "local", "domain", "ttl", "expires", "max_messages",
                                                 "idle", "on_expiry", "note")}
    values["destination"] = form.getlist("destination")[:50]
    try:
        local = None
        if values["kind"] == "chosen":
            local = forms.field(form, "local", "The name", 64)
            if not local:
                raise forms.FormError("Write the name you want before the @, or choose a random address")
        settings = forms.settings(form, _now())
        record = creation.create(user, local, values["domain"].strip()[:255], values["destination"], settings)
    except (forms.FormError, ValueError) as exc:
        return _form_page(values, str(exc), 400)
    flash(f"Your new address: {record.address}", "created")
    return redirect(url_for("address_page.show", alias_id=record.id), 303)
