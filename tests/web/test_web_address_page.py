"""One address's page: counters, activity (escaped), and every action."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tmail.db.schema import activity, retired


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def _activity(web, alias_id, *rows):
    """Rows a minute apart, the first the newest, after the alias was made."""
    web.clock.advance(hours=1)
    with web.accounts() as accounts:
        accounts.add_activity([(alias_id, web.clock() - timedelta(minutes=n), sender, verdict, reason)
                               for n, (sender, verdict, reason) in enumerate(rows)])


def test_detail_shows_counters_expiry_and_activity(web, alice):
    record = web.add_alias(alice, "shop", forwarded=3, refused=1, max_messages=5,
                           expires_at=web.clock() + timedelta(days=2), last_forwarded_at=web.clock())
    _activity(web, record.id, ("news@shop.test", "forward", "forwarded"),
              ("spam@bad.test", "sender-blocked", "the sender is blocked"))
    text = _body(web.signed_in("alice@real.test").get(f"/addresses/{record.id}"))
    assert "<title>shop@d.test — tmail</title>" in text
    assert "3 of 5" in text and "expires in 1 day" in text and "2 of 5 messages left" in text
    assert "news@shop.test" in text and "forwarded" in text
    assert "spam@bad.test" in text and "refused: <span class=\"reason\">the sender is blocked</span>" in text


def test_mail_text_and_notes_are_escaped(web, alice):
    evil = '<script>alert("x")</script>'
    record = web.add_alias(alice, "shop", note=evil)
    _activity(web, record.id, (f"{evil}@x.test", "unknown", f"reason {evil}"))
    client = web.signed_in("alice@real.test")
    for page in (client.get(f"/addresses/{record.id}"), client.get("/addresses")):
        text = _body(page)
        assert "<script>alert" not in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text
    # a note typed into the form is stored as typed, shown escaped
    client.post(f"/addresses/{record.id}/note", {"note": '"><img src=x onerror=alert(1)>'})
    text = _body(client.get(f"/addresses/{record.id}"))
    assert "<img src=x" not in text and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in text


def test_activity_is_the_owners_and_recent_only(web, alice):
    record = web.add_alias(alice, "shop")
    _activity(web, record.id, ("recent@x.test", "forward", "forwarded"))
    with web.accounts() as accounts:
        accounts.add_activity([(record.id, web.clock() - timedelta(days=31), "old@x.test", "forward", "")])
    text = _body(web.signed_in("alice@real.test").get(f"/addresses/{record.id}"))
    assert "recent@x.test" in text and "old@x.test" not in text


def test_block_a_sender_from_an_activity_row(web, alice):
    record = web.add_alias(alice, "shop")
    _activity(web, record.id, ("Spam@Bad.test", "forward", "forwarded"), ("", "forward", "forwarded"),
              ("not an address", "unknown", ""))
    client = web.signed_in("alice@real.test")
    text = _body(client.get(f"/addresses/{record.id}"))
    assert 'name="sender" value="spam@bad.test"' in text and 'name="sender" value="@bad.test"' in text
    assert text.count("Block sender") == 1          # the null sender and the garbled one get no button
    answer = client.post(f"/addresses/{record.id}/block", {"sender": "spam@bad.test"})
    assert answer.status_code == 303
    assert web.alias(record.id).blocked == ("spam@bad.test",)
    assert "spam@bad.test blocked" in _body(client.get(f"/addresses/{record.id}"))
    client.post(f"/addresses/{record.id}/block", {"sender": "@Other.test"})
    assert web.alias(record.id).blocked == ("@other.test", "spam@bad.test")
    assert client.post(f"/addresses/{record.id}/block", {"sender": "a b"}).status_code == 400
    client.post(f"/addresses/{record.id}/unblock", {"sender": "spam@bad.test"})
    assert web.alias(record.id).blocked == ("@other.test",)


def test_extend(web, alice):
    record = web.add_alias(alice, "shop", expires_at=web.clock() + timedelta(days=1), max_messages=5)
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/extend", {"by": "7d"})
    assert web.alias(record.id).expires_at == web.clock() + timedelta(days=8)
    client.post(f"/addresses/{record.id}/extend", {"until": "2027-03-01", "max_messages": "50"})
    found = web.alias(record.id)
    assert f"{found.expires_at:%Y-%m-%d}" == "2027-03-01" and found.max_messages == 50
    for bad in ({}, {"by": "1d", "until": "2027-01-01"}, {"by": "tomorrow"}, {"until": "2001-01-01"}):
        assert client.post(f"/addresses/{record.id}/extend", bad).status_code == 400
    # past its date: more time counts from now
    web.clock.advance(days=200)
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/extend", {"by": "1d"})
    assert web.alias(record.id).expires_at == web.clock() + timedelta(days=1)


def test_disable_and_enable(web, alice):
    record = web.add_alias(alice, "shop")
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/disable")
    assert web.alias(record.id).enabled is False
    assert "Enable" in _body(client.get(f"/addresses/{record.id}"))
    client.post(f"/addresses/{record.id}/enable")
    assert web.alias(record.id).enabled is True


def test_change_destinations(web, alice):
    record = web.add_alias(alice, "shop")
    client = web.signed_in("alice@real.test")
    client.post(f"/addresses/{record.id}/destinations", {"destination": ["alice@work.test"]})
    assert web.alias(record.id).destinations == ("alice@work.test",)
    assert client.post(f"/addresses/{record.id}/destinations", {}).status_code == 400
    assert client.post(f"/addresses/{record.id}/destinations",
                       {"destination": ["bob@real.test"]}).status_code == 400
    assert web.alias(record.id).destinations == ("alice@work.test",)


def test_delete_explains_and_quarantines(web, alice):
    record = web.add_alias(alice, "shop")
    _activity(web, record.id, ("x@y.test", "forward", "forwarded"))
    client = web.signed_in("alice@real.test")
    page = _body(client.get(f"/addresses/{record.id}/delete"))
    assert "reserved for 180 days" in page and "Delete address" in page
    assert web.alias(record.id) is not None                   # the page alone deletes nothing
    answer = client.post(f"/addresses/{record.id}/delete")
    assert answer.status_code == 303 and answer.headers["Location"] == "/addresses"
    assert web.alias(record.id) is None
    assert client.get(f"/addresses/{record.id}").status_code == 404
    with web.engine.begin() as conn:
        assert conn.execute(sa.select(retired.c.local_key)).scalars().all() == ["shop"]
        assert conn.execute(sa.select(sa.func.count()).select_from(activity)).scalar_one() == 0


def test_a_reused_alias_id_never_shows_earlier_activity(web, alice, bob):
    """SQLite gives the highest id again after a delete: the activity of the
    alias that had it must not show on the new one."""
    old = web.add_alias(bob, "bobs")
    _activity(web, old.id, ("secret-sender@x.test", "forward", "forwarded"))
    with web.store() as store:      # removed outside the web app (the CLI): activity stays
        store.remove_alias(old, web.clock())
    web.clock.advance(seconds=5)
    new = web.add_alias(alice, "alices")
    assert new.id == old.id
    text = _body(web.signed_in("alice@real.test").get(f"/addresses/{new.id}"))
    assert "secret-sender" not in text and "No mail yet" in text


def test_reviving_an_expired_address_counts_against_the_limit(web):
    carol = web.add_user("carol@real.test", max_aliases=1)
    old = web.add_alias(carol, "old", expires_at=web.clock() + timedelta(hours=1))
    web.clock.advance(hours=2)
    web.add_alias(carol, "new")                         # the one active address allowed
    client = web.signed_in("carol@real.test")
    refused = client.post(f"/addresses/{old.id}/extend", {"by": "7d"})
    assert refused.status_code == 400 and "the most you may have" in _body(refused)
    assert web.alias(old.id).expires_at < web.clock()
    near_the_end = client.post(f"/addresses/{old.id}/extend", {"max_messages": "\u00b2"})
    assert near_the_end.status_code == 400 and "whole number" in _body(near_the_end)
