"""Several hosts on one database: sealing, the shared key and secret store
(on SQLite, PostgreSQL and MariaDB), the hosts' reports and their
comparison, the names that may reach Postfix's tables, and the CLI."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from helpers import Cli, write_config

from tmail import postfix_wiring as wiring
from tmail.core.fleet import HostReport, disagreements, tables_digest
from tmail.db import fleet as fleet_db
from tmail.keys import KeyStore
from tmail.sealing import Sealer, SealError, new_key, read_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def sealer(key: str | None = None) -> Sealer:
    return Sealer(base64.b64decode(key or new_key()))


# -- sealing ----------------------------------------------------------------
def test_a_sealed_secret_opens_only_with_its_key_and_under_its_own_name():
    key = new_key()
    sealed = sealer(key).seal("dkim:d.test:s1:rsa", b"private bytes")
    assert b"private bytes" not in sealed.encode() and sealed.startswith("v1:")
    assert sealer(key).open("dkim:d.test:s1:rsa", sealed) == b"private bytes"
    with pytest.raises(SealError, match="fleet key"):
        sealer(key).open("dkim:e.test:s1:rsa", sealed)      # moved to another domain's row
    with pytest.raises(SealError, match="sealed under another host's key, or altered"):
        sealer().open("dkim:d.test:s1:rsa", sealed)         # another host's key
    assert sealer(key).seal("x", b"same") != sealer(key).seal("x", b"same")   # a fresh nonce each time


@pytest.mark.parametrize("content", ["", "c2hvcnQ=", "not base64 at all!", new_key() + "x"])
def test_a_key_file_that_is_not_32_bytes_of_base64_is_refused(tmp_path, content):
    path = tmp_path / "fleet.key"
    path.write_text(content)
    with pytest.raises(SealError, match="32 bytes"):
        read_key(str(path))


def test_a_key_file_reads_back_with_its_line_end(tmp_path):
    key = new_key()
    (tmp_path / "fleet.key").write_text(key + "\n")
    assert read_key(str(tmp_path / "fleet.key")) == base64.b64decode(key)


# -- the names that reach Postfix's tables ------------------------------------
@pytest.mark.parametrize("name", ["d.test", "xn--bcher-kva.example", "a-b.c1.test", "1.2.test"])
def test_domain_names_are_routable(name):
    assert wiring.routable(name)


@pytest.mark.parametrize("name", [
    "d.test\n/^.*$/ OK", "d.test tmail:", ".*", "d.(test|example)", "D.test", "localhost", "d..test",
    "-d.test", "d-.test", "d.test.", "a" * 64 + ".test", "d.test\x00", "ünï.test", "",
])
def test_anything_else_never_reaches_the_tables(name):
    assert not wiring.routable(name)
    with pytest.raises(ValueError, match="not domain names"):
        wiring.map_files(["ok.test", name])


# -- the hosts' reports ---------------------------------------------------------
def host(name, seen=5, tables=5, digest=None, key="k1", keys="dk", srs="s1") -> HostReport:
    def ago(seconds):
        return None if seconds is None else NOW - timedelta(seconds=seconds)
    return HostReport(name, "0.1.0", ago(seen), key, keys, srs, ago(tables),
                      digest or tables_digest(["d.test"]), "pipe")


def test_hosts_that_agree_raise_nothing():
    assert disagreements([host("a"), host("b")], NOW, 10, tables_digest(["d.test"])) == []


def test_the_tables_digest_is_of_the_set_of_names():
    assert tables_digest(["b.test", "a.test", "a.test"]) == tables_digest(["a.test", "b.test"])
    assert tables_digest(["a.test"]) != tables_digest(["a.test", "b.test"])


@pytest.mark.parametrize("other, says", [
    (host("b", seen=31), "b: its tmail daemon has not reported for 31 s"),
    (host("b", seen=None), "b: its tmail daemon has not reported at all"),
    (host("b", tables=None), "b: its follower"),
    (host("b", tables=40), "has not written Postfix's tables for 40 s"),
    (host("b", digest=tables_digest(["d.test", "old.test"])), "b: its Postfix routes another set of domains"),
    (host("b", key="k2"), "hosts disagree on their fleet key: a: k1; b: k2"),
    (host("b", keys="other"), "hosts disagree on their DKIM keys and selectors"),
    (host("b", srs="s0"), "hosts disagree on their SRS secrets"),
])
def test_each_kind_of_disagreement_names_the_host(other, says):
    problems = disagreements([host("a"), other], NOW, 10, tables_digest(["d.test"]))
    assert len(problems) == 1 and says in problems[0], problems


def test_a_stale_host_is_named_but_not_compared():
    problems = disagreements([host("a"), host("b", seen=100, keys="old")], NOW, 10,
                             tables_digest(["d.test"]))
    assert len(problems) == 1 and problems[0].startswith("b: its tmail daemon")


# -- the shared store, on every database ------------------------------------
def test_keys_in_the_database_sign_like_keys_on_disk(engine, tmp_path):
    files = KeyStore(str(tmp_path / "dkim"))
    files.create("d.test", "s1", "rsa")
    files.create("d.test", "s1", "ed25519")
    files.activate("d.test", "s1")
    shared = fleet_db.DbKeyStore(engine, sealer())
    for key in files.keys("d.test"):
        assert shared.put("d.test", key.selector, key.algorithm, files.read(key)) is True
        assert shared.put("d.test", key.selector, key.algorithm, b"other") is False   # kept
    assert shared.signing_keys("d.test") == []         # nothing active yet
    assert shared.activate("d.test", "s1") is True and shared.activate("d.test", "s1") is False
    assert shared.signing_keys("d.test") == files.signing_keys("d.test")
    assert fleet_db.keys_digest(shared) == fleet_db.keys_digest(files)


def test_rotation_in_the_database(engine):
    shared = fleet_db.DbKeyStore(engine, sealer())
    assert shared.create("d.test", "s1", "ed25519")[1] is True
    assert shared.create("d.test", "s1", "ed25519")[1] is False
    shared.activate("d.test", "s1")
    shared.create("d.test", "s2", "ed25519")
    before = fleet_db.keys_digest(shared)
    shared.activate("d.test", "s2")
    assert [k.selector for k in shared.signing_keys("d.test")] == ["s2-ed25519"]
    assert fleet_db.keys_digest(shared) != before
    with pytest.raises(Exception, match="signs d.test's mail"):
        shared.remove("d.test", "s2")
    assert [k.selector for k in shared.remove("d.test", "s1")] == ["s1"]
    assert [k.selector for k in shared.keys("d.test")] == ["s2"]


def test_a_host_with_another_fleet_key_cannot_use_the_keys(engine):
    fleet_db.DbKeyStore(engine, sealer()).create("d.test", "s1", "ed25519")
    fleet_db.DbKeyStore(engine, sealer()).create("d.test", "s1", "ed25519")   # unchanged: exists
    shared = fleet_db.DbKeyStore(engine, sealer())
    shared.activate("d.test", "s1")
    with pytest.raises(SealError):
        shared.signing_keys("d.test")


def test_srs_secrets_every_one_verifies_the_newest_due_signs(engine):
    seal = sealer()
    with engine.begin() as conn:
        fleet_db.add_srs_secret(conn, seal, b"old", NOW - timedelta(days=60), NOW - timedelta(days=60))
        fleet_db.add_srs_secret(conn, seal, b"current", NOW - timedelta(days=30), NOW - timedelta(days=30))
        fleet_db.add_srs_secret(conn, seal, b"next", NOW, NOW + timedelta(seconds=30))
    with engine.connect() as conn:
        assert fleet_db.read_srs_secrets(conn, seal, NOW) == [b"current", b"next", b"old"]
        assert fleet_db.read_srs_secrets(conn, seal, NOW + timedelta(seconds=31)) == [b"next", b"current", b"old"]
    with engine.begin() as conn:
        # "old" stopped signing 30 days ago: longer than any SRS address
        # lives (21 days, and a day's grace); had it stopped 22 days ago, not yet
        assert fleet_db.retire_srs_secrets(conn, NOW, timedelta(days=29)) == 0
        assert fleet_db.retire_srs_secrets(conn, NOW, timedelta(days=21)) == 1
        assert fleet_db.read_srs_secrets(conn, seal, NOW) == [b"current", b"next"]
        assert fleet_db.retire_srs_secrets(conn, NOW, timedelta(days=21)) == 0


def test_host_reports_are_kept_per_host_and_column(engine):
    with engine.begin() as conn:
        fleet_db.report(conn, "mx-a", daemon_seen_at=NOW, keys_digest="k")
        fleet_db.report(conn, "mx-a", tables_seen_at=NOW, tables_digest="t", transport="lmtp")
        fleet_db.report(conn, "mx-b", daemon_seen_at=NOW)
    with engine.connect() as conn:
        a, b = fleet_db.hosts(conn)
    assert (a.name, a.keys_digest, a.tables_digest, a.transport, a.daemon_seen_at) == ("mx-a", "k", "t", "lmtp", NOW)
    assert (b.name, b.tables_seen_at) == ("mx-b", None)
    with engine.begin() as conn:
        assert fleet_db.forget(conn, "mx-b") and not fleet_db.forget(conn, "mx-b")


# -- the CLI -----------------------------------------------------------------
@pytest.fixture
def fleet_cli(tmp_path):
    (tmp_path / "fleet.key").write_text(new_key() + "\n")
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db",
                          fleet={"key_file": str(tmp_path / "fleet.key"), "host": "mx-a"})
    run = Cli(config)
    run("db", "upgrade")
    run("domain", "add", "d.test")
    return run


def test_import_moves_files_into_the_database_once(fleet_cli, tmp_path):
    files = KeyStore(str(tmp_path / "dkim"))
    files.create("d.test", "s1", "rsa")
    files.activate("d.test", "s1")
    first = fleet_cli.json("fleet", "import")
    assert (first["changed"], first["dkim_keys"], first["selectors"], first["srs_secrets"]) == (True, 1, 1, 1)
    assert fleet_cli.json("fleet", "import")["changed"] is False
    # from now on the database's keys are the ones shown and used
    [record] = fleet_cli.json("dkim", "show-dns", "--domain", "d.test")["records"]
    assert record["path"].startswith("database:") and record["active"]


def test_keygen_in_a_fleet_writes_nothing_to_disk(fleet_cli, tmp_path):
    fleet_cli("fleet", "import")
    out = fleet_cli.json("dkim", "keygen", "--domain", "d.test", "--selector", "s1")
    assert out["changed"] and not (tmp_path / "dkim").exists()
    with open(tmp_path / "tmail.db", "rb") as handle:
        assert b"PRIVATE KEY" not in handle.read()


def test_srs_rotate_adds_a_secret_that_signs_later(fleet_cli):
    fleet_cli("fleet", "import")
    out = fleet_cli.json("srs", "rotate")
    assert out["secrets"] == 2 and out["dropped"] == 0


def test_fleet_commands_need_a_fleet_key(cli):
    assert "set [fleet] key_file first" in cli("fleet", "import", ok=1).output
    assert "set [fleet] key_file first" in cli("srs", "rotate", ok=1).output


def test_a_fleet_without_srs_secrets_says_what_to_run(fleet_cli):
    from tmail import config as config_mod
    cfg = config_mod.load(fleet_cli.config)
    with pytest.raises(config_mod.ConfigError, match="tmail fleet import"):
        config_mod.srs_secrets(cfg)


def test_status_names_a_host_that_never_wrote_its_tables(fleet_cli):
    fleet_cli("fleet", "import")
    from tmail import config as config_mod
    cfg = config_mod.load(fleet_cli.config)
    engine = cfg.engine()
    with engine.begin() as conn:
        fleet_db.report(conn, "mx-a", daemon_seen_at=datetime.now(timezone.utc))
    status = fleet_cli.json("fleet", "status", ok=1)
    assert [h["host"] for h in status["hosts"]] == ["mx-a"]
    assert any("its follower" in p for p in status["problems"])
    assert fleet_cli.json("fleet", "forget", "mx-a")["changed"] is True


def test_keygen_prints_a_usable_key(tmp_path):
    from click.testing import CliRunner

    from tmail.cli import main
    key = CliRunner().invoke(main, ["fleet", "keygen"]).stdout.strip()
    assert len(base64.b64decode(key)) == 32


def test_the_follower_reads_the_database_as_the_tmail_user_not_root():
    import os
    import pwd

    from tmail.cli.app import CommandError
    from tmail.cli.follow import as_user
    expected = pwd.getpwnam("tmail").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert as_user("tmail", lambda: [os.geteuid(), os.getegid(), os.getgroups()]) == \
        [expected, pwd.getpwnam("tmail").pw_gid if os.geteuid() == 0 else os.getegid(),
         [] if os.geteuid() == 0 else os.getgroups()]

    def fails():
        raise RuntimeError("the database is away")
    with pytest.raises((CommandError, RuntimeError), match="the database is away"):
        as_user("tmail", fails)


# -- what an attacker with the database, or a host with another key, can do --
def test_a_row_that_does_not_open_is_left_out_not_fatal(engine):
    seal = sealer()
    with engine.begin() as conn:
        fleet_db.add_srs_secret(conn, seal, b"good", NOW - timedelta(days=1), NOW - timedelta(days=1))
        fleet_db.add_srs_secret(conn, sealer(), b"other key", NOW, NOW)         # a host with another key
        conn.execute(fleet_db.srs_secrets.insert().values(sealed="v1:AAAA", created_at=NOW.replace(tzinfo=None),
                                                          signs_from=NOW.replace(tzinfo=None)))
    with engine.connect() as conn:
        assert fleet_db.read_srs_secrets(conn, seal, NOW) == [b"good"]
        assert fleet_db.key_opens(conn, seal) is True
        assert fleet_db.key_opens(conn, sealer()) is False


@pytest.mark.parametrize("sealed", ["v1:AAAAA", "v1:AAAA", "v1:" + "A" * 40, "V1:xyz", "", "v1:!!!!"])
def test_every_malformed_sealed_value_is_a_seal_error(sealed):
    with pytest.raises(SealError, match="does not open"):
        sealer().open("srs:1", sealed)


def test_a_host_with_another_key_may_not_add_secrets(fleet_cli, tmp_path):
    fleet_cli("fleet", "import")
    (tmp_path / "fleet.key").write_text(new_key() + "\n")      # this host's key now differs
    for args in (("srs", "rotate"), ("dkim", "keygen", "--domain", "d.test", "--selector", "s9")):
        assert "opens none of the secrets in the database" in fleet_cli(*args, ok=1).output


def test_digests_of_secrets_are_keyed_with_the_fleet_key():
    import hashlib
    seal = sealer()
    plain = fleet_db.secrets_digest([b"test-secret-1"])
    assert fleet_db.secrets_digest([b"test-secret-1"], seal) != plain
    assert plain == hashlib.sha256(hashlib.sha256(b"test-secret-1").digest()).hexdigest()[:16]
    assert fleet_db.secrets_digest([b"s"], seal) == fleet_db.secrets_digest([b"s"], seal)


def test_database_text_cannot_rewrite_the_admins_terminal(fleet_cli):
    from tmail import config as config_mod
    from tmail.cli.app import printable
    assert printable("mx\x1b[2K\r\x1b]0;owned\x07\u202e") == "mx\\x1b[2K\\r\\x1b]0;owned\\x07\\u202e"
    engine = config_mod.load(fleet_cli.config).engine()
    with engine.begin() as conn:
        fleet_db.report(conn, "mx-old; curl x | sh\x1b[2K", daemon_seen_at=NOW)
    out = fleet_cli("fleet", "status", ok=1).output
    assert "\x1b" not in out and "'mx-old; curl x | sh\\x1b[2K'" in out


def test_a_report_from_the_future_is_named():
    future = host("b", seen=-3600)
    problems = disagreements([host("a"), future], NOW, 10, tables_digest(["d.test"]))
    assert problems == ["b: reports a time in the future: its clock is wrong, or its report was not "
                        "written by tmail"]
    assert fleet_db._when("0000-00-00 00:00:00") is None and fleet_db._when(None) is None


def test_host_names_in_the_configuration_are_host_names(tmp_path):
    from tmail import config as config_mod
    config = write_config(tmp_path, "sqlite:///x.db", fleet={"host": "mx 1; rm"})
    with pytest.raises(config_mod.ConfigError, match="expected a host name"):
        config_mod.load(config)


def test_a_domain_postfix_already_serves_is_not_taken_from_it(tmp_path):
    from tmail import config as config_mod
    from tmail.cli.postfix import routed_domains
    cfg = config_mod.load(write_config(tmp_path, "sqlite:///x.db"))
    own = frozenset({"mx.fwd.test", "localhost.localdomain", "relayed.test"})
    assert routed_domains(cfg, ["d.test", "localhost.localdomain", "relayed.test"], own) == \
        ["d.test", "srs.fwd.test"]
