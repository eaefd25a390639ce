"""Authorisation and CSRF, route by route from the app's own URL map, so a
page added later is covered without anyone remembering to list it:

- without a session, every page but the public ones sends to sign-in;
- user B reaches none of user A's addresses, destinations or sessions, by
  any route and any method: 404, as for ids that do not exist;
- every state-changing request without a valid CSRF token is refused and
  changes nothing.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tmail.db.api_tokens import ApiTokens
from tmail.db.schema import metadata

PUBLIC = {"static", "auth.sign_in", "auth.code", "auth.sign_out", "links.password", "links.forgot",
          "signup.start", "signup.confirm", "destinations.verify"}


def _rules(app, method):
    """The pages' routes; the API's take tokens, not sessions (tests/web/test_api_*)."""
    return [r for r in app.url_map.iter_rules() if method in r.methods and not r.endpoint.startswith("api.")]


def _snapshot(web):
    with web.engine.begin() as conn:
        return {t.name: sorted(map(tuple, conn.execute(sa.select(t)).all()), key=repr)
                for t in metadata.sorted_tables}


@pytest.fixture
def setting(web, alice, bob):
    """Alice's things, and the URL values that reach them."""
    record = web.add_alias(alice, "alices")
    with web.accounts() as accounts:
        destination = [d for d in accounts.destinations(alice.id) if d.address == "alice@work.test"][0]
    web.signed_in("alice@real.test")
    with web.accounts() as accounts:
        session = accounts.sessions(alice.id)[0]
    with web.engine.begin() as conn:
        _, token = ApiTokens(conn).add(alice.id, "alices-token", ("create",), web.clock())
    return {"alias_id": record.id, "destination_id": destination.id, "id_hash": session.id_hash,
            "token_id": token.id}


def _without_tokens(answer) -> str:
    """The page, less its CSRF tokens (signed with the time: they differ)."""
    return re.sub(r'name="csrf_token" value="[^"]*"', "", answer.get_data(as_text=True))


def _url(rule, values):
    return rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)[1]


def test_every_page_needs_a_session_except_the_public_ones(web, setting):
    app = web.app
    endpoints = {r.endpoint for r in app.url_map.iter_rules()}
    public = {e for e in endpoints if getattr(app.view_functions[e], "public", False)} | {"static"}
    assert public == PUBLIC
    client = web.client()
    for method in ("GET", "POST"):
        for rule in _rules(app, method):
            if rule.endpoint in PUBLIC:
                continue
            url = _url(rule, setting)
            answer = client.http.open(url, method=method)
            assert answer.status_code == 303, (method, url)
            assert answer.headers["Location"].startswith("/sign-in"), (method, url)


def test_another_users_things_are_not_found(web, setting):
    bob = web.signed_in("bob@real.test")
    token = bob.csrf()
    before = _snapshot(web)
    owned = [r for r in web.app.url_map.iter_rules()
             if set(r.arguments) & {"alias_id", "destination_id", "id_hash", "token_id"}]
    assert {r.endpoint for r in owned} >= {
        "address_page.show", "address_page.extend", "address_page.disable", "address_page.enable",
        "address_page.block", "address_page.unblock", "address_page.destinations", "address_page.note",
        "address_page.delete", "destinations.resend", "destinations.remove", "account.revoke", "tokens.revoke"}
    form = {"csrf_token": token, "by": "7d", "sender": "x@y.test", "destination": "bob@real.test", "note": "mine"}
    missing = {"alias_id": 999, "destination_id": 999, "id_hash": "0" * 64, "token_id": 999}
    for rule in owned:
        for method in ("GET", "POST"):
            if method not in rule.methods:
                continue
            theirs = bob.http.open(_url(rule, setting), method=method, data=form)
            nothing = bob.http.open(_url(rule, missing), method=method, data=form)
            assert theirs.status_code == nothing.status_code == 404, (method, rule)
            assert _without_tokens(theirs) == _without_tokens(nothing)
    assert _snapshot(web) == before
    # and the lists show only bob's things
    for path in ("/addresses", "/destinations", "/account/sessions", "/addresses/new", "/account/api"):
        text = bob.get(path).get_data(as_text=True)
        assert "alices@" not in text and "alice@work.test" not in text and setting["id_hash"] not in text
        assert "alices-token" not in text


def test_search_never_reaches_another_user(web, setting):
    bob = web.signed_in("bob@real.test")
    for query in ("alices", "%", "_", "' OR 1=1 --"):
        text = bob.get("/addresses", query_string={"q": query}).get_data(as_text=True)
        assert "alices@d.test" not in text


def test_admin_pages_do_not_exist_for_users(web, setting):
    bob = web.signed_in("bob@real.test")
    for rule in web.app.url_map.iter_rules():
        if rule.endpoint.startswith("admin."):
            assert bob.get(_url(rule, setting)).status_code == 404
    assert 'href="/admin/"' not in bob.get("/addresses").get_data(as_text=True)


def test_every_state_change_needs_a_csrf_token(web, setting):
    alice = web.signed_in("alice@real.test")
    before = _snapshot(web)
    form = {"by": "7d", "sender": "x@y.test", "destination": "alice@real.test", "note": "changed",
            "address": "new@home.test", "domain": "d.test", "kind": "random", "email": "alice@real.test",
            "password": "correct horse battery", "current_password": "correct horse battery",
            "new_password": "a new password!", "confirm_password": "a new password!", "code": "123456",
            "token": "x"}
    posts = _rules(web.app, "POST")
    assert len(posts) >= 25
    for rule in posts:
        url = _url(rule, setting)
        for token in (None, "not-a-token", alice.csrf()[:-3] + "abc"):
            data = dict(form, **({"csrf_token": token} if token else {}))
            answer = alice.http.post(url, data=data)
            assert answer.status_code == 400, (url, token)
            assert "Form expired" in answer.get_data(as_text=True)
    assert _snapshot(web) == before
    assert web.outbox == []
    assert alice.get("/addresses").status_code == 200         # still signed in: sign-out was refused too


def test_a_token_from_another_browser_is_refused(web, setting):
    alice = web.signed_in("alice@real.test")
    stranger = web.client()
    token = stranger.csrf()
    answer = alice.http.post(f"/addresses/{setting['alias_id']}/disable", data={"csrf_token": token})
    assert answer.status_code == 400 and web.alias(setting["alias_id"]).enabled


def test_unsafe_methods_other_than_post_are_not_routes(web, setting):
    alice = web.signed_in("alice@real.test")
    for method in ("PUT", "PATCH", "DELETE"):
        answer = alice.http.open(f"/addresses/{setting['alias_id']}", method=method)
        assert answer.status_code in (400, 405)
    assert web.alias(setting["alias_id"]) is not None


def test_ids_past_what_a_database_stores_are_not_found(web, setting):
    """A 23-digit id overflows SQLite's integers: 404, not a 500."""
    alice = web.signed_in("alice@real.test")
    token = alice.csrf()
    huge = {"alias_id": 10**22, "destination_id": 2**63, "token_id": 2**64, "id_hash": "0" * 64}
    for rule in web.app.url_map.iter_rules():
        if not set(rule.arguments) & {"alias_id", "destination_id", "token_id"}:
            continue
        for method in sorted(rule.methods & {"GET", "POST"}):
            answer = alice.http.open(_url(rule, huge), method=method, data={"csrf_token": token})
            assert answer.status_code == 404, (method, rule.rule)
