"""Accounts.owned_aliases on every database tmail supports: the search is
literal text in any case, the orders put undated aliases last, pages add
up, and another owner's aliases never appear."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from tmail.core import aliases as alias_rules
from tmail.db.accounts import Accounts
from tmail.db.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_owned_aliases(engine):
    with engine.begin() as conn:
        store, accounts = Store(conn), Accounts(conn)
        store.add_domain("d.test", NOW)
        store.add_domain("e.test", NOW)
        alice = accounts.add_user("alice@real.test", NOW)
        bob = accounts.add_user("bob@real.test", NOW)
        notes = ["50% OFF", "under_score", "News", "", "", "", "slash/note", "", ""]
        for n, note in enumerate(notes):
            record = alias_rules.new_alias(f"x{n}", "e.test" if n == 4 else "d.test", ("a@real.test",),
                                           alias_rules.Settings(note=note), NOW + timedelta(minutes=n))
            store.add_alias(dataclasses.replace(
                record, owner_id=alice.id, enabled=n != 5,
                expires_at=NOW + timedelta(days=9 - n) if n % 3 else None,
                last_forwarded_at=NOW - timedelta(days=n) if n % 2 else None))
        store.add_alias(dataclasses.replace(alias_rules.new_alias(
            "news", "d.test", ("b@real.test",), alias_rules.Settings(note="news"), NOW), owner_id=bob.id))

    def locals_(**kw):
        with engine.begin() as conn:
            return [r.local for r in Accounts(conn).owned_aliases(alice.id, NOW, **kw).aliases]

    assert locals_(search="%") == ["x0"] and locals_(search="_") == ["x1"]
    assert locals_(search="news") == ["x2"] and locals_(search="off") == ["x0"]
    assert locals_(search="/") == ["x6"] and locals_(search="X1") == ["x1"]
    assert locals_(domain="e.test") == ["x4"] and locals_(state="disabled") == ["x5"]
    assert locals_(sort="expiry") == ["x8", "x7", "x5", "x4", "x2", "x1", "x6", "x3", "x0"]
    assert locals_(sort="activity") == ["x1", "x3", "x5", "x7", "x8", "x6", "x4", "x2", "x0"]
    for sort in ("created", "expiry", "activity"):
        whole = locals_(sort=sort)
        assert sum((locals_(sort=sort, offset=o, limit=2) for o in range(0, 10, 2)), []) == whole
