"""The Replies section of an address's page: settings, contacts (block,
unblock, remove), writing from the address; authorisation, CSRF, escaping."""
from __future__ import annotations

import dataclasses

import pytest
import websuite
from helpers import write_config

from tmail.db.contacts import Contacts

REPLY_DOMAIN = "reply.test"
NEW_URLS = ("replies", "contacts/block", "contacts/unblock", "contacts/remove", "contacts/write")


@pytest.fixture
def web(tmp_path, monkeypatch):
    """The site with [replies] domain set (alice and bob are made on it)."""
    monkeypatch.setattr(websuite, "write_config", lambda path, url, **sections: write_config(
        path, url, replies={"domain": REPLY_DOMAIN}, **sections))
    site = websuite.Web(tmp_path)
    assert site.cfg["replies"]["domain"] == REPLY_DOMAIN
    yield site
    site.engine.dispose()


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def _contact(web, alias_id, address, name="", forwarded=0, replied=0):
    with web.engine.begin() as conn:
        book = Contacts(conn)
        contact, _ = book.ensure(alias_id, address, name, web.clock())
        for _ in range(forwarded):
            book.note_forward(contact.id, web.clock())
        for _ in range(replied):
            book.note_reply(contact.id, web.clock())
        return book.get_by_id(contact.id)


def _contacts(web, alias_id):
    with web.engine.begin() as conn:
        return Contacts(conn).of_alias(alias_id)


def _set_domain_replies(web, on: bool):
    with web.store() as store:
        store.set_domain_settings("d.test", dataclasses.replace(store.domain_settings("d.test"), replies=on))


def test_no_section_and_no_urls_without_a_reply_domain(make_web):
    site = make_web()
    assert site.cfg["replies"]["domain"] == ""
    carol = site.add_user("carol@real.test")
    record = site.add_alias(carol, "shop", replies=True)
    client = site.signed_in("carol@real.test")
    text = _body(client.get(f"/addresses/{record.id}"))
    assert 'id="replies"' not in text and "Write from this address" not in text
    for url in NEW_URLS:
        answer = client.post(f"/addresses/{record.id}/{url}", {"replies": "on", "address": "x@outside.test"})
        assert answer.status_code == 404, url
    assert site.alias(record.id).replies is True


def test_replies_on_off_or_as_the_domain_says(web, alice):
    record = web.add_alias(alice, "shop")
    client = web.signed_in("alice@real.test")
    text = _body(client.get(f"/addresses/{record.id}"))
    assert 'id="replies"' in text and "Replies are <strong>off</strong>" in text
    assert 'value="domain" checked' in text and "As the domain says (now off)" in text
    answer = client.post(f"/addresses/{record.id}/replies", {"replies": "on"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/addresses/{record.id}#replies")
    assert web.alias(record.id).replies is True
    assert "Replies are <strong>on</strong>" in _body(client.get(f"/addresses/{record.id}"))
    client.post(f"/addresses/{record.id}/replies", {"replies": "off"})
    assert web.alias(record.id).replies is False
    client.post(f"/addresses/{record.id}/replies", {"replies": "domain"})
    assert web.alias(record.id).replies is None and not web.alias(record.id).replies_on
    _set_domain_replies(web, True)
    assert web.alias(record.id).replies_on
    text = _body(client.get(f"/addresses/{record.id}"))
    assert "Replies are <strong>on</strong>" in text and "as the domain d.test says" in text
    for bad in ({}, {"replies": "maybe"}, {"replies": "true"}):
        assert client.post(f"/addresses/{record.id}/replies", bad).status_code == 400
    assert web.alias(record.id).replies is None


def test_display_name_and_scrub(web, alice):
    record = web.add_alias(alice, "shop")
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/replies",
                {"replies": "on", "display_name": "  Shop Person ", "reply_scrub": "on"})
    found = web.alias(record.id)
    assert (found.display_name, found.reply_scrub) == ("Shop Person", True)
    text = _body(client.get(f"/addresses/{record.id}"))
    assert 'value="Shop Person"' in text and 'name="reply_scrub" value="on" checked' in text
    for bad in ("Shop\x07Person", "Shop\r\nBcc: x@y.test", "x" * 65):
        refused = client.post(f"/addresses/{record.id}/replies", {"replies": "on", "display_name": bad})
        assert refused.status_code == 400, bad
    assert "control character" in _body(client.post(f"/addresses/{record.id}/replies",
                                                    {"replies": "on", "display_name": "a\x00b"}))
    assert web.alias(record.id).display_name == "Shop Person"
    client.post(f"/addresses/{record.id}/replies", {"replies": "on", "display_name": "x" * 64})
    assert web.alias(record.id).display_name == "x" * 64
    client.post(f"/addresses/{record.id}/replies", {"replies": "on", "display_name": ""})
    found = web.alias(record.id)
    assert (found.display_name, found.reply_scrub) == ("", False)


def test_contacts_are_listed_with_their_reply_address(web, alice):
    record = web.add_alias(alice, "shop", replies=True)
    first = _contact(web, record.id, "news@shop.test", "Shop News", forwarded=3, replied=1)
    second = _contact(web, record.id, "friend@outside.test")
    text = _body(web.signed_in("alice@real.test").get(f"/addresses/{record.id}"))
    assert "news@shop.test" in text and "Shop News" in text and "friend@outside.test" in text
    assert "3 from them · 1 reply to them" in text and "0 from them · 0 replies to them" in text
    for contact in (first, second):
        reply = f"{contact.reply_local}@{REPLY_DOMAIN}"
        assert f'<code id="contact-{contact.id}-reply">{reply}</code>' in text
        assert f'data-copy="contact-{contact.id}-reply"' in text


def test_no_contacts_yet(web, alice):
    record = web.add_alias(alice, "shop")
    text = _body(web.signed_in("alice@real.test").get(f"/addresses/{record.id}"))
    assert "No contacts yet." in text and "Turn replies on to write" in text


def test_block_and_unblock_a_contact(web, alice):
    record = web.add_alias(alice, "shop", replies=True)
    contact = _contact(web, record.id, "Spam@Bad.test", forwarded=1)
    client = web.signed_in("alice@real.test")
    answer = client.post(f"/addresses/{record.id}/contacts/block", {"contact": str(contact.id)})
    assert answer.status_code == 303
    assert web.alias(record.id).blocked == ("spam@bad.test",)       # as the activity row's button blocks it
    text = _body(client.get(f"/addresses/{record.id}"))
    assert '<span class="blocked">blocked</span>' in text and "Unblock<span" in text
    assert client.post(f"/addresses/{record.id}/contacts/block", {"contact": str(contact.id)}).status_code == 303
    assert web.alias(record.id).blocked == ("spam@bad.test",)
    answer = client.post(f"/addresses/{record.id}/contacts/unblock", {"contact": str(contact.id)})
    assert answer.status_code == 303 and web.alias(record.id).blocked == ()
    assert client.post(f"/addresses/{record.id}/contacts/unblock",
                       {"contact": str(contact.id)}).status_code == 400
    # a blocked domain is shown, and the address itself can still be blocked
    client.post(f"/addresses/{record.id}/block", {"sender": "@bad.test"})
    text = _body(client.get(f"/addresses/{record.id}"))
    assert "domain blocked" in text and "Block<span" in text
    assert [c.id for c in _contacts(web, record.id)] == [contact.id]


def test_remove_a_contact(web, alice):
    record = web.add_alias(alice, "shop", replies=True)
    gone = _contact(web, record.id, "old@outside.test")
    kept = _contact(web, record.id, "new@outside.test")
    client = web.signed_in("alice@real.test")
    text = _body(client.get(f"/addresses/{record.id}"))
    assert "<summary>Remove" in text and "stops working at once" in text
    answer = client.post(f"/addresses/{record.id}/contacts/remove", {"contact": str(gone.id)})
    assert answer.status_code == 303
    assert [c.id for c in _contacts(web, record.id)] == [kept.id]
    assert f"{gone.reply_local}@{REPLY_DOMAIN} no longer works" in _body(client.get(f"/addresses/{record.id}"))
    text = _body(client.get(f"/addresses/{record.id}"))       # the message was shown once
    assert gone.reply_local not in text and "old@outside.test" not in text and kept.reply_local in text
    assert client.post(f"/addresses/{record.id}/contacts/remove", {"contact": str(gone.id)}).status_code == 404


def test_write_from_the_address(web, alice):
    record = web.add_alias(alice, "shop", replies=True)
    client = web.signed_in("alice@real.test")
    answer = client.post(f"/addresses/{record.id}/contacts/write", {"address": " Friend@Outside.TEST "})
    assert answer.status_code == 303
    [contact] = _contacts(web, record.id)
    assert contact.address == "Friend@outside.test" and contact.name == ""
    assert answer.headers["Location"].endswith(f"/addresses/{record.id}?contact={contact.id}#write-from")
    text = _body(client.get(answer.headers["Location"]))
    reply = f"{contact.reply_local}@{REPLY_DOMAIN}"
    assert f'<code id="write-reply">{reply}</code>' in text and 'data-copy="write-reply"' in text
    assert "Friend@outside.test receives it from shop@d.test" in text
    # the same person again: the same contact
    answer = client.post(f"/addresses/{record.id}/contacts/write", {"address": "friend@outside.test"})
    assert answer.status_code == 303 and [c.id for c in _contacts(web, record.id)] == [contact.id]
    assert "is a contact already" in _body(client.get(answer.headers["Location"]))


@pytest.mark.parametrize("address, says", [
    ("not an address", "Cannot write to that address"),
    ("a b@outside.test", "Cannot write to that address"),
    ("", "Give the address"),
    ("x@outside.test\r\nBcc: y@z.test", "control character"),
    (f"someone@{REPLY_DOMAIN}", "one of this server&#39;s own domains"),
    ("someone@D.test", "one of this server&#39;s own domains"),
    ("someone@other.test", "one of this server&#39;s own domains"),
    ("someone@srs.fwd.test", "one of this server&#39;s own domains"),
])
def test_write_from_refuses_bad_and_own_addresses(web, alice, address, says):
    record = web.add_alias(alice, "shop", replies=True)
    answer = web.signed_in("alice@real.test").post(f"/addresses/{record.id}/contacts/write", {"address": address})
    assert answer.status_code == 400 and says in _body(answer)
    assert _contacts(web, record.id) == []


def test_write_from_needs_replies_on(web, alice):
    record = web.add_alias(alice, "shop", replies=False)
    _set_domain_replies(web, True)            # the alias says off: the domain does not matter
    client = web.signed_in("alice@real.test")
    answer = client.post(f"/addresses/{record.id}/contacts/write", {"address": "friend@outside.test"})
    assert answer.status_code == 400 and "Replies are off" in _body(answer)
    assert _contacts(web, record.id) == []
    # as the domain says, and the domain says on
    client.post(f"/addresses/{record.id}/replies", {"replies": "domain"})
    answer = client.post(f"/addresses/{record.id}/contacts/write", {"address": "friend@outside.test"})
    assert answer.status_code == 303 and len(_contacts(web, record.id)) == 1


def test_another_users_alias_or_contact_is_not_found(web, alice, bob):
    mine = web.add_alias(alice, "alices", replies=True)
    theirs = web.add_alias(bob, "bobs", replies=True)
    my_contact = _contact(web, mine.id, "mine@outside.test")
    their_contact = _contact(web, theirs.id, "theirs@outside.test")
    client = web.signed_in("alice@real.test")
    form = {"replies": "off", "display_name": "x", "address": "new@outside.test"}
    for url in NEW_URLS:
        for alias_id, contact_id in ((theirs.id, their_contact.id), (theirs.id, my_contact.id),
                                     (mine.id, their_contact.id), (999, my_contact.id)):
            if url in ("replies", "contacts/write") and alias_id == mine.id:
                continue                        # no contact in these: alice's own alias, rightly
            answer = client.post(f"/addresses/{alias_id}/{url}", dict(form, contact=str(contact_id)))
            assert answer.status_code == 404, (url, alias_id, contact_id)
            assert "theirs@outside.test" not in _body(answer)
    for url in ("contacts/block", "contacts/unblock", "contacts/remove"):
        for odd in ("", "abc", "-1", "1e3", " ", str(10**22)):
            answer = client.post(f"/addresses/{mine.id}/{url}", dict(form, contact=odd))
            assert answer.status_code == 404, (url, odd)
    assert web.alias(theirs.id).replies is True and web.alias(theirs.id).blocked == ()
    assert [c.id for c in _contacts(web, theirs.id)] == [their_contact.id]
    assert web.alias(mine.id).blocked == ()
    # the page never shows another alias's contact, whatever ?contact= says
    text = _body(client.get(f"/addresses/{mine.id}?contact={their_contact.id}"))
    assert their_contact.reply_local not in text and "theirs@outside.test" not in text
    assert client.get(f"/addresses/{theirs.id}").status_code == 404


def test_every_new_post_needs_a_csrf_token(web, alice):
    record = web.add_alias(alice, "shop", replies=True)
    contact = _contact(web, record.id, "friend@outside.test")
    client = web.signed_in("alice@real.test")
    form = {"replies": "off", "display_name": "x", "contact": str(contact.id), "address": "new@outside.test"}
    for url in NEW_URLS:
        for token in (None, "not-a-token"):
            data = dict(form, **({"csrf_token": token} if token else {}))
            answer = client.post(f"/addresses/{record.id}/{url}", data, csrf=False)
            assert answer.status_code == 400 and "Form expired" in _body(answer), url
    found = web.alias(record.id)
    assert found.replies is True and found.display_name == "" and found.blocked == ()
    assert [c.id for c in _contacts(web, record.id)] == [contact.id]


def test_hostile_names_and_addresses_are_escaped(web, alice):
    evil = '<script>alert("x")</script>'
    record = web.add_alias(alice, "shop", replies=True)
    _contact(web, record.id, '"<script>alert(1)</script>"@evil.test', evil)
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/replies", {"replies": "on", "display_name": '"><img src=x onerror=alert(1)>'})
    assert web.alias(record.id).display_name == '"><img src=x onerror=alert(1)>'
    text = _body(client.get(f"/addresses/{record.id}"))
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;@evil.test" in text
    assert 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in text
    # an address typed into the write form comes back escaped in the error too
    answer = client.post(f"/addresses/{record.id}/contacts/write", {"address": "<b>x</b>@d.test"})
    assert answer.status_code == 400 and "<b>x</b>" not in _body(answer)
