"""The Account page: password change, two-factor sign-in with recovery codes,
sessions and their revocation; the admin overview."""
from __future__ import annotations

import re

import pyotp
from websuite import PASSWORD

NEW = "another good password"


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def test_change_password_needs_the_current_one(web, alice):
    client = web.signed_in("alice@real.test")
    other = web.signed_in("alice@real.test")
    wrong = client.post("/account/password", {"current_password": "nope nope nope", "new_password": NEW,
                                              "confirm_password": NEW})
    assert wrong.status_code == 400 and "not right" in _body(wrong)
    short = client.post("/account/password", {"current_password": PASSWORD, "new_password": "short",
                                              "confirm_password": "short"})
    assert short.status_code == 400
    done = client.post("/account/password", {"current_password": PASSWORD, "new_password": NEW,
                                             "confirm_password": NEW})
    assert done.status_code == 303
    assert client.get("/addresses").status_code == 200         # this browser stays signed in
    assert other.get("/addresses").status_code == 303          # every other one is out
    assert web.client().sign_in("alice@real.test", NEW).status_code == 303
    assert web.client().sign_in("alice@real.test", PASSWORD).status_code == 401


def test_guessing_the_current_password_is_throttled(web, alice):
    client = web.signed_in("alice@real.test")
    for _ in range(5):
        client.post("/account/password", {"current_password": "guess guess!", "new_password": NEW,
                                          "confirm_password": NEW})
    answer = client.post("/account/password", {"current_password": PASSWORD, "new_password": NEW,
                                               "confirm_password": NEW})
    assert answer.status_code == 400 and "Too many attempts" in _body(answer)


def test_turn_on_two_factor_then_sign_in_with_it(web, alice):
    client = web.signed_in("alice@real.test")
    page = _body(client.get("/account/totp"))
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page).group(1)
    assert "otpauth://totp/tmail:alice%40real.test?secret=" + secret in page
    totp = pyotp.TOTP(secret)
    wrong = "000000" if totp.at(web.clock()) != "000000" else "111111"
    assert client.post("/account/totp", {"secret": secret, "code": wrong,
                                         "current_password": PASSWORD}).status_code == 400
    assert client.post("/account/totp", {"secret": secret, "code": totp.at(web.clock()),
                                         "current_password": "wrong password"}).status_code == 400
    answer = client.post("/account/totp", {"secret": secret, "code": totp.at(web.clock()),
                                           "current_password": PASSWORD})
    assert answer.status_code == 200
    codes = re.search(r'<pre id="recovery-codes" class="codes">([^<]+)</pre>', _body(answer)).group(1).split()
    assert len(codes) == 10
    assert web.user("alice@real.test").totp_secret == secret
    # shown once: the account page does not show them again
    assert codes[0] not in _body(client.get("/account"))
    assert "Recovery codes left: 10" in _body(client.get("/account"))
    # the code used to turn it on cannot sign in
    fresh = web.client()
    fresh.sign_in("alice@real.test")
    assert fresh.post("/sign-in/code", {"code": totp.at(web.clock())}).status_code == 401
    assert fresh.post("/sign-in/code", {"code": codes[0]}).status_code == 303


def test_new_recovery_codes_replace_the_old(web, alice):
    client = web.signed_in("alice@real.test")
    secret = pyotp.random_base32()
    with web.accounts() as accounts:
        accounts.set_user(alice.id, totp_secret=secret)
        accounts.set_recovery_codes(alice.id, ["oldcode234"])
    answer = client.post("/account/recovery-codes", {"current_password": PASSWORD})
    codes = re.search(r'<pre id="recovery-codes" class="codes">([^<]+)</pre>', _body(answer)).group(1).split()
    fresh = web.client()
    fresh.sign_in("alice@real.test")
    assert fresh.post("/sign-in/code", {"code": "oldcode234"}).status_code == 401
    assert fresh.post("/sign-in/code", {"code": codes[3]}).status_code == 303


def test_turn_off_two_factor(web, alice):
    with web.accounts() as accounts:
        accounts.set_user(alice.id, totp_secret=pyotp.random_base32())
        accounts.set_recovery_codes(alice.id, ["abcdefghjk"])
    client = web.client()
    client.sign_in("alice@real.test")
    client.post("/sign-in/code", {"code": "abcdefghjk"})
    assert client.post("/account/totp/disable", {"current_password": "wrong one"}).status_code == 400
    assert web.user("alice@real.test").totp_secret is not None
    assert client.post("/account/totp/disable", {"current_password": PASSWORD}).status_code == 303
    assert web.user("alice@real.test").totp_secret is None
    assert web.client().sign_in("alice@real.test").headers["Location"] == "/addresses"


def test_sessions_list_and_revoke(web, alice):
    phone = web.signed_in("alice@real.test")
    laptop = web.client()
    laptop.sign_in("alice@real.test", headers={"User-Agent": "Laptop <b>browser</b>"})
    page = _body(phone.get("/account/sessions"))
    assert "Laptop &lt;b&gt;browser&lt;/b&gt;" in page and "this browser" in page
    hashes = re.findall(r'action="/account/sessions/([0-9a-f]{64})/revoke"', page)
    assert len(hashes) == 2
    with web.accounts() as accounts:
        laptop_hash = [s.id_hash for s in accounts.sessions(alice.id) if s.user_agent.startswith("Laptop")][0]
    assert phone.post(f"/account/sessions/{laptop_hash}/revoke").status_code == 303
    assert laptop.get("/addresses").status_code == 303
    assert phone.get("/addresses").status_code == 200
    third = web.signed_in("alice@real.test")
    phone.post("/account/sessions/revoke-others")
    assert third.get("/addresses").status_code == 303 and phone.get("/addresses").status_code == 200
    with web.accounts() as accounts:
        own = accounts.sessions(alice.id)[0].id_hash
    answer = phone.post(f"/account/sessions/{own}/revoke")
    assert answer.headers["Location"] == "/sign-in" and phone.get("/addresses").status_code == 303


def test_admin_overview(web, alice):
    web.add_user("root@real.test", admin=True, domains=["other.test"])
    web.add_alias(alice, "shop")
    client = web.signed_in("root@real.test")
    users = _body(client.get("/admin/"))
    assert "alice@real.test" in users and "root@real.test" in users and "other.test" in users
    assert "<title>Users — tmail</title>" in users
    domains = _body(client.get("/admin/domains"))
    assert "d.test" in domains and "other.test" in domains
    assert 'href="/admin/"' in _body(client.get("/addresses"))
