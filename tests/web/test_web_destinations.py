"""Destinations: added unverified, a link valid an hour and once, resend at
most once a minute, the owner told, never at tmail's own domains."""
from __future__ import annotations

from urllib.parse import urlsplit


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def _destinations(web, email):
    with web.accounts() as accounts:
        user = accounts.user_by_email(email)
        return {d.address: d for d in accounts.destinations(user.id)}


def _token(link: str) -> str:
    return urlsplit(link).query.split("token=")[1]


def test_add_then_verify(web, alice):
    client = web.signed_in("alice@real.test")
    answer = client.post("/destinations", {"address": "Me@Home.test"})
    assert answer.status_code == 303
    found = _destinations(web, "alice@real.test")["Me@home.test"]
    assert not found.verified and found.last_sent_at == web.clock()
    recipients, message = web.outbox[-1]
    assert recipients == ["Me@home.test"] and b"alice@real.test" in message
    link = web.outbox.last_link()
    assert link.startswith("https://mail.test/destinations/verify?token=")
    assert "waiting for confirmation" in _body(client.get("/destinations"))
    # opening the link (a mail scanner does) confirms nothing
    stranger = web.client()
    page = stranger.get(f"/destinations/verify?token={_token(link)}")
    assert page.status_code == 200 and "Me@home.test" in _body(page)
    assert not _destinations(web, "alice@real.test")["Me@home.test"].verified
    done = stranger.post("/destinations/verify", {"token": _token(link)})
    assert done.status_code == 200 and "is verified" in _body(done)
    assert _destinations(web, "alice@real.test")["Me@home.test"].verified
    # the account's own address is told
    recipients, message = web.outbox[-1]
    assert recipients == ["alice@real.test"] and b"Me@home.test is now a verified destination" in message
    # the link is used: nothing happens the second time
    assert stranger.post("/destinations/verify", {"token": _token(link)}).status_code == 410
    assert stranger.get(f"/destinations/verify?token={_token(link)}").status_code == 410


def test_an_expired_link_does_nothing(web, alice):
    client = web.signed_in("alice@real.test")
    client.post("/destinations", {"address": "me@home.test"})
    web.clock.advance(hours=1, seconds=1)
    answer = web.client().post("/destinations/verify", {"token": _token(web.outbox.last_link())})
    assert answer.status_code == 410
    assert not _destinations(web, "alice@real.test")["me@home.test"].verified


def test_resend_at_most_once_a_minute(web, alice):
    client = web.signed_in("alice@real.test")
    client.post("/destinations", {"address": "me@home.test"})
    destination = _destinations(web, "alice@real.test")["me@home.test"]
    client.post(f"/destinations/{destination.id}/resend")
    assert len(web.outbox) == 1
    assert "less than a minute ago" in _body(client.get("/destinations"))
    web.clock.advance(seconds=61)
    client.post(f"/destinations/{destination.id}/resend")
    assert len(web.outbox) == 2
    # both links work until one is used
    first, second = web.outbox.links()
    assert web.client().post("/destinations/verify", {"token": _token(first)}).status_code == 200


def test_a_failed_mail_is_said(web, alice):
    web.outbox.fail = True
    client = web.signed_in("alice@real.test")
    client.post("/destinations", {"address": "me@home.test"})
    assert "could not be sent just now" in _body(client.get("/destinations"))


def test_never_at_tmail_own_domains(web, alice):
    client = web.signed_in("alice@real.test")
    for address in ("x@d.test", "x@other.test", "x@srs.fwd.test", "not an address", "x@y@z"):
        answer = client.post("/destinations", {"address": address})
        assert answer.status_code == 400, address
    assert web.outbox == []
    assert client.post("/destinations", {"address": "alice@work.test"}).status_code == 400   # there already


def test_remove(web, alice):
    client = web.signed_in("alice@real.test")
    work = _destinations(web, "alice@real.test")["alice@work.test"]
    record = web.add_alias(alice, "shop", to="alice@work.test")
    refused = client.post(f"/destinations/{work.id}/remove")
    assert refused.status_code == 400 and "1 of your addresses forward to alice@work.test" in _body(refused)
    client.post(f"/addresses/{record.id}/destinations", {"destination": "alice@real.test"})
    assert client.post(f"/destinations/{work.id}/remove").status_code == 303
    assert "alice@work.test" not in _destinations(web, "alice@real.test")
    own = _destinations(web, "alice@real.test")["alice@real.test"]
    assert client.post(f"/destinations/{own.id}/remove").status_code == 400


def test_verifying_makes_the_alias_forward(web, alice):
    client = web.signed_in("alice@real.test")
    client.post("/destinations", {"address": "me@home.test"})
    record = web.add_alias(alice, "shop", to="me@home.test")
    assert web.alias(record.id).forwardable == ()
    assert "waiting for a verified destination" in _body(client.get(f"/addresses/{record.id}"))
    web.client().post("/destinations/verify", {"token": _token(web.outbox.last_link())})
    assert web.alias(record.id).forwardable == ("me@home.test",)


def test_links_to_one_address_are_limited_across_accounts_and_spellings(web, alice, bob):
    """Adding a stranger's address as a destination mails them: three links
    an hour to one mailbox, however its local part is cased, from everyone."""
    client = web.signed_in("alice@real.test")
    for spelling in ("victim@x.test", "Victim@x.test", "VICTIM@x.test", "vIctim@x.test"):
        client.post("/destinations", {"address": spelling})
    assert len(web.outbox) == 3
    assert "Too many links" in _body(client.get("/destinations"))
    web.signed_in("bob@real.test").post("/destinations", {"address": "victim@X.TEST"})
    assert len(web.outbox) == 3
    web.clock.advance(minutes=61)           # added, but unsent: "Resend" works an hour later
    waiting = _destinations(web, "bob@real.test")["victim@x.test"]
    web.signed_in("bob@real.test").post(f"/destinations/{waiting.id}/resend")
    assert len(web.outbox) == 4


def test_links_from_one_account_are_limited(web, alice):
    client = web.signed_in("alice@real.test")
    for n in range(11):
        client.post("/destinations", {"address": f"box{n}@x.test"})
    assert len(web.outbox) == 10
    assert len(_destinations(web, "alice@real.test")) == 2 + 11    # the 11th added, its link later


def test_the_own_address_stays_whatever_its_case(web):
    web.add_user("Carol@real.test")
    client = web.signed_in("carol@real.test")
    own = _destinations(web, "carol@real.test")["Carol@real.test"]
    answer = client.post(f"/destinations/{own.id}/remove")
    assert answer.status_code == 400 and "own address" in _body(answer)
    assert "Carol@real.test" in _destinations(web, "carol@real.test")
