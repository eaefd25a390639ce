"""Signing in and out: same answer for unknown accounts, throttling and
lockout, sessions (cookie flags, only a hash stored), next=, TOTP."""
from __future__ import annotations

from urllib.parse import quote

import pyotp
import pytest
import sqlalchemy as sa
from websuite import PASSWORD

from tmail.core.accounts import token_hash
from tmail.db.schema import login_failures, web_sessions
from tmail.web import auth


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def test_sign_in_then_pages_then_sign_out(web, alice):
    client = web.client()
    assert client.get("/addresses").status_code == 303
    answer = client.sign_in("alice@real.test")
    assert answer.status_code == 303 and answer.headers["Location"] == "/addresses"
    assert "Your addresses" in _body(client.get("/addresses"))
    assert web.user("alice@real.test").last_login_at == web.clock()
    assert client.post("/sign-out").status_code == 303
    assert client.get("/addresses").status_code == 303
    with web.engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 0


def test_unknown_account_and_wrong_password_answer_alike(web, alice):
    wrong = web.client().sign_in("alice@real.test", "not the password")
    unknown = web.client().sign_in("nobody@real.test", "not the password")
    no_password = web.add_user("new@real.test", password=None)
    unset = web.client().sign_in(no_password.email, "not the password")
    assert wrong.status_code == unknown.status_code == unset.status_code == 401
    for answer in (wrong, unknown, unset):
        assert auth.WRONG in _body(answer)
    strip = lambda a: _body(a).replace("alice@real.test", "X").replace("nobody@real.test", "X")  # noqa: E731
    assert strip(wrong).split("csrf_token")[0] == strip(unknown).split("csrf_token")[0]


def test_account_locked_after_five_failures_for_fifteen_minutes(web, alice):
    client = web.client()
    for _ in range(5):
        assert client.sign_in("alice@real.test", "wrong password!").status_code == 401
    locked = client.sign_in("alice@real.test")          # the right password, too late
    assert locked.status_code == 429 and auth.TOO_MANY in _body(locked)
    # an unknown account locks the same way: nothing tells them apart
    for _ in range(5):
        web.client().sign_in("ghost@real.test", "wrong password!")
    assert web.client().sign_in("ghost@real.test", "wrong password!").status_code == 429
    web.clock.advance(minutes=16)
    assert client.sign_in("alice@real.test").status_code == 303
    with web.engine.begin() as conn:      # success clears the account's count
        keys = conn.execute(sa.select(login_failures.c.key)).scalars().all()
    assert "account:alice@real.test" not in keys


def test_client_throttled_after_twenty_failures(web, alice):
    client = web.client()
    for n in range(20):
        assert client.sign_in(f"user{n}@real.test", "wrong password!").status_code == 401
    assert client.sign_in("alice@real.test").status_code == 429
    other = web.client()
    answer = other.sign_in("alice@real.test", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert answer.status_code == 303


def _failures(web) -> list[str]:
    with web.engine.begin() as conn:
        return sorted(conn.execute(sa.select(login_failures.c.key)).scalars())


def test_an_attempt_is_counted_before_the_password_is_checked(web, alice, monkeypatch):
    """Requests at once cannot all slip under the limit: each is counted
    (and committed) first; and the database is free while argon2 runs, so
    the mail path never waits for a sign-in."""
    from tmail import passwords
    real_check, seen = passwords.check, []

    def check(stored, password):
        seen.append(_failures(web))                       # another connection reads it...
        with web.engine.begin() as conn:                  # ...and can write meanwhile
            conn.execute(login_failures.insert().values(key="probe", at=web.clock()))
        return real_check(stored, password)
    monkeypatch.setattr(passwords, "check", check)
    assert web.client().sign_in("alice@real.test", "wrong password!").status_code == 401
    assert seen == [["account:alice@real.test", "client:127.0.0.1"]]
    assert web.client().sign_in("alice@real.test").status_code == 303
    # a success takes its own count back (and clears the account's)
    assert _failures(web) == ["client:127.0.0.1", "probe", "probe"]


def test_disabled_account_cannot_sign_in_and_loses_its_session(web, alice):
    client = web.signed_in("alice@real.test")
    with web.accounts() as accounts:
        accounts.set_user(alice.id, enabled=False)
    assert client.get("/addresses").status_code == 303
    assert web.client().sign_in("alice@real.test").status_code == 403
    assert _failures(web) == []             # the right password is no failure


def test_password_rehashed_when_parameters_change(web, alice, monkeypatch):
    from argon2 import PasswordHasher

    from tmail import passwords
    before = web.user("alice@real.test").password_hash
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    web.signed_in("alice@real.test")
    after = web.user("alice@real.test").password_hash
    assert after != before and "m=16" in after


def test_session_cookie_flags_and_only_a_hash_stored(web, alice):
    client = web.client()
    answer = client.sign_in("alice@real.test")
    cookie = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("tmail_sid=")][0]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40
    with web.engine.begin() as conn:
        stored = conn.execute(sa.select(web_sessions.c.id_hash)).scalars().all()
    assert stored == [token_hash(value)] and value not in stored


def test_secure_cookies_when_configured(make_web):
    site = make_web(secure_cookies=True)
    site.add_user("alice@real.test")
    client = site.client()
    client.http = site.app.test_client()
    page = client.http.get("/sign-in", base_url="https://mail.test")
    token = _body(page).split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.http.post("/sign-in", base_url="https://mail.test", headers={"Referer": "https://mail.test/"},
                              data={"email": "alice@real.test", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303
    cookies = answer.headers.getlist("Set-Cookie")
    sid = [c for c in cookies if c.startswith("__Host-tmail_sid=")][0]
    assert "Secure" in sid and "HttpOnly" in sid and "Path=/" in sid
    assert all("Secure" in c for c in cookies)


def test_a_new_sign_in_is_a_new_session(web, alice):
    client = web.signed_in("alice@real.test")
    first = client.http.get_cookie("tmail_sid").value
    client.sign_in("alice@real.test")
    second = client.http.get_cookie("tmail_sid").value
    assert first != second
    with web.accounts() as accounts:
        assert len(accounts.sessions(alice.id)) == 1      # the old one ended
        assert accounts.session(first, web.clock()) is None


def test_session_expires(web, alice):
    client = web.signed_in("alice@real.test")
    web.clock.advance(days=13)
    assert client.get("/addresses").status_code == 200
    web.clock.advance(days=2)
    assert client.get("/addresses").status_code == 303


def test_security_headers(web, alice):
    for answer in (web.client().get("/sign-in"), web.signed_in("alice@real.test").get("/addresses")):
        headers = answer.headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("target", [
    "https://evil.test/", "//evil.test/", "/\\evil.test", "\\\\evil.test", "http:/evil.test",
    "javascript:alert(1)", " //evil.test", "/\tevil", "/\nevil", "evil.test/addresses",
])
def test_next_stays_on_the_site(web, alice, target):
    client = web.client()
    answer = client.post("/sign-in", {"email": "alice@real.test", "password": PASSWORD, "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/addresses"
    page = client.get("/sign-in?next=" + quote(target))
    assert page.status_code == 303 and page.headers["Location"] == "/addresses"


def test_next_to_a_page_of_the_site(web, alice):
    client = web.client()
    first = client.get("/destinations?x=1")
    assert first.status_code == 303 and "next=/destinations?x%3D1" in first.headers["Location"]
    answer = client.post("/sign-in", {"email": "alice@real.test", "password": PASSWORD,
                                      "next": "/destinations?x=1"})
    assert answer.headers["Location"] == "/destinations?x=1"


# -- the second factor ---------------------------------------------------------------
def _with_totp(web, user):
    secret = pyotp.random_base32()
    with web.accounts() as accounts:
        accounts.set_user(user.id, totp_secret=secret)
        accounts.set_recovery_codes(user.id, ["abcdefghjk", "mnpqrstuvw"])
    return pyotp.TOTP(secret)


def test_totp_needed_after_the_password(web, alice):
    totp = _with_totp(web, alice)
    client = web.client()
    answer = client.sign_in("alice@real.test")
    assert answer.headers["Location"] == "/sign-in/code"
    assert client.get("/addresses").status_code == 303        # not signed in yet
    assert client.post("/sign-in/code", {"code": "000000" if totp.at(web.clock()) != "000000" else "111111"}
                       ).status_code == 401
    answer = client.post("/sign-in/code", {"code": totp.at(web.clock())})
    assert answer.status_code == 303 and answer.headers["Location"] == "/addresses"
    assert client.get("/addresses").status_code == 200


def test_totp_code_not_accepted_twice(web, alice):
    totp = _with_totp(web, alice)
    code = totp.at(web.clock())
    first = web.client()
    first.sign_in("alice@real.test")
    assert first.post("/sign-in/code", {"code": code}).status_code == 303
    second = web.client()
    second.sign_in("alice@real.test")
    assert second.post("/sign-in/code", {"code": code}).status_code == 401


def test_totp_drift_of_one_step(web, alice):
    totp = _with_totp(web, alice)
    client = web.client()
    client.sign_in("alice@real.test")
    late = totp.at(web.clock().timestamp() - 30)
    assert client.post("/sign-in/code", {"code": late}).status_code == 303


def test_recovery_code_works_once(web, alice):
    _with_totp(web, alice)
    client = web.client()
    client.sign_in("alice@real.test")
    answer = client.post("/sign-in/code", {"code": "ABCDE-FGHJK"})
    assert answer.status_code == 303
    assert "1 left" in _body(client.get("/addresses"))
    again = web.client()
    again.sign_in("alice@real.test")
    assert again.post("/sign-in/code", {"code": "abcdefghjk"}).status_code == 401


def test_code_guessing_is_throttled(web, alice):
    totp = _with_totp(web, alice)
    client = web.client()
    client.sign_in("alice@real.test")
    wrong = "123456" if totp.at(web.clock()) != "123456" else "654321"
    for _ in range(5):
        assert client.post("/sign-in/code", {"code": wrong}).status_code == 401
    assert client.post("/sign-in/code", {"code": totp.at(web.clock())}).status_code == 429


def test_second_step_expires(web, alice):
    totp = _with_totp(web, alice)
    client = web.client()
    client.sign_in("alice@real.test")
    web.clock.advance(minutes=6)
    answer = client.post("/sign-in/code", {"code": totp.at(web.clock())})
    assert answer.status_code == 303 and answer.headers["Location"] == "/sign-in"
    assert client.get("/addresses").status_code == 303


def test_code_page_without_a_password_step(web, alice):
    _with_totp(web, alice)
    answer = web.client().get("/sign-in/code")
    assert answer.status_code == 303 and answer.headers["Location"] == "/sign-in"
