"""What an attack on the API found, kept found: parallel requests on every
database, stale write-backs, bodies and values that broke the server,
redirects, wrong tokens, and a token learning the user's real mailboxes."""
from __future__ import annotations

import json
import threading
import time

import pytest

from tmail.web.api import aliases as api_aliases

SIMPLELOGIN = "/api/alias/random/new"
BASE = "/api/v1/tmail"


def headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}


def at_once(web, count, request):
    """`count` requests released together, each from its own client."""
    statuses, start = [], threading.Barrier(count)

    def run(i):
        client = web.app.test_client()
        start.wait()
        statuses.append(request(client, i).status_code)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.parametrize("path, body", [(SIMPLELOGIN, {}), ("/api/v1/aliases", {"domain": "d.test"}),
                                        (f"{BASE}/aliases", {"domain": "d.test"})])
def test_limits_hold_for_requests_at_once_on_every_database(any_web, path, body):
    """MariaDB's REPEATABLE READ read counts from a snapshot older than the
    lock: 8 of 3 were made. READ COMMITTED sees what the lock waited for."""
    web = any_web
    carol = web.add_user("carol@real.test", max_aliases=3)
    token = web.token(carol)
    statuses = at_once(web, 12, lambda c, i: c.post(path, headers=headers(token), data=json.dumps(body)))
    with web.accounts() as accounts:
        assert accounts.count_active(carol.id, web.clock()) == 3
    assert statuses.count(201) == 3 and statuses.count(409) == 9


def test_requests_counted_at_once_on_every_database(any_web):
    web = any_web
    token = web.token(web.add_user("carol@real.test"))
    statuses = at_once(web, 80, lambda c, i: c.get(f"{BASE}/destinations", headers=headers(token)))
    assert statuses.count(200) == 60 and statuses.count(429) == 20


def test_a_slow_change_does_not_undo_one_made_meanwhile(any_web, monkeypatch):
    """A reads the alias, B disables it and revives another, A writes back:
    without a lock A's copy made both active past the limit of one."""
    web = any_web
    carol = web.add_user("carol@real.test", max_aliases=1)
    first, second = web.add_alias(carol, "first"), web.add_alias(carol, "second", enabled=False)
    token = web.token(carol)
    read = threading.Event()
    real = api_aliases.json_body

    def slow_body(allowed):
        if threading.current_thread().name == "slow":
            read.set()
            time.sleep(1.0)                 # it has read the alias (or waits for the lock)
        return real(allowed)
    monkeypatch.setattr(api_aliases, "json_body", slow_body)

    def slow():
        web.app.test_client().patch(f"{BASE}/aliases/{first.id}", headers=headers(token),
                                    data=json.dumps({"note": "harmless"}))
    thread = threading.Thread(target=slow, name="slow")
    thread.start()
    read.wait(5)
    client = web.app.test_client()
    client.patch(f"{BASE}/aliases/{first.id}", headers=headers(token), data=json.dumps({"enabled": False}))
    client.patch(f"{BASE}/aliases/{second.id}", headers=headers(token), data=json.dumps({"enabled": True}))
    thread.join()
    with web.accounts() as accounts:
        assert accounts.count_active(carol.id, web.clock()) == 1
    assert web.alias(first.id).note == "harmless" and not web.alias(first.id).enabled


@pytest.mark.parametrize("body, field", [
    ({"domain": "d.test", "idle": "5200w"}, "idle"),
    ({"domain": "d.test", "max_messages": 999999999999}, "max_messages"),
    ({"domain": "d.test", "local": "ΐ" * 32}, "case-folded"),
    ({"domain": "d.test", "expires_at": "9999-12-31T23:00-01:00"}, "expires_at"),
])
def test_values_no_column_holds_are_400_on_every_database(any_web, body, field):
    web = any_web
    token = web.token(web.add_user("carol@real.test"))
    answer = web.app.test_client().post(f"{BASE}/aliases", headers=headers(token), data=json.dumps(body))
    assert answer.status_code == 400 and field in answer.get_json()["error"]


def test_durations_may_be_seconds(web, alice):
    answer = web.client().http.post(f"{BASE}/aliases", headers=headers(web.token(alice)),
                                    data=json.dumps({"domain": "d.test", "ttl": 3600}))
    assert answer.get_json()["alias"]["seconds_left"] == 3600


@pytest.mark.parametrize("path", [SIMPLELOGIN, "/api/v1/aliases", f"{BASE}/aliases"])
def test_deeply_nested_json_is_400(web, alice, path):
    answer = web.client().http.post(path, headers=headers(web.token(alice)), data="[" * 5000 + "]" * 5000)
    assert answer.status_code == 400


@pytest.mark.parametrize("method, path", [("GET", "/api/v1//tmail/aliases"), ("POST", "/api//alias/random/new"),
                                          ("GET", "/account//api")])
def test_doubled_slashes_are_not_redirected_anywhere(web, method, path):
    answer = web.client().http.open(path, method=method, headers={"Host": "evil.example"})
    assert answer.status_code == 404 and "Location" not in answer.headers


def test_wrong_tokens_are_throttled_per_client_and_take_no_write_lock(web, alice):
    client = web.client().http
    with web.engine.begin() as conn:       # a writer holds SQLite's lock meanwhile
        conn.exec_driver_sql("UPDATE users SET enabled = enabled")
        started = time.monotonic()
        statuses = [client.get(f"{BASE}/aliases", headers={"Authorization": f"Bearer tmail_guess{i}"}).status_code
                    for i in range(21)]
        assert time.monotonic() - started < 3          # none waited for the lock
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
    good = web.token(alice)
    assert client.get(f"{BASE}/aliases", headers={"Authorization": f"Bearer {good}"}).status_code == 429
    web.clock.advance(minutes=1, seconds=1)
    assert client.get(f"{BASE}/aliases", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_a_create_only_token_cannot_learn_the_real_mailboxes(web, alice):
    token = web.token(alice, scopes=("create",))
    client = web.client().http
    answers = [client.post(f"{BASE}/aliases", headers=headers(token), data=json.dumps(
        {"domain": "d.test", "local": "postmaster", "destinations": [guess]})).get_json()["error"]
        for guess in ("alice@work.test", "alice@home.test")]
    assert answers[0] == answers[1]                     # the name is refused first, whatever the guess
    made = client.post(SIMPLELOGIN, headers={**headers(token), "Authentication": token}, data="{}").get_json()
    assert "real.test" not in json.dumps(made) and "work.test" not in json.dumps(made)


def test_unblock_takes_the_spelling_block_took(web, alice):
    record = web.add_alias(alice, "shop")
    client, token = web.client().http, web.token(alice)
    path = f"{BASE}/aliases/{record.id}"
    client.post(path + "/block-sender", headers=headers(token), data=json.dumps({"sender": "Spam@Example.test"}))
    answer = client.post(path + "/unblock-sender", headers=headers(token),
                         data=json.dumps({"sender": "Spam@Example.test"}))
    assert answer.get_json()["alias"]["blocked_senders"] == []
    again = client.post(path + "/unblock-sender", headers=headers(token), data=json.dumps({"sender": "x@y.test"}))
    assert again.status_code == 404


def test_a_reset_or_a_disabled_account_revokes_api_tokens(web, alice):
    from tmail.core import accounts as rules
    token = web.token(alice)
    with web.accounts() as accounts:
        link = accounts.issue_token(rules.RESET_PASSWORD, alice.id, "", web.clock(), rules.TOKEN_LIFETIMES[
            rules.RESET_PASSWORD])
    client = web.client()
    answer = client.post("/password", {"token": link, "new_password": "another good one",
                                       "confirm_password": "another good one"})
    assert answer.status_code == 303
    assert client.http.get(f"{BASE}/aliases", headers=headers(token)).status_code == 401
