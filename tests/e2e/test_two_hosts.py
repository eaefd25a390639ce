"""Two MX hosts on one database: two private Postfix instances, each with
its own tmail daemon and follower (`tmail postfix follow`), sharing one
PostgreSQL schema (and once a MariaDB database) and one fleet key.

What is done on host A must reach host B without anyone running a
command there: domains (B's Postfix routes them, or stops), aliases and
their state (B's milter reads the same rows), DKIM keys and selectors and
SRS secrets (sealed in the database)."""
import json
import os
import secrets
import time

import dkim
import pytest
from conftest_db import scratch_database
from harness import Instance, send_at_once, wait_until
from sink import Sink

from tmail.resolver import Resolver
from tmail.sealing import new_key

INTERVAL = 2           # [fleet] sync_interval_s of both hosts
BOUND = 30             # what the README promises for a change to reach every host


def message(subject: str, to: str = "x@d.test") -> bytes:
    return (f"From: alice@orig.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@orig.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n").encode()


def rcpt_code(mx, rcpt: str) -> int:
    with mx.client() as client:
        client.ehlo()
        client.mail("alice@orig.test")
        return client.rcpt(rcpt)[0]


def send(mx, rcpt: str, subject: str) -> None:
    with mx.client() as client:
        client.sendmail("alice@orig.test", [rcpt], message(subject, rcpt))


def seconds_until(check, timeout=BOUND) -> float:
    started = time.monotonic()
    wait_until(check, timeout=timeout, what="the change to reach the other host", interval=0.2)
    return time.monotonic() - started


def cli_json(mx, *args, as_root=False, check=True):
    return json.loads(mx.tmail(*args, "--json", as_root=as_root, check=check).stdout)


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def hosts(request):
    with scratch_database(request.param, "tmail_fleet") as url:
        sink = Sink()
        key = new_key()
        # A hands mail to tmail through the pipe, B through LMTP: the fleet
        # does not care, and both paths are exercised.
        a = Instance(sink.port, db_url=url, transport="pipe", fleet_key=key,
                     config={"fleet": {"host": "mx-a", "sync_interval_s": INTERVAL}})
        b = Instance(sink.port, db_url=url, transport="lmtp", fleet_key=key,
                     config={"fleet": {"host": "mx-b", "sync_interval_s": INTERVAL}})
        try:
            for mx in (a, b):
                mx.setup()
                mx.start_follower()
            yield a, b, sink
        except Exception:
            for mx in (a, b):
                print(mx.maillog()[-3000:])
                print(mx.tmail_log()[-3000:])
            raise
        finally:
            for mx in (a, b):
                mx.teardown()
            sink.close()


@pytest.fixture(autouse=True)
def _clean(hosts):
    hosts[2].messages.clear()


def test_a_domain_and_alias_added_on_a_are_forwarded_by_b(hosts):
    a, b, sink = hosts
    domain = f"new{secrets.token_hex(3)}.test"
    assert rcpt_code(b, f"shop@{domain}") == 554        # not B's to relay: nothing routes it
    # as an admin on A: A's own tables at once, B's through its follower
    a.tmail("domain", "add", domain, as_root=True)
    a.tmail("alias", "add", "shop", "--domain", domain, "--to", "me@real.test")
    took = seconds_until(lambda: rcpt_code(b, f"shop@{domain}") == 250)
    print(f"a domain added on A was routed by B after {took:.1f} s")
    assert rcpt_code(b, f"nobody@{domain}") == 550       # B's milter knows the domain's aliases
    send(b, f"shop@{domain}", "via-b")
    [msg] = sink.wait_for(lambda m: b"via-b" in m.data)
    assert msg.rcpts == ["me@real.test"]


def test_a_domain_removed_on_a_is_refused_by_b(hosts):
    a, b, _sink = hosts
    domain = f"old{secrets.token_hex(3)}.test"
    a.tmail("domain", "add", domain, as_root=True)
    a.tmail("alias", "add", "gone", "--domain", domain, "--to", "me@real.test")
    seconds_until(lambda: rcpt_code(b, f"gone@{domain}") == 250)
    b.stop_follower()       # hold B's Postfix tables as they are: the window, made wide
    try:
        a.tmail("domain", "remove", domain, "--force", as_root=True)
        # B's Postfix still routes the domain to tmail, and B's milter
        # refuses what is routed to tmail and is not tmail's (nothing is
        # accepted that the milter does not know).
        assert rcpt_code(b, f"gone@{domain}") == 550
    finally:
        b.start_follower()
    # Within the bound B's Postfix no longer routes it at all.
    seconds_until(lambda: rcpt_code(b, f"gone@{domain}") == 554)


def test_an_alias_disabled_on_a_is_refused_by_b_at_once(hosts):
    a, b, _sink = hosts
    local = f"off{secrets.token_hex(3)}"
    a.tmail("alias", "add", local, "--domain", "d.test", "--to", "me@real.test")
    assert rcpt_code(b, f"{local}@d.test") == 250
    a.tmail("alias", "disable", f"{local}@d.test")
    assert rcpt_code(b, f"{local}@d.test") == 550


def test_twenty_at_once_across_both_hosts_to_an_alias_allowed_five(hosts):
    a, b, sink = hosts
    local = f"race{secrets.token_hex(3)}"
    a.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test", "--max-messages", "5")
    outcomes = [o if o == "sent" else o[0] for o in
                send_at_once((a, b), 20, f"{local}@d.test", lambda i: message(f"{local}-{i}"))]
    assert outcomes.count("sent") == 5, outcomes
    assert set(outcomes) <= {"sent", 550, 451}, outcomes
    sink.wait_for(lambda m: len(sink.to(f"{local}@real.test")) >= 5, timeout=60)
    time.sleep(2)
    assert len(sink.to(f"{local}@real.test")) == 5
    shown = cli_json(b, "alias", "show", f"{local}@d.test")["alias"]
    assert shown["forwarded"] == 5


def _publish(zone, records):
    for record in records:
        zone.remove(record["name"], "TXT")
        zone.txt(record["name"], record["value"])


def _signed_by(data: bytes, zone_mx) -> list[tuple[bytes, bytes, bool]]:
    resolver = Resolver([("127.0.0.1", zone_mx.dns.port)])

    def dnsfunc(name, timeout=5):
        return (resolver.txt(name.decode().rstrip(".")) or [None])[0]
    verifier = dkim.DKIM(data)
    count = sum(1 for n, _ in verifier.headers if n.lower() == b"dkim-signature")
    found = []
    for index in range(count):
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        found.append((verifier.domain, verifier.selector, ok))
    return found


def test_a_key_rotated_on_a_signs_on_b(hosts):
    a, b, sink = hosts
    local = f"sig{secrets.token_hex(3)}"
    a.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test")
    first = cli_json(a, "dkim", "keygen", "--domain", "d.test", "--selector", "one")["records"]
    second = cli_json(a, "dkim", "keygen", "--domain", "d.test", "--selector", "two",
                      "--no-activate")["records"]
    _publish(b.zone, first + second)
    time.sleep(INTERVAL + 1)             # B's key cache re-reads the database
    send(b, f"{local}@d.test", f"{local}-before")
    [before] = sink.wait_for(lambda m: f"{local}-before".encode() in m.data)
    assert (b"d.test", b"one", True) in _signed_by(before.data, b)

    a.tmail("dkim", "activate", "--domain", "d.test", "--selector", "two")

    def b_signs_with_two():
        sink.messages.clear()
        subject = f"{local}-{secrets.token_hex(2)}"
        send(b, f"{local}@d.test", subject)
        [msg] = sink.wait_for(lambda m: subject.encode() in m.data)
        return (b"d.test", b"two", True) in _signed_by(msg.data, b)
    seconds_until(b_signs_with_two)
    # the keys never touched either disk: they are the database's, sealed
    assert not _has_files(a.key_directory) and not _has_files(b.key_directory)


def _has_files(directory: str) -> bool:
    return any(files for _root, _dirs, files in os.walk(directory))


def test_a_bounce_to_an_srs_address_made_by_b_is_accepted_by_a(hosts):
    a, b, sink = hosts
    local = f"srs{secrets.token_hex(3)}"
    a.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test")
    send(b, f"{local}@d.test", f"{local}-fwd")
    [msg] = sink.wait_for(lambda m: f"{local}-fwd".encode() in m.data)
    srs_address = msg.mail_from
    assert srs_address.lower().startswith("srs0=") and srs_address.lower().endswith("@srs.fwd.test")
    with a.client() as client:
        client.ehlo()
        client.mail("")
        assert client.rcpt(srs_address)[0] == 250
        forged = srs_address.split("=", 2)
        forged[1] = "AAAA" if forged[1] != "AAAA" else "BBBB"
        assert client.rcpt("=".join(forged))[0] == 550


def test_an_srs_secret_rotated_on_a_verifies_on_b_before_anyone_signs_with_it(hosts):
    a, b, sink = hosts
    rotated = cli_json(a, "srs", "rotate")
    assert rotated["secrets"] >= 2

    def report(mx):
        return {h["host"]: h for h in cli_json(mx, "fleet", "status", check=False)["hosts"]}
    # both daemons pick the new set up (the signing secret is unchanged yet)
    before = report(a)
    seconds_until(lambda: report(a)["mx-a"]["srs"] == report(a)["mx-b"]["srs"] != "")
    local = f"rot{secrets.token_hex(3)}"
    a.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test")
    # after three intervals the new secret signs, on both hosts
    time.sleep(3 * INTERVAL + 1)
    addresses = {}
    for mx in (a, b):
        sink.messages.clear()
        send(mx, f"{local}@d.test", f"{local}-{mx.transport}")
        [msg] = sink.wait_for(lambda m, mx=mx: f"{local}-{mx.transport}".encode() in m.data)
        addresses[mx.transport] = msg.mail_from
    for srs_address in addresses.values():     # each host verifies what the other signed
        for mx in (a, b):
            with mx.client() as client:
                client.ehlo()
                client.mail("")
                assert client.rcpt(srs_address)[0] == 250
    assert before["mx-a"]["srs"] != report(a)["mx-a"]["srs"]


def fleet_check(mx) -> dict:
    [check] = [c for c in cli_json(mx, "postfix", "check", as_root=True, check=False)["checks"]
               if c["check"] == "fleet"]
    return check


def test_status_says_the_hosts_agree_then_names_the_one_that_stopped(hosts):
    a, b, sink = hosts
    seconds_until(lambda: a.tmail("fleet", "status", check=False).returncode == 0)
    status = cli_json(a, "fleet", "status")
    assert {h["host"] for h in status["hosts"]} >= {"mx-a", "mx-b"} and status["problems"] == []
    assert fleet_check(a)["ok"] is True
    b.kill_daemon()
    try:
        # A is not disturbed: it accepts and forwards; B defers its tmail mail
        local = f"alive{secrets.token_hex(3)}"
        a.tmail("alias", "add", local, "--domain", "d.test", "--to", f"{local}@real.test")
        send(a, f"{local}@d.test", f"{local}-a")
        sink.wait_for(lambda m: f"{local}-a".encode() in m.data)
        assert rcpt_code(b, f"{local}@d.test") // 100 == 4
        seconds_until(lambda: a.tmail("fleet", "status", check=False).returncode == 1, timeout=6 * INTERVAL + 5)
        problems = cli_json(a, "fleet", "status", check=False)["problems"]
        assert any(p.startswith("mx-b: its tmail daemon has not reported") for p in problems), problems
        assert not fleet_check(a)["ok"] and "mx-b" in fleet_check(a)["detail"]
    finally:
        b.start_daemon()
    seconds_until(lambda: a.tmail("fleet", "status", check=False).returncode == 0)
