"""tmail's own API (/api/v1/tmail/): the CLI's JSON keys, each object only
its owner's, scopes enforced, errors naming the field; the OpenAPI
document matches what is served."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tmail import jsontext
from tmail.core import aliases as alias_rules
from tmail.db.schema import metadata

BASE = "/api/v1/tmail"


class Api:
    def __init__(self, web, token):
        self.http, self.token = web.client().http, token

    def __call__(self, method, path, body=None):
        return self.http.open(BASE + path, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if body is not None else {})},
            data=json.dumps(body) if body is not None else None)


@pytest.fixture
def api(web, alice):
    return Api(web, web.token(alice))


def _snapshot(web):
    with web.engine.begin() as conn:
        return {t.name: sorted(map(tuple, conn.execute(sa.select(t)).all()), key=repr)
                for t in metadata.sorted_tables if t.name not in ("login_failures", "api_tokens")}


def test_create_get_and_list_use_the_clis_keys(web, alice, api):
    made = api("POST", "/aliases", {"domain": "d.test", "local": "shop", "ttl": "7d", "max_messages": 5,
                                    "note": "the shop", "destinations": ["alice@work.test"]})
    assert made.status_code == 201, made.get_data(as_text=True)
    alias = made.get_json()["alias"]
    record = web.alias(alias["id"])
    described = alias_rules.describe(record, web.clock(), "alice@real.test")
    assert alias == {"id": record.id, **json.loads(jsontext.dumps(described))}
    assert alias["address"] == "shop@d.test" and alias["max_messages"] == 5 and alias["seconds_left"] == 7 * 86400
    assert alias["expires_at"] == "2026-12-08T12:00:00Z"
    assert api("GET", f"/aliases/{record.id}").get_json()["alias"] == alias
    assert api("GET", "/aliases/Shop@D.test").get_json()["alias"]["id"] == record.id      # by address, any case
    listed = api("GET", "/aliases").get_json()
    assert [a["address"] for a in listed["aliases"]] == ["shop@d.test"] and listed["total"] == 1


def test_list_pages_filters_and_sorts_in_sql(web, alice, api):
    for i in range(7):
        web.add_alias(alice, f"a{i}", enabled=i != 3)
        web.clock.advance(minutes=1)
    first = api("GET", "/aliases?per_page=3").get_json()
    assert [a["address"] for a in first["aliases"]] == ["a6@d.test", "a5@d.test", "a4@d.test"] and first["has_next"]
    third = api("GET", "/aliases?per_page=3&page=3").get_json()
    assert [a["address"] for a in third["aliases"]] == ["a0@d.test"] and not third["has_next"]
    assert [a["address"] for a in api("GET", "/aliases?state=disabled").get_json()["aliases"]] == ["a3@d.test"]
    assert [a["address"] for a in api("GET", "/aliases?search=a5").get_json()["aliases"]] == ["a5@d.test"]
    assert api("GET", "/aliases?per_page=1000").get_json()["per_page"] == 100
    for query, field in (("state=gone", "state"), ("sort=random", "sort")):
        answer = api("GET", f"/aliases?{query}")
        assert answer.status_code == 400 and field in answer.get_json()["error"]


@pytest.mark.parametrize("body, field", [
    ({"domain": "d.test", "ttl": "forever"}, "ttl"),
    ({"domain": "d.test", "ttl": "7d", "expires_at": "2027-01-01"}, "expires_at"),
    ({"domain": "d.test", "expires_at": "2020-01-01"}, "expires_at"),
    ({"domain": "d.test", "max_messages": 0}, "max_messages"),
    ({"domain": "d.test", "max_messages": "²"}, "max_messages"),
    ({"domain": "d.test", "max_messages": True}, "max_messages"),
    ({"domain": "d.test", "on_expiry": "bounce"}, "on_expiry"),
    ({"domain": "d.test", "note": "a\nBcc: x@y.test"}, "note"),
    ({"domain": "d.test", "local": "a b"}, "a b"),
    ({"domain": "d.test", "destinations": "alice@work.test"}, "destinations"),
    ({"domain": "d.test", "destinations": ["stranger@else.test"]}, "stranger@else.test"),
    ({"domain": "d.test", "owner_id": 2}, "owner_id"),
    ({}, "domain"),
])
def test_bad_input_names_the_field_and_writes_nothing(web, alice, api, body, field):
    before = _snapshot(web)
    answer = api("POST", "/aliases", body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert field in answer.get_json()["error"]
    assert _snapshot(web) == before


def test_change_extend_block_and_delete(web, alice, api):
    record = web.add_alias(alice, "shop", max_messages=3)
    path = f"/aliases/{record.id}"
    changed = api("PATCH", path, {"note": "new", "max_messages": None, "enabled": False,
                                  "destinations": ["alice@work.test"], "on_expiry": "drop"}).get_json()["alias"]
    assert (changed["note"], changed["max_messages"], changed["enabled"], changed["destinations"],
            changed["on_expiry"]) == ("new", None, False, ["alice@work.test"], "drop")
    extended = api("POST", path + "/extend", {"by": "2d"}).get_json()["alias"]
    assert extended["expires_at"] == "2026-12-03T12:00:00Z"
    blocked = api("POST", path + "/block-sender", {"sender": "Spam@Example.test"}).get_json()["alias"]
    assert blocked["blocked_senders"] == ["spam@example.test"]
    unblocked = api("POST", path + "/unblock-sender", {"sender": "spam@example.test"}).get_json()["alias"]
    assert unblocked["blocked_senders"] == []
    assert api("DELETE", path).get_json() == {"ok": True, "removed": "shop@d.test"}
    assert api("GET", path).status_code == 404
    assert api("POST", "/aliases", {"domain": "d.test", "local": "shop"}).status_code == 409   # quarantined


def test_patch_refuses_unknown_fields_and_unverified_destinations(web, alice, api):
    record = web.add_alias(alice, "shop")
    before = _snapshot(web)
    for body in ({"address": "other@d.test"}, {"destinations": ["x@y.test"]}, {"enabled": "yes"}, {"owner": "bob"}):
        assert api("PATCH", f"/aliases/{record.id}", body).status_code == 400, body
    assert _snapshot(web) == before


def test_reviving_an_address_counts_against_the_limit(web):
    carol = web.add_user("carol@real.test", max_aliases=1)
    api = Api(web, web.token(carol))
    old = web.add_alias(carol, "old", enabled=False)
    web.add_alias(carol, "new")
    answer = api("PATCH", f"/aliases/{old.id}", {"enabled": True})
    assert answer.status_code == 409 and "active addresses" in answer.get_json()["error"]
    assert not web.alias(old.id).enabled


def test_destinations_are_the_users_own(web, alice, api):
    found = api("GET", "/destinations").get_json()["destinations"]
    assert sorted(d["address"] for d in found) == ["alice@real.test", "alice@work.test"]
    assert all(d["verified"] for d in found)


def test_another_users_token_finds_nothing(web, alice, bob):
    record = web.add_alias(alice, "alices")
    bobs = Api(web, web.token(bob))
    before = _snapshot(web)
    # the id, and the address in the spellings that reach the same alias elsewhere
    for ref in (str(record.id), "alices@d.test", "ALICES@d.test", "alices@D.TEST.", '"alices"@d.test',
                "alices%40d.test", "0" + str(record.id)):
        for method, path, body in (("GET", "", None), ("PATCH", "", {"note": "bob"}), ("DELETE", "", None),
                                   ("POST", "/extend", {"by": "1d"}), ("POST", "/block-sender", {"sender": "a@b.test"}),
                                   ("POST", "/unblock-sender", {"sender": "a@b.test"})):
            answer = bobs(method, f"/aliases/{ref}{path}", body)
            assert answer.status_code == 404, (method, ref, path)
    listed = bobs("GET", "/aliases").get_json()
    assert listed["aliases"] == [] and listed["total"] == 0
    assert "alice" not in json.dumps(bobs("GET", "/destinations").get_json())
    assert _snapshot(web) == before


@pytest.mark.parametrize("scopes, allowed", [
    (("read",), {"list", "get"}),
    (("create",), {"create"}),
    (("change",), {"patch", "delete"}),
])
def test_scopes(web, alice, scopes, allowed):
    record = web.add_alias(alice, "shop")
    api = Api(web, web.token(alice, scopes=scopes))
    calls = {"list": ("GET", "/aliases", None), "get": ("GET", f"/aliases/{record.id}", None),
             "create": ("POST", "/aliases", {"domain": "d.test"}),
             "patch": ("PATCH", f"/aliases/{record.id}", {"note": "x"}),
             "delete": ("DELETE", f"/aliases/{record.id}", None)}
    for name, (method, path, body) in calls.items():
        status = api(method, path, body).status_code
        assert (status < 300) == (name in allowed), (name, status)
        if name not in allowed:
            assert status == 403


def test_openapi_document_matches_what_is_served(web, alice, api):
    document = web.client().http.get(BASE + "/openapi.json").get_json()      # no token needed
    alias = api("POST", "/aliases", {"domain": "d.test"}).get_json()["alias"]
    schema = document["components"]["schemas"]["Alias"]
    assert set(schema["properties"]) == set(alias) == set(schema["required"])
    served = set()
    for rule in web.app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = rule.rule.removeprefix("/api").replace("<ref>", "{ref}")
            served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "patch", "delete")}
    assert served == documented


def test_dates_in_the_past_and_expiry_far_ahead(web, alice, api):
    record = web.add_alias(alice, "shop", expires_at=web.clock() + timedelta(days=1))
    assert api("POST", f"/aliases/{record.id}/extend", {"until": "2020-01-01"}).status_code == 400
    assert api("POST", f"/aliases/{record.id}/extend", {"by": "5200w", "until": "2030-01-01"}).status_code == 400
    assert api("POST", f"/aliases/{record.id}/extend", {}).status_code == 400
