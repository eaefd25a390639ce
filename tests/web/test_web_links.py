"""Links from mail: set or reset a password, forgotten passwords, sign-up.
Opening a link changes nothing; a used or expired one does nothing."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from websuite import PASSWORD

from tmail.core import accounts as rules
from tmail.web import links, signup

NEW = "a brand new password"


def _path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _issue(web, kind, user_id, subject="", lifetime=None):
    with web.accounts() as accounts:
        return accounts.issue_token(kind, user_id, subject, web.clock(), lifetime or rules.TOKEN_LIFETIMES[kind])


def test_set_password_link(web):
    user = web.add_user("new@real.test", password=None)
    token = _issue(web, rules.SET_PASSWORD, user.id)
    client = web.client()
    page = client.get(f"/password?token={token}")
    assert page.status_code == 200 and "new@real.test" in page.get_data(as_text=True)
    assert web.user("new@real.test").password_hash is None           # opening it changed nothing
    answer = client.post("/password", {"token": token, "new_password": NEW, "confirm_password": NEW})
    assert answer.status_code == 303 and answer.headers["Location"] == "/sign-in"
    assert web.client().sign_in("new@real.test", NEW).status_code == 303


def test_a_used_link_does_nothing(web):
    user = web.add_user("new@real.test", password=None)
    token = _issue(web, rules.SET_PASSWORD, user.id)
    client = web.client()
    client.post("/password", {"token": token, "new_password": NEW, "confirm_password": NEW})
    other = "someone else's password"
    assert client.get(f"/password?token={token}").status_code == 410
    answer = client.post("/password", {"token": token, "new_password": other, "confirm_password": other})
    assert answer.status_code == 410
    assert web.client().sign_in("new@real.test", NEW).status_code == 303


def test_an_expired_link_does_nothing(web, alice):
    token = _issue(web, rules.RESET_PASSWORD, alice.id)
    web.clock.advance(hours=1, seconds=1)
    client = web.client()
    assert client.get(f"/password?token={token}").status_code == 410
    assert client.post("/password", {"token": token, "new_password": NEW, "confirm_password": NEW}
                       ).status_code == 410
    assert web.client().sign_in("alice@real.test", PASSWORD).status_code == 303


def test_wrong_kind_or_unknown_token_does_nothing(web, alice):
    token = _issue(web, rules.VERIFY_DESTINATION, alice.id, "x@y.test")
    client = web.client()
    for value in (token, "made-up", ""):
        assert client.post("/password", {"token": value, "new_password": NEW, "confirm_password": NEW}
                           ).status_code == 410


def test_password_rules_on_the_link_page(web, alice):
    token = _issue(web, rules.RESET_PASSWORD, alice.id)
    client = web.client()
    short = client.post("/password", {"token": token, "new_password": "short", "confirm_password": "short"})
    assert short.status_code == 400 and "at least 10" in short.get_data(as_text=True)
    differ = client.post("/password", {"token": token, "new_password": NEW, "confirm_password": NEW + "x"})
    assert differ.status_code == 400 and "differ" in differ.get_data(as_text=True)
    # a refused try does not use the link
    assert client.get(f"/password?token={token}").status_code == 200


def test_a_new_password_ends_every_session(web, alice):
    signed = web.signed_in("alice@real.test")
    token = _issue(web, rules.RESET_PASSWORD, alice.id)
    web.client().post("/password", {"token": token, "new_password": NEW, "confirm_password": NEW})
    assert signed.get("/addresses").status_code == 303


def test_forgot_password_is_off_by_default(web, alice):
    assert web.client().get("/password/forgot").status_code == 404
    assert web.client().post("/password/forgot", {"email": "alice@real.test"}).status_code == 404
    assert "Forgot" not in web.client().get("/sign-in").get_data(as_text=True)


def test_forgot_password_mails_a_link(make_web):
    site = make_web(password_reset=True)
    site.add_user("alice@real.test")
    client = site.client()
    assert "Forgot your password?" in client.get("/sign-in").get_data(as_text=True)
    known = client.post("/password/forgot", {"email": "alice@real.test"})
    unknown = client.post("/password/forgot", {"email": "nobody@real.test"})
    assert known.status_code == unknown.status_code == 200
    assert links.SENT in known.get_data(as_text=True) and links.SENT in unknown.get_data(as_text=True)
    assert [r for r, _ in site.outbox] == [["alice@real.test"]]
    link = site.outbox.last_link()
    assert link.startswith("https://mail.test/password?token=")
    answer = client.post("/password", {"token": link.split("token=")[1], "new_password": NEW,
                                       "confirm_password": NEW})
    assert answer.status_code == 303
    assert site.client().sign_in("alice@real.test", NEW).status_code == 303


def test_forgot_password_is_throttled(make_web):
    site = make_web(password_reset=True)
    site.add_user("alice@real.test")
    for _ in range(3):
        assert site.client().post("/password/forgot", {"email": "alice@real.test"}).status_code == 200
    assert site.client().post("/password/forgot", {"email": "alice@real.test"}).status_code == 429
    assert len(site.outbox) == 3


def test_forgot_password_not_sent_to_an_unverified_account_address(make_web):
    site = make_web(password_reset=True)
    user = site.add_user("alice@real.test")
    with site.engine.begin() as conn:
        from tmail.db.schema import user_destinations
        conn.execute(user_destinations.update().where(user_destinations.c.user_id == user.id)
                     .values(verified_at=None))
    site.client().post("/password/forgot", {"email": "alice@real.test"})
    assert site.outbox == []


# -- sign-up ----------------------------------------------------------------------------
def test_signup_closed_by_default(web):
    assert web.client().get("/signup").status_code == 404
    assert web.client().post("/signup", {"email": "x@real.test"}).status_code == 404
    assert web.client().get("/signup/confirm?token=x").status_code == 404


def test_open_signup_verifies_the_address_first(make_web):
    site = make_web(signup="open", signup_domains="real.test")
    client = site.client()
    assert "Create an account" in client.get("/sign-in").get_data(as_text=True)
    refused = client.post("/signup", {"email": "me@elsewhere.test"})
    assert refused.status_code == 400 and site.outbox == []
    answer = client.post("/signup", {"email": "me@real.test"})
    assert answer.status_code == 200 and signup.SENT in answer.get_data(as_text=True)
    assert site.user("me@real.test") is None          # nothing until the link is followed
    link = site.outbox.last_link("me@real.test")
    visitor = site.client()
    page = visitor.get(_path(link))
    assert page.status_code == 200 and "me@real.test" in page.get_data(as_text=True)
    token = link.split("token=")[1]
    done = visitor.post("/signup/confirm", {"token": token, "new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 303 and done.headers["Location"] == "/addresses"
    assert visitor.get("/addresses").status_code == 200           # signed in
    with site.accounts() as accounts:
        user = accounts.user_by_email("me@real.test")
        assert [(d.address, d.verified) for d in accounts.destinations(user.id)] == [("me@real.test", True)]
    # the link is used
    assert site.client().post("/signup/confirm", {"token": token, "new_password": NEW,
                                                  "confirm_password": NEW}).status_code == 410


def test_signup_never_says_whether_an_account_exists(make_web):
    site = make_web(signup="open", signup_domains="real.test")
    site.add_user("alice@real.test")
    existing = site.client().post("/signup", {"email": "alice@real.test"})
    new = site.client().post("/signup", {"email": "carol@real.test"})
    assert existing.status_code == new.status_code == 200
    assert [r for r, _ in site.outbox] == [["carol@real.test"]]


def test_signup_refuses_tmail_own_domains(make_web):
    site = make_web(signup="open", signup_domains="d.test srs.fwd.test")
    assert site.client().post("/signup", {"email": "me@d.test"}).status_code == 400
    assert site.client().post("/signup", {"email": "me@srs.fwd.test"}).status_code == 400
    assert site.outbox == []


def test_signup_link_expires(make_web):
    site = make_web(signup="open", signup_domains="real.test")
    site.client().post("/signup", {"email": "me@real.test"})
    token = site.outbox.last_link().split("token=")[1]
    site.clock.advance(hours=1, seconds=1)
    answer = site.client().post("/signup/confirm", {"token": token, "new_password": NEW, "confirm_password": NEW})
    assert answer.status_code == 410 and site.user("me@real.test") is None


def test_signup_mails_are_throttled(make_web):
    site = make_web(signup="open", signup_domains="real.test")
    client = site.client()
    for n in range(10):
        assert client.post("/signup", {"email": f"me{n}@real.test"}).status_code == 200
    assert client.post("/signup", {"email": "another@real.test"}).status_code == 429
    assert len(site.outbox) == 10


def test_invite_signup(make_web):
    site = make_web(signup="invite")
    assert site.client().get("/signup").status_code == 410                 # no invitation
    assert "Create an account" not in site.client().get("/sign-in").get_data(as_text=True)
    invite = _issue(site, rules.INVITE, None)
    client = site.client()
    assert client.get(f"/signup?token={invite}").status_code == 200
    assert client.post("/signup", {"token": invite, "email": "me@anywhere.test"}).status_code == 200
    assert client.post("/signup", {"token": invite, "email": "typo@anywhere.test"}).status_code == 200
    link = site.outbox.last_link("typo@anywhere.test")
    first = site.outbox.last_link("me@anywhere.test")
    parts = dict(p.split("=", 1) for p in urlsplit(first).query.split("&"))
    assert parts["invite"] == invite
    done = site.client().post("/signup/confirm", {**parts, "new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 303 and site.user("me@anywhere.test") is not None
    # one invitation, one account: the other link is dead now
    other = dict(p.split("=", 1) for p in urlsplit(link).query.split("&"))
    assert site.client().post("/signup/confirm", {**other, "new_password": NEW, "confirm_password": NEW}
                              ).status_code == 410
    assert site.user("typo@anywhere.test") is None


def test_invite_link_expires(make_web):
    site = make_web(signup="invite")
    invite = _issue(site, rules.INVITE, None, lifetime=timedelta(days=7))
    site.clock.advance(days=7, seconds=1)
    assert site.client().get(f"/signup?token={invite}").status_code == 410
    assert site.client().post("/signup", {"token": invite, "email": "me@x.test"}).status_code == 410
    assert site.outbox == []


def test_signup_refuses_letters_that_fold_to_others(make_web):
    """boß@ case-folds to boss@: its owner must not get the account name of
    the mailbox boss@ (nor ſ that of s)."""
    site = make_web(signup="open", signup_domains="real.test")
    for address in ("bo\u00df@real.test", "bo\u017f\u017f@real.test"):
        answer = site.client().post("/signup", {"email": address})
        assert answer.status_code == 400 and "fold" in answer.get_data(as_text=True)
    assert site.outbox == []


def test_reset_link_goes_to_the_address_as_it_was_verified(make_web):
    site = make_web(password_reset=True)
    site.add_user("Boss@real.test")          # the account's name is case-folded; the mailbox is not
    site.client().post("/password/forgot", {"email": "BOSS@real.test"})
    assert [r for r, _ in site.outbox] == [["Boss@real.test"]]


def test_a_new_password_kills_every_earlier_link(make_web):
    site = make_web(password_reset=True)
    site.add_user("alice@real.test")
    for _ in range(2):
        site.client().post("/password/forgot", {"email": "alice@real.test"})
    first, second = (link.split("token=")[1] for link in site.outbox.links())
    assert site.client().post("/password", {"token": second, "new_password": NEW,
                                            "confirm_password": NEW}).status_code == 303
    # the first link, still in the mailbox (or in a thief's hands), undoes nothing
    other = "yet another password"
    assert site.client().post("/password", {"token": first, "new_password": other,
                                            "confirm_password": other}).status_code == 410
    assert site.client().sign_in("alice@real.test", NEW).status_code == 303
