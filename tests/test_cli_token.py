"""tmail token ...: API tokens from the admin's side, on a real SQLite database."""
import pytest
import sqlalchemy as sa
from helpers import Cli, write_config

from tmail import defaults
from tmail.core.accounts import token_hash


@pytest.fixture
def cli(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db",
                          web={"secret_key_file": str(tmp_path / "web.secret")})
    run = Cli(config)
    run("db", "upgrade")
    run("domain", "add", "d.test")
    run("user", "add", "ann@real.test", "--domain", "d.test")
    run("user", "add", "bob@real.test")
    return run


def _rows(cli):
    from tmail import config as config_mod
    from tmail.db.engine import make_engine
    from tmail.db.schema import api_tokens
    engine = make_engine(config_mod.load(cli.config)["database"]["url"])
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(api_tokens))]
    engine.dispose()
    return rows


def test_add_prints_the_token_once_and_keeps_only_its_hash(cli):
    out = cli.json("token", "add", "--user", "Ann@Real.test", "--name", "bitwarden", "--scope", "create",
                   "--expires", "2099-01-01")
    token = out["token"]
    assert token.startswith("tmail_") and len(token) > 40
    made = out["api_token"]
    assert (made["user"], made["name"], made["scopes"], made["expires_at"]) == (
        "ann@real.test", "bitwarden", ["create"], "2099-01-01T00:00:00Z")
    rows = _rows(cli)
    assert [r["token_hash"] for r in rows] == [token_hash(token)]
    assert all(token not in str(value) for value in rows[0].values())
    listed = cli.json("token", "list")["tokens"]
    assert [t["name"] for t in listed] == ["bitwarden"] and token not in str(listed)
    assert listed[0]["shown"] == token[:10]


def test_scopes_default_to_all(cli):
    assert cli.json("token", "add", "--user", "ann@real.test", "--name", "n")["api_token"]["scopes"] == [
        "create", "read", "change"]


@pytest.mark.parametrize("args, code, message", [
    (["--user", "nobody@real.test", "--name", "x"], defaults.EXIT_ERROR, "no user"),
    (["--user", "ann@real.test", "--name", " "], defaults.EXIT_USAGE, "name"),
    (["--user", "ann@real.test", "--name", "x\ty"], defaults.EXIT_USAGE, "control"),
    (["--user", "ann@real.test", "--name", "x", "--scope", "admin"], defaults.EXIT_USAGE, "admin"),
    (["--user", "ann@real.test", "--name", "x", "--expires", "2001-01-01"], defaults.EXIT_USAGE, "past"),
    (["--user", "ann@real.test", "--name", "x", "--expires", "soon"], defaults.EXIT_USAGE, "soon"),
    (["--user", "not an address", "--name", "x"], defaults.EXIT_USAGE, "address"),
])
def test_bad_input_is_refused_and_writes_nothing(cli, args, code, message):
    result = cli("token", "add", *args, ok=code)
    assert message in result.output + result.stderr
    assert _rows(cli) == []


def test_a_name_is_unique_per_user(cli):
    cli("token", "add", "--user", "ann@real.test", "--name", "phone")
    result = cli("token", "add", "--user", "ann@real.test", "--name", "phone", ok=defaults.EXIT_ERROR)
    assert "already" in result.stderr
    cli("token", "add", "--user", "bob@real.test", "--name", "phone")      # another user's may match
    assert len(_rows(cli)) == 2


def test_revoke_by_name_or_id_is_idempotent(cli):
    first = cli.json("token", "add", "--user", "ann@real.test", "--name", "one")["api_token"]
    cli("token", "add", "--user", "ann@real.test", "--name", "two")
    assert cli.json("token", "revoke", "--user", "ann@real.test", "--id", str(first["id"]))["revoked"] is True
    assert cli.json("token", "revoke", "--user", "ann@real.test", "--id", str(first["id"]))["revoked"] is False
    # bob cannot revoke ann's by its id
    assert cli.json("token", "revoke", "--user", "bob@real.test", "--name", "two")["revoked"] is False
    assert [r["name"] for r in _rows(cli)] == ["two"]
    assert cli.json("token", "revoke", "--user", "ann@real.test", "--name", "two")["revoked"] is True
    assert cli("token", "revoke", "--user", "ann@real.test", ok=defaults.EXIT_USAGE)


def test_removing_the_user_removes_their_tokens(cli):
    cli("token", "add", "--user", "ann@real.test", "--name", "one")
    cli("user", "remove", "ann@real.test")
    assert _rows(cli) == []
