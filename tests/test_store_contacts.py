"""Contacts and Message-ID mappings against real SQLite, PostgreSQL and MariaDB."""
import threading
from datetime import datetime, timezone

import pytest

from tmail.core.resolve import Policy, resolve
from tmail.core.verdict import AliasRecord, Kind
from tmail.db.contacts import Contacts
from tmail.db.store import Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def alias_id(engine):
    with engine.begin() as conn:
        store = Store(conn)
        store.add_domain("d.test", NOW)
        return store.add_alias(AliasRecord(local="shop", domain="d.test", destinations=("me@real.test",),
                                           created_at=NOW, replies=True, display_name="Shöp")).id


def test_a_contact_is_made_once_and_found_by_its_reverse_alias(engine, alias_id):
    with engine.begin() as conn:
        made, new = Contacts(conn).ensure(alias_id, "Alice@Contact.test", "Alice", NOW)
        again, new_again = Contacts(conn).ensure(alias_id, "alice@contact.test", "", NOW)
    assert new and not new_again and again == made
    with engine.connect() as conn:
        contact, record = Contacts(conn).by_reply_local(made.reply_local.upper())
    assert contact == made and record.id == alias_id
    assert (record.replies, record.display_name, record.replies_on) == (True, "Shöp", True)


def test_two_deliveries_making_one_contact_at_once_agree(engine, alias_id):
    barrier, found = threading.Barrier(2), []

    def make():
        barrier.wait()
        with engine.begin() as conn:
            found.append(Contacts(conn).ensure(alias_id, "bob@contact.test", "Bob", NOW)[0].reply_local)
    threads = [threading.Thread(target=make) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 2 and found[0] == found[1]


def test_message_ids_map_both_ways_and_go_with_the_alias(engine, alias_id):
    long_id = "<" + "x" * 400 + "@provider.test>"
    with engine.begin() as conn:
        book = Contacts(conn)
        book.remember_id(alias_id, "<CA1@provider.test>", "<o1@d.test>", NOW)
        book.remember_id(alias_id, long_id, "<o2@d.test>", NOW)
        assert book.ours_for(alias_id, ["<CA1@provider.test>", long_id, "<nope@x>"]) == {
            "<CA1@provider.test>": "<o1@d.test>", long_id: "<o2@d.test>"}
        # a hashed original cannot be given back
        assert book.theirs_for(alias_id, ["<o1@d.test>", "<o2@d.test>"]) == {"<o1@d.test>": "<CA1@provider.test>"}
        book.ensure(alias_id, "alice@contact.test", "", NOW)
        store = Store(conn)
        store.remove_alias(store.require_alias("shop", "d.test"), NOW)
        assert book.ours_for(alias_id, ["<CA1@provider.test>"]) == {}
        assert book.of_alias(alias_id) == []


def test_one_notice_an_hour(engine, alias_id):
    with engine.begin() as conn:
        book = Contacts(conn)
        assert book.claim_notice(alias_id, NOW, 3600)
        assert not book.claim_notice(alias_id, NOW.replace(minute=30), 3600)
        assert book.claim_notice(alias_id, NOW.replace(hour=13, minute=1), 3600)


def test_the_store_answers_the_verdict_for_a_reverse_alias(engine, alias_id):
    """What `tmail resolve` asks: the store itself is the lookup port."""
    policy = Policy("+", frozenset(), "admin@x.test", reply_domain="reply.test")
    with engine.begin() as conn:
        made, _ = Contacts(conn).ensure(alias_id, "alice@contact.test", "", NOW)
        store = Store(conn)
        verdict = resolve(store, policy, made.reply_address("reply.test"), "me@real.test", NOW)
        assert (verdict.kind, verdict.destinations) == (Kind.REPLY, ("alice@contact.test",))
        assert resolve(store, policy, "x" * 24 + "@reply.test", "me@real.test", NOW).kind is Kind.UNKNOWN
