"""The Addresses page and new addresses: search, filter, sort, pages; random
in one click; a chosen name with limits; the account's limits."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from tmail.core.aliases import Settings, new_alias
from tmail.core.glance import glance
from tmail.core.lifecycle import DomainSettings
from tmail.core.verdict import OnExpiry


def _body(answer) -> str:
    return answer.get_data(as_text=True)


def _listed(answer) -> list[str]:
    return re.findall(r'class="address" href="/addresses/\d+">([^<]+)</a>', _body(answer))


def test_random_address_in_one_click(web, alice):
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/random", {"domain": "d.test"})
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"])
    text = _body(page)
    address = re.search(r'<span id="address">([^<]+)</span>', text).group(1)
    assert address.endswith("@d.test") and len(address.split("@")[0]) == 12
    assert 'data-copy="address"' in text and "Your new address: " + address in text
    record = web.alias(int(answer.headers["Location"].rsplit("/", 1)[1]))
    assert record.owner_id == alice.id and record.destinations == ("alice@real.test",)


def test_random_address_takes_the_domain_defaults(web, alice):
    with web.store() as store:
        store.set_domain_settings("d.test", DomainSettings(ttl=timedelta(days=7), idle=timedelta(days=30),
                                                           on_expiry=OnExpiry.DROP, shared=True))
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/random", {"domain": "d.test"})
    record = web.alias(int(answer.headers["Location"].rsplit("/", 1)[1]))
    assert record.expires_at == web.clock() + timedelta(days=7)
    assert record.idle_limit == timedelta(days=30) and record.on_expiry == OnExpiry.DROP
    # ... and the form shows them, written out, when there is one domain
    form = _body(client.get("/addresses/new"))
    assert 'id="ttl" name="ttl" type="text" value="7d"' in form
    assert 'value="drop" selected' in form


def test_chosen_name_with_limits(web, alice):
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/new", {
        "kind": "chosen", "local": "Shop.News", "domain": "d.test",
        "destination": ["alice@real.test", "alice@work.test"], "ttl": "2w", "max_messages": "5",
        "idle": "30d", "on_expiry": "drop", "note": "the shop"})
    assert answer.status_code == 303, _body(answer)
    record = web.alias(int(answer.headers["Location"].rsplit("/", 1)[1]))
    assert record.address == "Shop.News@d.test"
    assert record.destinations == ("alice@real.test", "alice@work.test")
    assert record.expires_at == web.clock() + timedelta(weeks=2) and record.max_messages == 5
    assert record.idle_limit == timedelta(days=30) and record.on_expiry == OnExpiry.DROP
    assert record.note == "the shop"


def test_expiry_by_date(web, alice):
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/new", {"kind": "random", "domain": "d.test",
                                            "destination": "alice@real.test", "expires": "2026-12-24T18:00"})
    record = web.alias(int(answer.headers["Location"].rsplit("/", 1)[1]))
    assert f"{record.expires_at:%Y-%m-%d %H:%M}" == "2026-12-24 18:00"
    past = client.post("/addresses/new", {"kind": "random", "domain": "d.test",
                                          "destination": "alice@real.test", "expires": "2020-01-01"})
    both = client.post("/addresses/new", {"kind": "random", "domain": "d.test",
                                          "destination": "alice@real.test", "expires": "2027-01-01", "ttl": "1d"})
    assert past.status_code == both.status_code == 400
    assert "in the past" in _body(past) and "not both" in _body(both)


def test_refusals_keep_what_was_typed(web, alice):
    client = web.signed_in("alice@real.test")
    cases = {
        "postmaster": "role address", "a+b": "recipient delimiter", "": "Write the name",
        "a b": "not a valid", "x" * 65: "longer than 64",
    }
    for local, message in cases.items():
        answer = client.post("/addresses/new", {"kind": "chosen", "local": local, "domain": "d.test",
                                                "destination": "alice@real.test", "note": "kept"})
        assert answer.status_code == 400 and message in _body(answer), (local, _body(answer))
        assert 'value="kept"' in _body(answer)
    bad = client.post("/addresses/new", {"kind": "random", "domain": "d.test", "destination": "alice@real.test",
                                         "ttl": "soon"})
    assert bad.status_code == 400 and "not a duration" in _body(bad)


def test_a_taken_name_is_refused(web, alice, bob):
    web.add_alias(bob, "shop")
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/new", {"kind": "chosen", "local": "SHOP", "domain": "d.test",
                                            "destination": "alice@real.test"})
    assert answer.status_code == 400 and "is taken" in _body(answer)


def test_a_deleted_name_stays_quarantined(web, alice):
    record = web.add_alias(alice, "shop")
    with web.store() as store:
        store.remove_alias(record, web.clock())
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/new", {"kind": "chosen", "local": "shop", "domain": "d.test",
                                            "destination": "alice@real.test"})
    assert answer.status_code == 400 and "stays unused until 2027-05-30" in _body(answer)
    web.clock.advance(days=181)
    again = web.signed_in("alice@real.test").post("/addresses/new", {
        "kind": "chosen", "local": "shop", "domain": "d.test", "destination": "alice@real.test"})
    assert again.status_code == 303


def test_only_verified_destinations_of_the_user(web, alice, bob):
    with web.accounts() as accounts:
        accounts.add_destination(alice.id, "pending@real.test", web.clock())
    client = web.signed_in("alice@real.test")
    for destination, message in (("pending@real.test", "not one of your verified"),
                                 ("bob@real.test", "not one of your verified"),
                                 ("", "at least one destination")):
        answer = client.post("/addresses/new", {"kind": "random", "domain": "d.test", "destination": destination})
        assert answer.status_code == 400 and message in _body(answer)
    assert web.alias(1) is None


def test_only_the_users_domains(web, alice):
    client = web.signed_in("alice@real.test")
    answer = client.post("/addresses/new", {"kind": "random", "domain": "other.test",
                                            "destination": "alice@real.test"})
    assert answer.status_code == 400 and "cannot create addresses at other.test" in _body(answer)
    quick = client.post("/addresses/random", {"domain": "other.test"})
    assert quick.status_code == 303 and "cannot create addresses at other.test" in _body(
        client.get(quick.headers["Location"]))
    given = web.add_user("carol@real.test", domains=["other.test"])
    assert given.domains == ("other.test",)
    carol = web.signed_in("carol@real.test")
    assert carol.post("/addresses/random", {"domain": "other.test"}).headers["Location"].startswith("/addresses/")


def test_limit_of_active_addresses(web):
    web.add_user("carol@real.test", max_aliases=2)
    client = web.signed_in("carol@real.test")
    for _ in range(2):
        assert client.post("/addresses/random", {"domain": "d.test"}).headers["Location"] != "/addresses"
    answer = client.post("/addresses/new", {"kind": "random", "domain": "d.test",
                                            "destination": "carol@real.test"})
    assert answer.status_code == 400 and "the most you may have" in _body(answer)
    # disabling one makes room; enabling it again is refused while full
    client.post("/addresses/1/disable")
    assert client.post("/addresses/random", {"domain": "d.test"}).headers["Location"] == "/addresses/3"
    refused = client.post("/addresses/1/enable")
    assert refused.status_code == 400 and "the most you may have" in _body(refused)
    assert web.alias(1).enabled is False


def test_limit_per_hour(make_web):
    site = make_web(aliases_per_hour=3)
    site.add_user("carol@real.test")
    client = site.signed_in("carol@real.test")
    for _ in range(3):
        assert client.post("/addresses/random", {"domain": "d.test"}).headers["Location"] != "/addresses"
    refused = client.post("/addresses/random", {"domain": "d.test"})
    assert refused.headers["Location"] == "/addresses"
    assert "in the last hour" in _body(client.get("/addresses"))
    site.clock.advance(minutes=61)
    assert client.post("/addresses/random", {"domain": "d.test"}).headers["Location"] != "/addresses"


def test_no_verified_destination_no_domain(web):
    web.add_user("carol@real.test")
    with web.accounts() as accounts:
        user = accounts.user_by_email("carol@real.test")
        accounts.remove_destination(user.id, accounts.destinations(user.id)[0].id)
    page = _body(web.signed_in("carol@real.test").get("/addresses"))
    assert "verify a destination" in page and "Create random address" not in page
    with web.store() as store:
        store.set_domain_settings("d.test", DomainSettings(shared=False))
    page = _body(web.signed_in("carol@real.test").get("/addresses/new"))
    assert "has not given you a domain" in page


# -- the list ----------------------------------------------------------------------------
def test_list_search_filter_sort_and_pages(web, alice, bob):
    for n in range(120):
        web.clock.advance(minutes=1)
        web.add_alias(alice, f"a{n:03d}", note="newsletter" if n % 10 == 0 else "")
    web.add_alias(bob, "bobs-own")
    web.add_alias(alice, "gone", enabled=False)
    web.add_alias(alice, "other", domain="other.test")
    client = web.signed_in("alice@real.test")
    first = client.get("/addresses")
    assert _listed(first)[:2] == ["other@other.test", "gone@d.test"]
    assert len(_listed(first)) == 50 and "122 addresses" in _body(first) and "page 1 of 3" in _body(first)
    assert "bobs-own" not in _body(first)
    last = client.get("/addresses?page=3")
    assert _listed(last)[-1] == "a000@d.test" and len(_listed(last)) == 22
    assert _listed(client.get("/addresses?page=99")) == []
    assert 'href="/addresses?page=2' in _body(first)
    found = client.get("/addresses?q=newsletter")
    assert len(_listed(found)) == 12 and "12 addresses found" in _body(found)
    assert _listed(client.get("/addresses?q=a11")) == [f"a11{n}@d.test" for n in range(9, -1, -1)]
    assert _listed(client.get("/addresses?q=%25")) == []                 # LIKE's wildcards are literal
    assert _listed(client.get("/addresses?q=a_1")) == []
    web.add_alias(alice, "x_1", note="50% off")
    assert _listed(client.get("/addresses?q=%25")) == ["x_1@d.test"]
    assert _listed(client.get("/addresses?q=x_")) == ["x_1@d.test"]
    assert _listed(client.get("/addresses?state=disabled")) == ["gone@d.test"]
    assert _listed(client.get("/addresses?domain=other.test")) == ["other@other.test"]
    paged = _body(client.get("/addresses?q=a&state=active&page=2"))
    assert "q=a" in paged and "state=active" in paged


def test_sort_by_expiry_and_activity(web, alice):
    web.add_alias(alice, "never")
    web.add_alias(alice, "soon", expires_at=web.clock() + timedelta(days=1))
    web.add_alias(alice, "later", expires_at=web.clock() + timedelta(days=9))
    web.add_alias(alice, "used", last_forwarded_at=web.clock() - timedelta(hours=1))
    web.add_alias(alice, "used-long-ago", last_forwarded_at=web.clock() - timedelta(days=9))
    client = web.signed_in("alice@real.test")
    by_expiry = _listed(client.get("/addresses?sort=expiry"))
    assert by_expiry[:2] == ["soon@d.test", "later@d.test"]
    by_activity = _listed(client.get("/addresses?sort=activity"))
    assert by_activity[:2] == ["used@d.test", "used-long-ago@d.test"]


def test_state_at_a_glance(web, alice):
    now = web.clock()
    web.add_alias(alice, "limited", expires_at=now + timedelta(days=2, hours=3), max_messages=5, forwarded=2)
    web.add_alias(alice, "off", enabled=False)
    web.add_alias(alice, "done", expires_at=now - timedelta(days=1))
    text = _body(web.signed_in("alice@real.test").get("/addresses"))
    assert "expires in 2 days · 3 of 5 messages left" in text
    assert 'state-disabled">disabled' in text and 'state-expired">expired' in text


def test_glance_words():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    record = new_alias("a", "d.test", ("x@y.test",), Settings(idle=timedelta(hours=5), max_messages=1), now)
    assert glance(record, now).notes == ("1 of 1 message left", "expires in 5 hours without mail")
    assert glance(record, now + timedelta(hours=5)).state == "expired"


def test_pages_cross_from_dated_to_undated_aliases(web, alice):
    """Sorted by expiry or activity, the aliases without one come after the
    others, newest first; every page size and offset gives the same order."""
    now = web.clock()
    for n in range(9):
        web.clock.advance(minutes=1)
        web.add_alias(alice, f"x{n}", expires_at=now + timedelta(days=9 - n) if n % 3 else None,
                      last_forwarded_at=now - timedelta(days=n) if n % 2 else None)
    expected = {"expiry": ["x8", "x7", "x5", "x4", "x2", "x1", "x6", "x3", "x0"],
                "activity": ["x1", "x3", "x5", "x7", "x8", "x6", "x4", "x2", "x0"]}
    with web.accounts() as accounts:
        for sort, order in expected.items():
            for size in (1, 2, 4, 9, 20):
                seen = []
                for offset in range(0, 12, size):
                    page = accounts.owned_aliases(alice.id, web.clock(), sort=sort, offset=offset, limit=size)
                    seen += [r.local for r in page.aliases]
                    assert page.has_next == (offset + size < 9)
                assert seen == order, (sort, size)


def test_the_total_is_counted_up_to_a_bound(web, alice):
    for n in range(5):
        web.add_alias(alice, f"x{n}")
    with web.accounts() as accounts:
        page = accounts.owned_aliases(alice.id, web.clock(), limit=2, count_up_to=3)
        assert (page.total, page.more_than_total, page.has_next) == (3, True, True)
        exact = accounts.owned_aliases(alice.id, web.clock(), limit=2, count_up_to=5)
        assert (exact.total, exact.more_than_total) == (5, False)


def test_deleting_does_not_give_back_the_hours_creations(make_web):
    site = make_web(aliases_per_hour=2)
    site.add_user("carol@real.test")
    client = site.signed_in("carol@real.test")
    for _ in range(2):
        made = client.post("/addresses/random", {"domain": "d.test"}).headers["Location"]
        assert client.post(f"{made}/delete").status_code == 303
    refused = client.post("/addresses/random", {"domain": "d.test"})
    assert refused.headers["Location"] == "/addresses" and "in the last hour" in _body(client.get("/addresses"))


def test_a_role_name_in_any_spelling_is_refused(web, alice):
    client = web.signed_in("alice@real.test")
    for local in ("postmaster", "PostMaster", "po\u017ftmaster"):      # ſ folds to s, as lookups fold it
        answer = client.post("/addresses/new", {"kind": "chosen", "local": local, "domain": "d.test",
                                                "destination": "alice@real.test"})
        assert answer.status_code == 400 and "role address" in _body(answer)


def test_odd_page_numbers_are_page_one(web, alice):
    client = web.signed_in("alice@real.test")
    for page in ("\u00b2", "\u0663", "9" * 5000, "-1"):
        assert client.get("/addresses", query_string={"page": page}).status_code == 200
