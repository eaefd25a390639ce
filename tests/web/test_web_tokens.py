"""The API page: tokens made after the password is typed again, shown once,
stored as a hash, listed without their secret, revoked at once; the API
defaults (expiry, domain) of the addresses a password manager makes."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from websuite import PASSWORD

from tmail.core.accounts import token_hash
from tmail.db.api_tokens import ApiTokens
from tmail.db.schema import metadata

TOKEN = re.compile(r'<code id="api-token" class="secret">(tmail_[A-Za-z0-9_-]+)</code>')


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def _tokens(web, user_id):
    with web.engine.begin() as conn:
        return ApiTokens(conn).of_user(user_id)


def _database_text(web) -> str:
    """Every value of every row of every table, as one text."""
    with web.engine.begin() as conn:
        return "\n".join(repr(value) for table in metadata.sorted_tables
                         for row in conn.execute(sa.select(table)) for value in row)


def _create(client, name="Bitwarden", password=PASSWORD, **fields):
    form = {"name": name, "scopes": ["create", "read", "change"], "current_password": password, **fields}
    return client.post("/account/api/tokens", form)


def _made(client, name="Bitwarden", **fields) -> str:
    answer = _create(client, name, **fields)
    assert answer.status_code == 200, _body(answer)
    return TOKEN.search(_body(answer)).group(1)


def _api_new(web, token):
    """The request Bitwarden's SimpleLogin forwarder sends."""
    return web.client().http.post("/api/alias/random/new", headers={
        "Authentication": token, "Content-Type": "application/json", "Accept": "application/json"}, data="{}")


@pytest.fixture
def client(web, alice):
    return web.signed_in("alice@real.test")


def test_the_page_explains_and_offers_the_forms(web, client):
    answer = client.get("/account/api")
    page = _body(answer)
    assert answer.status_code == 200 and "You have no API tokens" in page
    assert 'aria-current="page">API</a>' in page
    for text in ("Forwarded email alias", "SimpleLogin", "Self-host server URL", "addy.io", "HTTPS",
                 '<code id="base-url" class="secret">https://mail.test</code>', 'name="current_password"',
                 'action="/account/api/tokens"', 'action="/account/api/defaults"'):
        assert text in page, text
    for scope in ("create", "read", "change"):     # all checked at first
        assert re.search(rf'id="scope-{scope}" name="scopes" value="{scope}" checked', page), scope
    assert 'href="/account/api"' in _body(client.get("/account"))


def test_a_token_is_shown_once_stored_as_a_hash_and_works(web, alice, client):
    answer = _create(client, "Bitwarden on my phone")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    page = _body(answer)
    token = TOKEN.search(page).group(1)
    assert "shown only now" in page and 'data-copy="api-token"' in page
    (record,) = _tokens(web, alice.id)
    assert record.name == "Bitwarden on my phone" and record.scopes == ("create", "read", "change")
    assert record.created_at == web.clock() and record.expires_at is None and record.last_used_at is None
    assert token.startswith(record.shown) and len(token) > len(record.shown) + 20
    # the database holds no part of the secret beyond the prefix shown on the page
    stored = _database_text(web)
    assert token not in stored and token[len(record.shown):] not in stored
    assert token_hash(token) in stored
    # it authenticates against the API
    made = _api_new(web, token)
    assert made.status_code == 201, _body(made)
    alias = made.get_json()["alias"]
    assert alias.endswith("@d.test")
    assert _tokens(web, alice.id)[0].last_used_at == web.clock()
    # the list shows its name and prefix, never the token again
    listed = _body(client.get("/account/api"))
    assert "Bitwarden on my phone" in listed and f"{record.shown}…" in listed
    assert token not in listed and token[len(record.shown):] not in listed
    assert "may: create, read, change" in listed and "expires never" in listed
    assert "last used 2026-12-01 12:00 UTC" in listed


def test_a_wrong_password_makes_nothing_and_is_counted(web, alice, client):
    for _ in range(5):
        answer = _create(client, password="not my password")
        assert answer.status_code == 400 and "not right" in _body(answer)
        assert "tmail_" not in _body(answer)
    assert _tokens(web, alice.id) == []
    answer = _create(client)
    assert answer.status_code == 400 and "Too many attempts" in _body(answer)
    assert _tokens(web, alice.id) == []
    assert 'value="Bitwarden"' in _body(answer)          # the form keeps what was typed, not the password
    assert PASSWORD not in _body(answer)


@pytest.mark.parametrize("fields, message", [
    ({"name": ""}, "Give the token a name"),
    ({"name": "   "}, "Give the token a name"),
    ({"name": "x" * 101}, "longer than 100 characters"),
    ({"name": "tab\there"}, ""),
    ({"scopes": ["create", "admin"]}, "Unknown scope &#39;admin&#39;"),
    ({"scopes": []}, "at least one scope"),
    ({"expires": "2026-11-30"}, "is in the past"),
    ({"expires": "2026-12-01"}, "is in the past"),            # midnight, before the clock's noon
    ({"expires": "next week"}, "is not a date"),
])
def test_refused_requests_make_nothing(web, alice, client, fields, message):
    form = {"name": "Bitwarden", "scopes": ["create"], "current_password": PASSWORD, **fields}
    answer = client.post("/account/api/tokens", form)
    assert answer.status_code == 400, fields
    assert message in _body(answer) and 'role="alert"' in _body(answer)
    assert _tokens(web, alice.id) == []


def test_scopes_and_an_expiry_date(web, alice, client):
    token = _made(client, "Reader", scopes=["read"], expires="2027-01-01")
    (record,) = _tokens(web, alice.id)
    assert record.scopes == ("read",) and record.expires_at.isoformat() == "2027-01-01T00:00:00+00:00"
    assert "expires 2027-01-01 00:00 UTC" in _body(client.get("/account/api"))
    assert _api_new(web, token).status_code == 403          # may not create
    web.clock.advance(days=31)
    assert _api_new(web, token).status_code == 401          # expired
    page = _body(web.signed_in("alice@real.test").get("/account/api"))
    assert '<span class="state state-expired">expired</span>' in page


def test_a_name_is_used_once(web, alice, client):
    _made(client, "Bitwarden")
    again = _create(client, "Bitwarden")
    assert again.status_code == 400 and "already" in _body(again) and not TOKEN.search(_body(again))
    assert len(_tokens(web, alice.id)) == 1
    _made(client, "bitwarden")          # another name (compared exactly)
    assert len(_tokens(web, alice.id)) == 2


def test_revoke(web, alice, client):
    token = _made(client)
    assert _api_new(web, token).status_code == 201
    (record,) = _tokens(web, alice.id)
    answer = client.post(f"/account/api/tokens/{record.id}/revoke")
    assert answer.status_code == 303 and answer.headers["Location"] == "/account/api"
    assert _tokens(web, alice.id) == []
    page = _body(client.get("/account/api"))
    assert "is revoked" in page and "You have no API tokens" in page
    assert _api_new(web, token).status_code == 401
    assert client.post(f"/account/api/tokens/{record.id}/revoke").status_code == 404     # gone already


def test_another_users_token_cannot_be_revoked(web, alice, bob, client):
    token = _made(client)
    (record,) = _tokens(web, alice.id)
    stranger = web.signed_in("bob@real.test")
    theirs = stranger.post(f"/account/api/tokens/{record.id}/revoke")
    nothing = stranger.post("/account/api/tokens/999/revoke")
    huge = stranger.post(f"/account/api/tokens/{10**30}/revoke")
    assert theirs.status_code == nothing.status_code == huge.status_code == 404
    assert _tokens(web, alice.id) == [record]
    assert _api_new(web, token).status_code == 201
    page = _body(stranger.get("/account/api"))
    assert "You have no API tokens" in page and record.shown not in page


def test_api_defaults(web, alice, client):
    token = _made(client, scopes=["create"])
    # by default an address made through the API never expires
    made = _api_new(web, token).get_json()
    assert web.alias(made["id"]).expires_at is None
    # a domain the user may not use is refused, and nothing is stored
    answer = client.post("/account/api/defaults", {"ttl": "30d", "domain": "other.test"})
    assert answer.status_code == 400 and "other.test" in _body(answer)
    user = web.user("alice@real.test")
    assert user.api_ttl is None and user.api_domain is None
    assert client.post("/account/api/defaults", {"ttl": "soon", "domain": ""}).status_code == 400
    assert client.post("/account/api/defaults", {"ttl": "36500000d", "domain": ""}).status_code == 400
    assert client.post("/account/api/defaults", {"ttl": "5200w", "domain": ""}).status_code == 303   # 100 years
    # a time to live: the next address expires that far ahead
    answer = client.post("/account/api/defaults", {"ttl": "30d", "domain": "d.test"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/account/api"
    user = web.user("alice@real.test")
    assert user.api_ttl == timedelta(days=30) and user.api_domain == "d.test"
    page = _body(client.get("/account/api"))
    assert "Saved" in page and 'name="ttl" type="text" value="30d"' in page
    assert '<option value="d.test" selected>' in page
    made = _api_new(web, token).get_json()
    assert web.alias(made["id"]).expires_at == web.clock() + timedelta(days=30)
    assert made["alias"].endswith("@d.test")
    # empty: never again, and the domain chosen automatically
    assert client.post("/account/api/defaults", {"ttl": "", "domain": ""}).status_code == 303
    user = web.user("alice@real.test")
    assert user.api_ttl is None and user.api_domain is None
    made = _api_new(web, token).get_json()
    assert web.alias(made["id"]).expires_at is None


def test_an_own_domain_can_be_the_api_domain(web):
    web.add_user("carol@real.test", domains=["other.test"])
    client = web.signed_in("carol@real.test")
    page = _body(client.get("/account/api"))
    assert "automatic (now @other.test)" in page          # one's own domain comes first
    assert client.post("/account/api/defaults", {"ttl": "", "domain": "D.test"}).status_code == 303
    token = _made(client, scopes=["create"])
    assert _api_new(web, token).get_json()["alias"].endswith("@d.test")


def test_every_post_needs_a_csrf_token(web, alice, client):
    _made(client)
    (record,) = _tokens(web, alice.id)
    before = _database_text(web)
    posts = {"/account/api/tokens": {"name": "Other", "scopes": "create", "current_password": PASSWORD},
             f"/account/api/tokens/{record.id}/revoke": {},
             "/account/api/defaults": {"ttl": "7d", "domain": "d.test"}}
    for path, form in posts.items():
        answer = client.post(path, form, csrf=False)
        assert answer.status_code == 400 and "Form expired" in _body(answer), path
    assert _database_text(web) == before
