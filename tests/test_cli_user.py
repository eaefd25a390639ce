"""tmail user ...: accounts from the admin's side, on a real SQLite database."""
from datetime import timedelta

import pytest
from helpers import Cli, write_config

from tmail import defaults
from tmail.core import accounts as rules
from tmail.core.durations import utcnow


@pytest.fixture
def cli(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db",
                          web={"base_url": "https://mail.d.test", "secret_key_file": str(tmp_path / "web.secret")})
    run = Cli(config)
    run("db", "upgrade")
    run("domain", "add", "d.test")
    run("domain", "add", "e.test")
    return run


def accounts_of(cli):
    from tmail import config as config_mod
    from tmail.db.accounts import Accounts
    from tmail.db.engine import make_engine
    engine = make_engine(config_mod.load(cli.config)["database"]["url"])
    conn = engine.connect()
    return Accounts(conn), conn


def test_add_prints_a_one_time_link_and_the_address_is_a_verified_destination(cli):
    out = cli.json("user", "add", "Ann@Real.test", "--domain", "d.test")
    assert out["changed"] is True and out["link"].startswith("https://mail.d.test/password?token=")
    user = out["user"]
    assert (user["email"], user["domains"], user["password_set"]) == ("ann@real.test", ["d.test"], False)
    assert user["destinations"] == [{"address": "Ann@real.test", "verified": True}]
    accounts, conn = accounts_of(cli)
    token = out["link"].split("token=")[1]
    assert accounts.use_token(rules.SET_PASSWORD, token, utcnow()) is not None
    assert accounts.use_token(rules.SET_PASSWORD, token, utcnow()) is None       # once only
    assert accounts.peek_token(rules.SET_PASSWORD, "not-a-token", utcnow()) is None
    conn.close()


@pytest.mark.parametrize("args,code,message", [
    (["user", "add", "not an address"], defaults.EXIT_USAGE, "address"),
    (["user", "add", "b@real.test", "--domain", "nope.test"], defaults.EXIT_ERROR, "not a tmail domain"),
    (["user", "add", "b@real.test", "--max-aliases", "many"], defaults.EXIT_USAGE, "whole number"),
    (["user", "add", "b@d.test"], defaults.EXIT_USAGE, "tmail domain"),
    (["user", "add", "b@real.test", "--verified-destination", "x@srs.fwd.test"], defaults.EXIT_USAGE, "SRS"),
    # accounts compare case-folded: boß@ would be the account boss@ (and ſ is s)
    (["user", "add", "bo\u00df@real.test"], defaults.EXIT_USAGE, "fold"),
    (["user", "add", "bo\u017f\u017f@real.test"], defaults.EXIT_USAGE, "fold"),
    (["user", "add", "b@real.test", "--verified-destination", "a%b@real.test"], defaults.EXIT_USAGE, "route"),
])
def test_bad_input_is_refused_and_writes_nothing(cli, args, code, message):
    result = cli(*args, ok=code)
    assert message in result.output + result.stderr
    assert cli.json("user", "list")["users"] == []


def test_a_short_password_on_stdin_is_refused_and_writes_nothing(cli):
    result = cli.runner.invoke(__import__("tmail.cli", fromlist=["main"]).main,
                               ["--config", cli.config, "user", "add", "c@real.test", "--password-stdin"],
                               input="short\n")
    assert result.exit_code == defaults.EXIT_USAGE and "at least" in result.stderr
    assert cli.json("user", "list")["users"] == []


def test_add_twice_is_refused(cli):
    cli("user", "add", "d@real.test")
    assert "exists already" in cli("user", "add", "D@real.test", ok=defaults.EXIT_ERROR).stderr


def test_set_changes_only_what_is_given_and_says_so(cli):
    cli("user", "add", "e@real.test", "--domain", "d.test")
    out = cli.json("user", "set", "e@real.test", "--domain", "e.test", "--max-aliases", "5")
    assert out["changed"] and out["user"]["domains"] == ["e.test"] and out["user"]["max_aliases"] == 5
    assert cli.json("user", "set", "e@real.test", "--domain", "e.test")["changed"] is False
    out = cli.json("user", "set", "e@real.test", "--max-aliases", "none", "--no-domains")
    assert out["user"]["max_aliases"] is None and out["user"]["domains"] == []


def test_disable_signs_the_user_out_everywhere(cli):
    cli("user", "add", "f@real.test")
    accounts, conn = accounts_of(cli)
    user = accounts.user_by_email("f@real.test")
    accounts.new_session(user.id, utcnow(), timedelta(days=1), "192.0.2.1", "test")
    conn.commit()
    conn.close()
    assert cli.json("user", "disable", "f@real.test")["changed"] is True
    accounts, conn = accounts_of(cli)
    assert accounts.sessions(user.id) == [] and not accounts.user(user.id).enabled
    conn.close()
    assert cli.json("user", "disable", "f@real.test")["changed"] is False
    assert cli.json("user", "enable", "f@real.test")["changed"] is True


def test_remove_refuses_an_owner_unless_forced_and_quarantines_their_addresses(cli):
    cli("user", "add", "g@real.test", "--domain", "d.test")
    cli("alias", "add", "mine", "--domain", "d.test", "--to", "g@real.test", "--owner", "g@real.test")
    assert "owns 1" in cli("user", "remove", "g@real.test", ok=defaults.EXIT_ERROR).stderr
    out = cli.json("user", "remove", "g@real.test", "--force")
    assert out["removed_aliases"] == ["mine@d.test"]
    assert "quarantined" in cli("alias", "add", "mine", "--domain", "d.test", "--to", "x@real.test",
                                ok=defaults.EXIT_ERROR).stderr


def test_an_owned_alias_forwards_only_to_verified_destinations(cli):
    cli("user", "add", "h@real.test")
    out = cli.json("alias", "add", "hers", "--domain", "d.test", "--to", "other@real.test",
                   "--owner", "h@real.test")
    assert out["alias"]["owner"] == "h@real.test"
    assert out["alias"]["unverified_destinations"] == ["other@real.test"]
    verdict = cli.json("resolve", "hers@d.test", "--from", "a@b.test")
    assert verdict["verdict"] == "unverified" and verdict["reply"]["code"] == "450"
    cli("user", "set", "h@real.test", "--verified-destination", "other@real.test")
    verdict = cli.json("resolve", "hers@d.test", "--from", "a@b.test")
    assert verdict["verdict"] == "forward" and verdict["destinations"] == ["other@real.test"]
    listed = cli.json("alias", "list", "--owner", "h@real.test")["aliases"]
    assert [a["address"] for a in listed] == ["hers@d.test"]
    assert "no user" in cli("alias", "add", "x", "--domain", "d.test", "--to", "a@real.test",
                            "--owner", "nobody@real.test", ok=defaults.EXIT_ERROR).stderr


def test_an_alias_made_without_owner_works_as_before(cli):
    cli("alias", "add", "plain", "--domain", "d.test", "--to", "anyone@real.test")
    verdict = cli.json("resolve", "plain@d.test")
    assert verdict["verdict"] == "forward" and verdict["destinations"] == ["anyone@real.test"]
    assert cli.json("alias", "show", "plain@d.test")["alias"]["owner"] is None


def test_reset_password_and_invite(cli, tmp_path):
    cli("user", "add", "i@real.test")
    assert "/password?token=" in cli.json("user", "reset-password", "i@real.test")["link"]
    assert "not \"invite\"" in cli("user", "invite", ok=defaults.EXIT_ERROR).stderr
    invited = Cli(write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db", web={
        "signup": "invite", "base_url": "https://mail.d.test", "secret_key_file": str(tmp_path / "w")}))
    assert invited.json("user", "invite")["link"].startswith("https://mail.d.test/signup?token=")


def test_shared_domains(cli):
    assert cli.json("domain", "set", "e.test", "--shared")["settings"]["shared"] is True
    assert cli.json("domain", "show", "e.test")["settings"]["shared"] is True
    accounts, conn = accounts_of(cli)
    assert accounts.shared_domains() == frozenset({"e.test"})
    conn.close()
