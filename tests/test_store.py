"""The store against real SQLite, PostgreSQL and MariaDB databases."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tmail.core.receipts import Receipt
from tmail.core.verdict import AliasRecord, OnExpiry
from tmail.db import migrate
from tmail.db.store import AliasFilter, Store, StoreError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def record(local="Shop", **kw):
    base = dict(local=local, domain="d.test", destinations=("me@real.test", "two@real.test"),
                created_at=NOW, expires_at=NOW + timedelta(days=7), max_messages=5,
                idle_limit=timedelta(days=30), on_expiry=OnExpiry.DROP, note="für Läden",
                blocked=("@spam.test",))
    base.update(kw)
    return AliasRecord(**base)


@pytest.fixture
def store(engine):
    with engine.begin() as conn:
        Store(conn).add_domain("d.test", NOW)
    return engine


def test_round_trip_keeps_every_field(store):
    with store.begin() as conn:
        added = Store(conn).add_alias(record())
    with store.connect() as conn:
        got = Store(conn).get_alias("shop", "d.test")
        assert Store(conn).get_alias("nope", "d.test") is None
    assert got == added
    assert got.local == "Shop" and got.destinations == ("me@real.test", "two@real.test")
    assert got.expires_at == NOW + timedelta(days=7) and got.idle_limit == timedelta(days=30)
    assert got.on_expiry is OnExpiry.DROP and got.note == "für Läden" and got.blocked == ("@spam.test",)


def test_keys_compare_exactly_even_on_mariadb(store):
    with store.begin() as conn:
        Store(conn).add_alias(record("anna"))
        Store(conn).add_alias(record("änna"))
    with store.connect() as conn:
        assert Store(conn).get_alias("änna", "d.test").local == "änna"
        assert Store(conn).get_alias("anna", "d.test").local == "anna"


def test_duplicate_alias_is_refused(store):
    with store.begin() as conn:
        Store(conn).add_alias(record())
    with pytest.raises(StoreError, match="exists already"):
        with store.begin() as conn:
            Store(conn).add_alias(record("SHOP"))


def test_domain_remove_refuses_while_aliases_exist(store):
    with store.begin() as conn:
        Store(conn).add_alias(record())
    with pytest.raises(StoreError, match="still has 1 alias"):
        with store.begin() as conn:
            Store(conn).remove_domain("d.test", force=False)
    with store.begin() as conn:
        assert Store(conn).remove_domain("d.test", force=True) == 1
    with store.connect() as conn:
        assert Store(conn).domain_names() == []
        assert conn.execute(sa.text("select count(*) from destinations")).scalar() == 0


def test_list_filters(store):
    with store.begin() as conn:
        s = Store(conn)
        s.add_alias(record("live"))
        s.add_alias(record("old", expires_at=NOW - timedelta(days=1)))
        s.add_alias(record("off", enabled=False, destinations=("x@other.test",)))
    with store.connect() as conn:
        s = Store(conn)
        def names(**kw):
            return [r.local for r in s.list_aliases(AliasFilter(**kw), NOW)]
        assert names() == ["live", "off", "old"]
        assert names(state="active") == ["live"]
        assert names(state="expired") == ["old"]
        assert names(state="disabled") == ["off"]
        assert names(destination="x@other.test") == ["off"]


def test_bulk_add_and_fetch(store):
    records = [record(f"bulk{i}", blocked=()) for i in range(1200)]
    with store.begin() as conn:
        Store(conn).add_aliases(records)
    with store.connect() as conn:
        found = Store(conn).aliases_by_key([(f"bulk{i}", "d.test") for i in range(0, 1200, 7)])
    assert len(found) == len(range(0, 1200, 7))
    assert found[("bulk7", "d.test")].destinations == ("me@real.test", "two@real.test")


def test_concurrent_counting_loses_no_update_and_respects_the_limit(store):
    with store.begin() as conn:
        alias_id = Store(conn).add_alias(record(max_messages=5)).id
    results = []

    def deliver():
        with store.begin() as conn:
            results.append(Store(conn).reserve(alias_id))

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 5
    with store.connect() as conn:
        assert Store(conn).get_alias("shop", "d.test").forwarded == 5


def test_receipts_belong_to_the_newest_message_with_a_queue_id(store):
    with store.begin() as conn:
        s = Store(conn)
        assert s.receipt("4ABC", "a@d.test") is None
        s.record_receipts("4ABC", [Receipt("a@d.test", "forward", counted=True, smtputf8=True,
                                           spf="pass", helo="mx.b.test"),
                                   Receipt("b@d.test", "drop")], NOW)
        got = s.receipt("4ABC", "a@d.test")
        assert (got.verdict, got.counted, got.smtputf8, got.spf, got.helo, got.created_at,
                got.forwarded_at) == ("forward", True, True, "pass", "mx.b.test", NOW, None)
        s.mark_forwarded("4ABC", got, "digest-1", NOW)
        assert s.receipt("4ABC", "a@d.test").digest == "digest-1"
        # the queue id comes round again: the old message's receipts go
        s.record_receipts("4ABC", [Receipt("c@d.test", "forward")], NOW)
        assert s.receipt("4ABC", "a@d.test") is None and s.receipt("4ABC", "b@d.test") is None
        # a delivery without an RCPT-time receipt records one of its own
        s.mark_forwarded("5DEF", Receipt("x@d.test", "forward"), "digest-2", NOW)
        assert s.receipt("5DEF", "x@d.test").forwarded_at == NOW
        assert s.forget_receipts(NOW + timedelta(days=1)) == 2


def test_migrations_upgrade_downgrade_and_upgrade_again(engine):
    assert migrate.head() is not None and migrate.current(engine) == migrate.head()
    assert migrate.upgrade(engine) == (migrate.head(), migrate.head())  # idempotent
    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert "aliases" not in sa.inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert {"domains", "aliases", "destinations", "blocked_senders", "receipts"} <= set(
        sa.inspect(engine).get_table_names())


def test_keys_are_folded_as_postfix_folds_and_the_upgrade_refolds_them(store):
    """straße and STRASSE are one recipient to Postfix (it delivered a
    message to one of them only): one alias key. An alias made when keys
    were lower-cased gets the folded key on upgrade."""
    with store.begin() as conn:
        s = Store(conn)
        s.add_alias(record("straße"))
        with pytest.raises(StoreError, match="exists already"):
            s.add_alias(record("STRASSE"))
        assert s.get_alias("strasse", "d.test").local == "straße"
    migrate.downgrade(store, "0004")
    with store.connect() as conn:
        assert conn.exec_driver_sql("SELECT local_key FROM aliases").scalar() == "straße"
    migrate.upgrade(store)
    with store.connect() as conn:
        assert Store(conn).get_alias("strasse", "d.test").local == "straße"


def test_a_downgrade_keeps_the_aliases(store):
    """On SQLite a dropped column rebuilds its table: with foreign keys on,
    rebuilding `domains` deleted every alias (cascade)."""
    with store.begin() as conn:
        Store(conn).add_alias(record("keep"))
    migrate.downgrade(store, "0002")
    with store.connect() as conn:
        assert conn.exec_driver_sql("SELECT local FROM aliases").scalars().all() == ["keep"]
        assert conn.exec_driver_sql("SELECT count(*) FROM destinations").scalar() == 2
    migrate.upgrade(store)
    with store.connect() as conn:
        assert Store(conn).get_alias("keep", "d.test") is not None


def test_a_removed_alias_takes_its_activity_along(store):
    """SQLite reuses ids: a new alias must not show an old one's senders."""
    from tmail.db.accounts import Accounts
    with store.begin() as conn:
        s = Store(conn)
        gone = s.add_alias(record("gone"))
        Accounts(conn).add_activity([(gone.id, NOW, "friend@x.test", "forward", "forwarded")])
        s.remove_alias(gone, NOW)
        assert Accounts(conn).activity(gone.id) == []


def test_a_late_forward_touches_only_the_alias_it_was_for(store):
    """A forward can take minutes: meanwhile its alias can be deleted and
    its id (SQLite reuses the highest) given to someone else's new alias."""
    with store.begin() as conn:
        s = Store(conn)
        gone = s.add_alias(record("gone", max_messages=None))
        s.remove_alias(gone, NOW)
        heir = s.add_alias(record("heir", max_messages=None, created_at=NOW + timedelta(minutes=1)))
    assert heir.id == gone.id or store.dialect.name != "sqlite"
    with store.begin() as conn:
        assert Store(conn).touch_forwarded(gone, NOW + timedelta(minutes=2), count=True) is False
        assert Store(conn).touch_forwarded(heir, NOW + timedelta(minutes=2), count=True) is True
    with store.connect() as conn:
        found = Store(conn).get_alias("heir", "d.test")
    assert found.forwarded == 1 and found.last_forwarded_at == NOW + timedelta(minutes=2)


def test_a_locked_user_is_checked_by_one_transaction_at_a_time(store):
    """Limits (addresses an hour, sign-in failures) are read, then written:
    the user's row lock makes two requests at once take turns."""
    from tmail.db.accounts import Accounts
    with store.begin() as conn:
        user_id = Accounts(conn).add_user("carol@real.test", NOW).id
    events = []

    def second():
        with store.begin() as conn:
            Accounts(conn).lock_user(user_id)
            events.append("second locked")

    with store.begin() as conn:
        Accounts(conn).lock_user(user_id)
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(0.5)                 # it must still be waiting for us
        events.append("first done")
    waiting.join()
    assert events == ["first done", "second locked"]


def test_api_tokens_same_name_at_once_is_a_store_error_and_ids_are_never_reused(store, monkeypatch):
    from tmail.db.accounts import Accounts
    from tmail.db.api_tokens import ApiTokens
    with store.begin() as conn:
        user_id = Accounts(conn).add_user("ann@real.test", NOW).id
        ApiTokens(conn).add(user_id, "phone", ("create",), NOW)
    # the check before the insert passed for both requests: the constraint decides
    monkeypatch.setattr(ApiTokens, "by_name", lambda self, user_id, name: None)
    with store.begin() as conn:
        with pytest.raises(StoreError, match="already"):
            ApiTokens(conn).add(user_id, "phone", ("create",), NOW)
        ApiTokens(conn).add(user_id, "laptop", ("create",), NOW)     # the transaction goes on
    with store.begin() as conn:
        tokens = ApiTokens(conn)
        _, newest = tokens.add(user_id, "tablet", ("read",), NOW)
        tokens.revoke(user_id, newest.id)
        assert tokens.add(user_id, "watch", ("read",), NOW)[1].id > newest.id
        assert [t.name for t in tokens.of_user(user_id)] == ["phone", "laptop", "watch"]
    with store.begin() as conn:
        assert Accounts(conn).set_user(user_id, api_ttl_seconds=100 * 366 * 86400) is None    # past 32 bits
        assert Accounts(conn).user(user_id).api_ttl == timedelta(days=100 * 366)


def test_iter_aliases_reads_in_batches_in_the_order_of_the_list(store):
    from tmail.core.aliases import state
    with store.begin() as conn:
        s = Store(conn)
        s.add_domain("a.test", NOW)
        for i in range(25):
            s.add_alias(record(f"k{i:02d}", domain="a.test" if i % 2 else "d.test", max_messages=None,
                               enabled=i % 5 != 0, expires_at=NOW - timedelta(days=1) if i % 7 == 0 else None))
    with store.connect() as conn:
        s = Store(conn)
        streamed = list(s.iter_aliases(AliasFilter(), NOW, batch=4))
        assert [r.address for r in streamed] == sorted((r.address for r in streamed),
                                                       key=lambda a: (a.split("@")[1], a.split("@")[0]))
        assert len(streamed) == 25 and len({r.id for r in streamed}) == 25
        for wanted in ("active", "expired", "disabled"):
            got = [r.address for r in s.iter_aliases(AliasFilter(state=wanted), NOW, batch=3)]
            assert got == [r.address for r in streamed if state(r, NOW) == wanted] and got
        assert [r.address for r in s.iter_aliases(AliasFilter(domain="a.test"), NOW, batch=2)] == [
            r.address for r in streamed if r.domain == "a.test"]
