"""The CLI through click's runner against a real SQLite file."""
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from helpers import Cli, write_config

from tmail import defaults


def snapshot(cli):
    """What is stored (seconds_left is a clock's reading, not state)."""
    aliases = cli.json("alias", "list")
    for alias in aliases["aliases"]:
        alias.pop("seconds_left")
    return aliases, cli.json("domain", "list")


def test_random_alias_with_ttl_prints_address_and_expiry(cli):
    out = cli.json("alias", "add", "--random", "--domain", "d.test", "--to", "me@x.test", "--ttl", "7d")
    alias = out["alias"]
    assert re.fullmatch(r"[a-z2-9]{12}@d\.test", alias["address"])
    expires = datetime.fromisoformat(alias["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert alias["state"] == "active" and alias["destinations"] == ["me@x.test"]


def test_readable_random_alias(cli):
    out = cli.json("alias", "add", "--random", "--style", "words", "--domain", "d.test", "--to", "me@x.test")
    assert re.fullmatch(r"[a-z]+\.[a-z]+\.[a-z]+\d{4}@d\.test", out["alias"]["address"])


@pytest.mark.parametrize("args,fragment", [
    (["alias", "add", "x\r\ny", "--domain", "d.test", "--to", "me@x.test"], "control character"),
    (["alias", "add", "ok", "--domain", "a" * 300, "--to", "me@x.test"], "at most 255"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--ttl", "garbage"], "not a duration"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test\nBcc: x@y.test"], "control character"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "loop@d.test"], "loop"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "x@srs.fwd.test"], "SRS or reply domain"),
    (["alias", "add", "postmaster", "--domain", "d.test", "--to", "me@x.test"], "role address"),
    (["alias", "add", "Abuse", "--domain", "d.test", "--to", "me@x.test"], "role address"),
    # ſ (long s) case-folds to s: the milter would look it up as postmaster
    (["alias", "add", "po\u017ftmaster", "--domain", "d.test", "--to", "me@x.test"], "role address"),
    # routing syntax Postfix may rewrite onto tmail's own addresses
    (["alias", "add", "ok", "--domain", "d.test", "--to", "shop%d.test@x.test"], "route mail elsewhere"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "d.test!shop@x.test"], "route mail elsewhere"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--ttl", "999999w"], "longer than 100 years"),
    # what the 32-bit columns cannot hold, and a name that folds past 64 characters
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--idle", "5200w"], "68 years"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--max-messages", "2147483648"],
     "2147483647"),
    (["alias", "add", "\u0390" * 32, "--domain", "d.test", "--to", "me@x.test"], "case-folded"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--expires", "9999-12-31T23:00-01:00"],
     "9999"),
    (["alias", "add", "a+b", "--domain", "d.test", "--to", "me@x.test"], "delimiter"),
    (["alias", "add", "SRS0=x", "--domain", "d.test", "--to", "me@x.test"], "SRS"),
    (["alias", "add", "ok", "--domain", "nothere.test", "--to", "me@x.test"], "not a tmail domain"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--ttl", "1d", "--expires", "2030-01-01"],
     "not both"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--max-messages", "0"], "0"),
    (["alias", "add", "ok", "--domain", "d.test", "--to", "me@x.test", "--note", "a\x00b"], "control character"),
])
def test_bad_input_is_refused_and_writes_nothing(cli, args, fragment):
    before = snapshot(cli)
    result = cli(*args, ok=None)
    assert result.exit_code != 0
    assert fragment in result.output + (result.stderr or "")
    assert snapshot(cli) == before


def test_unknown_configuration_key_is_a_config_error(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/t.db", aliases={"recipient_delimeter": "-"})
    result = Cli(config)("domain", "list", ok=defaults.EXIT_CONFIG)
    assert "recipient_delimeter" in result.stderr and config in result.stderr
    assert "did you mean 'recipient_delimiter'" in result.stderr


@pytest.mark.parametrize("body,fragment", [
    ("[database]\nbusy_timeout_ms = \"soon\"\n", "expected an integer"),
    ("[srs]\nmax_age_days = 0\n", "from 1 to 1000"),
    ("[aliases]\nrandom_style = \"emoji\"\n", "one of token, words"),
    ("[nosuch]\n", "unknown section"),
    ("not toml ===\n", "not valid TOML"),
    ("[dns]\nservers = \"resolver.example:53\"\n", "expected IP addresses"),
    ("[dns]\nservers = \"127.0.0.1:99999\"\n", "expected IP addresses"),
    ("[dns]\ncache_entries = -1\n", "from 0 to 1000000"),
    ("[daemon]\nlmtp_processes = 65\n", "from 0 to 64"),
    ("[dkim]\nauthserv_id = \"bad id;\"\n", "expected a host or domain name"),
])
def test_bad_configuration_values(tmp_path, body, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    result = Cli(str(config))("domain", "list", ok=defaults.EXIT_CONFIG)
    assert fragment in result.stderr and "bad.toml" in result.stderr


def test_config_show_masks_the_password(tmp_path):
    config = write_config(tmp_path, "postgresql://tmail:hunter2@db.test/tmail")
    out = Cli(config).json("config", "show")
    assert "hunter2" not in json.dumps(out)
    assert out["config"]["database"]["url"] == "postgresql://tmail:***@db.test/tmail"
    assert out["config"]["srs"]["max_age_days"] == 21  # defaults are shown too


def test_ensure_reports_a_change_then_none(cli):
    args = ["alias", "ensure", "ansible@d.test", "--to", "me@x.test", "--ttl", "7d", "--max-messages", "3"]
    assert cli.json(*args)["changed"] is True
    assert cli.json(*args)["changed"] is False
    changed = cli.json("alias", "ensure", "ansible@d.test", "--to", "me@x.test", "--to", "b@x.test")
    assert changed["changed"] is True and changed["alias"]["max_messages"] == 3
    assert cli.json("alias", "ensure", "ansible@d.test", "--absent")["changed"] is True
    assert cli.json("alias", "ensure", "ansible@d.test", "--absent")["changed"] is False


def test_alias_lifecycle_commands(cli):
    cli("alias", "add", "shop", "--domain", "d.test", "--to", "me@x.test", "--ttl", "1d")
    assert cli.json("alias", "disable", "shop@d.test")["alias"]["state"] == "disabled"
    assert cli.json("resolve", "shop@d.test")["verdict"] == "disabled"
    assert cli.json("alias", "enable", "SHOP@d.test")["alias"]["state"] == "active"
    extended = cli.json("alias", "extend", "shop@d.test", "--by", "2d")["alias"]
    assert 2 * 86400 < extended["seconds_left"] <= 3 * 86400
    cli("alias", "block-sender", "shop@d.test", "@Spam.test")
    blocked = cli.json("resolve", "shop@d.test", "--from", "x@spam.test")
    assert blocked["verdict"] == "sender-blocked" and blocked["reply"]["status"] == "5.7.1"
    cli("alias", "unblock-sender", "shop@d.test", "@spam.test")
    assert cli.json("resolve", "shop@d.test", "--from", "x@spam.test")["verdict"] == "forward"
    assert cli.json("alias", "show", "shop@d.test")["alias"]["blocked_senders"] == []
    cli("alias", "extend", "shop@d.test", "--until", "9999-12-30")
    past_9999 = cli("alias", "extend", "shop@d.test", "--by", "52w", ok=None)
    assert past_9999.exit_code != 0 and "past the year 9999" in past_9999.output
    cli("alias", "remove", "shop@d.test")
    assert cli.json("resolve", "shop@d.test")["verdict"] == "unknown"
    assert cli("alias", "show", "shop@d.test", ok=defaults.EXIT_ERROR)


def test_resolve_explains_each_verdict(cli):
    cli("alias", "add", "old", "--domain", "d.test", "--to", "me@x.test", "--expires", "2020-01-01")
    out = cli.json("resolve", "old+tag@d.test")
    assert out["verdict"] == "expired" and "expired on 2020-01-01" in out["reason"]
    assert out["reply"] == {"code": "550", "status": "5.2.1",
                            "text": "Recipient address rejected: this address has expired"}
    assert "answer: 550 5.2.1" in cli("resolve", "old@d.test").output
    assert cli.json("resolve", "x@elsewhere.test")["verdict"] == "not-ours"
    assert cli.json("resolve", "postmaster@d.test")["destinations"] == ["root@localhost"]


def test_domain_commands(cli):
    assert cli.json("domain", "add", "Bücher.test")["domain"] == "xn--bcher-kva.test"
    assert cli.json("domain", "add", "xn--bcher-kva.test")["changed"] is False
    cli("alias", "add", "a", "--domain", "d.test", "--to", "me@x.test")
    result = cli("domain", "remove", "d.test", ok=defaults.EXIT_ERROR)
    assert "still has 1 alias" in result.stderr
    assert cli.json("domain", "remove", "d.test", "--force")["aliases_removed"] == 1
    assert [d["domain"] for d in cli.json("domain", "list")["domains"]] == ["xn--bcher-kva.test"]
    assert "SRS or reply domain" in cli("domain", "add", "srs.fwd.test", ok=1).stderr


def test_import_is_idempotent_and_all_or_nothing(cli, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(line) for line in [
        {"address": "one@d.test", "to": "me@x.test", "ttl": "7d"},
        {"address": "two@d.test", "to": ["me@x.test", "b@y.test"], "max_messages": 3,
         "blocked_senders": ["@spam.test"]},
    ]) + "\n")
    first = cli.json("alias", "import", str(good))
    assert (first["created"], first["changed"]) == (2, True)
    again = cli.json("alias", "import", str(good))
    assert (again["created"], again["unchanged"], again["updated"], again["changed"]) == (0, 2, 0, False)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"address": "three@d.test", "to": "me@x.test"}) + "\n"
                   + json.dumps({"address": "four@d.test", "to": "me@x.test", "ttl": "soon"}) + "\n"
                   + json.dumps({"address": "five@d.test", "to": "me@x.test", "colour": "red"}) + "\n")
    before = snapshot(cli)
    result = cli("alias", "import", str(bad), ok=defaults.EXIT_USAGE)
    assert "line 2" in result.stderr and "line 3" in result.stderr and "colour" in result.stderr
    assert snapshot(cli) == before
    looped = tmp_path / "loop.jsonl"
    looped.write_text(json.dumps({"address": "six@d.test", "to": "x@d.test"}) + "\n")
    assert "loop" in cli("alias", "import", str(looped), ok=defaults.EXIT_USAGE).stderr
    assert snapshot(cli) == before


def test_list_filters_and_human_output(cli):
    cli("alias", "add", "a", "--domain", "d.test", "--to", "me@x.test")
    cli("alias", "add", "b", "--domain", "d.test", "--to", "you@x.test", "--expires", "2020-01-01")
    assert [a["address"] for a in cli.json("alias", "list", "--state", "expired")["aliases"]] == ["b@d.test"]
    assert [a["address"] for a in cli.json("alias", "list", "--destination", "me@x.test")["aliases"]] == ["a@d.test"]
    assert "a@d.test" in cli("alias", "list").output


def test_init_creates_private_files_and_is_idempotent(tmp_path):
    config = tmp_path / "etc" / "tmail.toml"
    run = Cli(str(config))
    run("init", "--srs-domain", "srs.d.test", "--database-url", f"sqlite:///{tmp_path}/lib/tmail.db",
        "--secret-file", str(tmp_path / "etc" / "srs.secret"))
    assert os.stat(tmp_path / "etc" / "srs.secret").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "lib" / "tmail.db").st_mode & 0o777 == 0o600
    assert os.stat(config).st_mode & 0o007 == 0
    second = run.json("init")
    assert second["changed"] is False and second["created"] == []
    assert run.json("db", "upgrade")["changed"] is False
    assert run.json("db", "status")["up_to_date"] is True


def test_init_outside_etc_keeps_its_files_beside_the_configuration(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = Cli(str(scratch / "tmail.toml"))
    created = run.json("init", "--srs-domain", "srs.d.test")["created"]
    assert created == [str(scratch / name) for name in ("tmail.toml", "srs.secret", "web.secret")]
    assert os.stat(scratch / "web.secret").st_mode & 0o777 == 0o600
    assert os.stat(scratch / "tmail.db").st_mode & 0o777 == 0o600
    shown = run.json("config", "show")["config"]   # written into the file, not implied
    text = (scratch / "tmail.toml").read_text()
    assert shown["srs"]["secret_file"] == str(scratch / "srs.secret") and "secret_file" in text
    assert shown["database"]["url"] == f"sqlite:///{scratch}/tmail.db" and "tmail.db" in text
    assert shown["dkim"]["key_directory"] == str(scratch / "dkim")


def test_init_at_the_default_place_keeps_the_default_paths():
    from tmail.cli.setup import files_beside
    assert files_beside(defaults.CONFIG_PATH) == {}
    assert files_beside("/srv/try/tmail.toml")["srs"] == {"secret_file": "/srv/try/srs.secret"}


def test_database_unreachable_is_a_clear_error(tmp_path):
    config = write_config(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = Cli(config)("domain", "list", ok=defaults.EXIT_DATABASE)
    assert "database error" in result.stderr


def test_domain_defaults_apply_to_new_aliases(cli):
    out = cli.json("domain", "set", "d.test", "--default-ttl", "3d", "--on-expiry", "drop",
                   "--random-style", "words", "--warn-before", "1d")
    assert out["changed"] is True and out["settings"]["default_ttl_seconds"] == 3 * 86400
    assert cli.json("domain", "set", "d.test", "--default-ttl", "3d")["changed"] is False
    alias = cli.json("alias", "add", "--random", "--domain", "d.test", "--to", "me@x.test")["alias"]
    assert re.fullmatch(r"[a-z]+\.[a-z]+\.[a-z]+\d{4}@d\.test", alias["address"])
    assert 3 * 86400 - 60 < alias["seconds_left"] <= 3 * 86400 and alias["on_expiry"] == "drop"
    explicit = cli.json("alias", "add", "x", "--domain", "d.test", "--to", "me@x.test",
                        "--expires", "2030-01-01", "--on-expiry", "reject")["alias"]
    assert explicit["expires_at"] == "2030-01-01T00:00:00Z" and explicit["on_expiry"] == "reject"
    cleared = cli.json("domain", "set", "d.test", "--default-ttl", "none")["settings"]
    assert cleared["default_ttl_seconds"] is None and cleared["warn_before_seconds"] == 86400
    assert "ttl" in cli("domain", "set", "d.test", "--default-ttl", "soon", ok=2).output


def test_removed_address_is_quarantined(cli, tmp_path):
    cli("alias", "add", "gone", "--domain", "d.test", "--to", "me@x.test")
    cli("alias", "remove", "gone@d.test")
    for args in (["alias", "add", "gone", "--domain", "d.test", "--to", "other@x.test"],
                 ["alias", "ensure", "GONE@d.test", "--to", "other@x.test"]):
        result = cli(*args, ok=1)
        assert "quarantined until" in result.stderr
    lines = tmp_path / "again.jsonl"
    lines.write_text(json.dumps({"address": "gone@d.test", "to": "other@x.test"}) + "\n")
    assert "quarantined" in cli("alias", "import", str(lines), ok=1).stderr
    assert cli.json("resolve", "gone@d.test")["verdict"] == "unknown"


def test_domain_remove_force_quarantines_its_aliases(cli):
    cli("alias", "add", "gone", "--domain", "d.test", "--to", "me@x.test")
    cli("alias", "add", "--random", "--domain", "d.test", "--to", "me@x.test")
    assert cli.json("domain", "remove", "d.test", "--force")["aliases_removed"] == 2
    cli("domain", "add", "d.test")
    assert "quarantined until" in cli("alias", "add", "gone", "--domain", "d.test",
                                      "--to", "other@x.test", ok=1).stderr
    assert "quarantined" in cli("alias", "ensure", "gone@d.test", "--to", "other@x.test", ok=1).stderr


def test_purge_removes_long_expired_aliases_only(cli):
    cli("alias", "add", "ancient", "--domain", "d.test", "--to", "me@x.test", "--expires", "2020-01-01")
    cli("alias", "add", "recent", "--domain", "d.test", "--to", "me@x.test", "--ttl", "1s")
    cli("alias", "add", "live", "--domain", "d.test", "--to", "me@x.test")
    dry = cli.json("purge", "--dry-run")
    assert dry["removed"] == ["ancient@d.test"] and dry["changed"] is False
    assert cli.json("alias", "show", "ancient@d.test")["alias"]["state"] == "expired"
    assert cli.json("purge")["removed"] == ["ancient@d.test"]
    assert cli.json("purge")["removed"] == []
    left = [a["address"] for a in cli.json("alias", "list")["aliases"]]
    assert left == ["live@d.test", "recent@d.test"]
    assert "quarantined" in cli("alias", "add", "ancient", "--domain", "d.test", "--to", "me@x.test", ok=1).stderr


def test_list_expiring_within(cli):
    cli("alias", "add", "soon", "--domain", "d.test", "--to", "me@x.test", "--ttl", "2d")
    cli("alias", "add", "later", "--domain", "d.test", "--to", "me@x.test", "--ttl", "10d")
    cli("alias", "add", "never", "--domain", "d.test", "--to", "me@x.test")
    out = cli.json("alias", "list", "--expiring-within", "3d")
    assert [a["address"] for a in out["aliases"]] == ["soon@d.test"]


def test_stats_json_and_prometheus_file(cli, tmp_path):
    cli("alias", "add", "a", "--domain", "d.test", "--to", "me@x.test")
    cli("alias", "add", "b", "--domain", "d.test", "--to", "me@x.test", "--expires", "2020-01-01")
    cli("alias", "add", "c", "--domain", "d.test", "--to", "me@x.test")
    cli("alias", "disable", "c@d.test")
    [row] = cli.json("stats")["domains"]
    assert row["aliases"] == {"active": 1, "expired": 1, "disabled": 1}
    prom = tmp_path / "tmail.prom"
    cli("stats", "--prometheus", str(prom))
    assert 'tmail_aliases{domain="d.test",state="disabled"} 1' in prom.read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_notify_dry_run_lists_due_warnings(cli):
    cli("domain", "set", "d.test", "--warn-before", "2d")
    cli("alias", "add", "soon", "--domain", "d.test", "--to", "me@x.test", "--ttl", "1d")
    cli("alias", "add", "later", "--domain", "d.test", "--to", "me@x.test", "--ttl", "5d")
    assert cli.json("notify", "--dry-run")["due"] == ["soon@d.test"]


def test_bad_lifecycle_configuration(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/t.db", lifecycle={"quarantine": "forever"})
    result = Cli(config)("purge", ok=defaults.EXIT_CONFIG)
    assert "[lifecycle] quarantine" in result.stderr and "not a duration" in result.stderr


def test_errors_in_json_mode_are_json_too(cli):
    result = cli("alias", "show", "nobody@d.test", "--json", ok=defaults.EXIT_ERROR)
    assert json.loads(result.stdout) == {"ok": False, "error": "no alias nobody@d.test"}
    result = cli("alias", "add", "--domain", "d.test", "--to", "me@x.test", "--json", ok=defaults.EXIT_USAGE)
    assert json.loads(result.stdout)["ok"] is False and "LOCAL" in result.stderr


def test_from_rewrite_per_domain_and_per_alias(cli):
    assert cli.json("domain", "show", "d.test")["settings"]["from_rewrite"] == "when-needed"
    # the default, set explicitly, is no change (Ansible's check mode predicts from `show`)
    assert cli.json("domain", "set", "d.test", "--from-rewrite", "when-needed")["changed"] is False
    assert cli.json("domain", "set", "d.test", "--from-rewrite", "never")["settings"]["from_rewrite"] == "never"
    added = cli.json("alias", "add", "fr", "--domain", "d.test", "--to", "me@x.test", "--from-rewrite", "always")
    assert added["alias"]["from_rewrite"] == "always"
    ensure = ("alias", "ensure", "fr@d.test", "--to", "me@x.test", "--from-rewrite", "domain")
    assert cli.json(*ensure)["changed"] is True
    assert cli.json(*ensure)["changed"] is False
    assert cli.json("alias", "show", "fr@d.test")["alias"]["from_rewrite"] is None
    cli("domain", "set", "d.test", "--from-rewrite", "sometimes", ok=2)


@pytest.mark.parametrize("broken,code,says", [
    ("secret", defaults.EXIT_CONFIG, "the SRS secret file holds no secret"),
    ("database", defaults.EXIT_DATABASE, "database error"),
])
def test_daemon_logs_why_it_cannot_start(tmp_path, broken, code, says):
    # Where its log goes, not only to a stderr that nohup or a service
    # manager may have thrown away.
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db")
    if broken == "secret":
        (tmp_path / "srs.secret").write_text("")
    log = tmp_path / "tmail.log"
    tmail = os.path.join(os.path.dirname(sys.executable), "tmail")
    result = subprocess.run([tmail, "--config", config, "daemon", "--log-file", str(log)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == code, result.stderr
    [line] = [x for x in log.read_text().splitlines() if "ERROR" in x]
    assert "tmail daemon cannot run:" in line and says in line
    assert says in result.stderr


def test_list_streams_the_same_json_and_text_as_one_object(cli):
    from tmail import jsontext
    for local in ("b", "a", "c"):
        cli("alias", "add", local, "--domain", "d.test", "--to", "me@x.test")
    out = cli("alias", "list", "--json").stdout
    parsed = json.loads(out)
    assert out.strip() == jsontext.dumps(parsed)                  # byte for byte what emit() writes
    assert [a["address"] for a in parsed["aliases"]] == ["a@d.test", "b@d.test", "c@d.test"]
    assert cli("alias", "list", "--domain", "d.test", "--state", "disabled", "--json").stdout.strip() == (
        '{"aliases": [], "ok": true}')
    assert cli("alias", "list", "--state", "disabled").stdout.strip() == "no aliases"
    assert cli("alias", "list").stdout.splitlines()[0].startswith("a@d.test")


def test_domain_ensure_adds_sets_and_removes_and_says_when_nothing_changed(cli):
    first = cli.json("domain", "ensure", "e.test", "--default-ttl", "7d")
    assert first["changed"] is True and first["settings"]["default_ttl_seconds"] == 7 * 86400
    assert cli.json("domain", "ensure", "e.test", "--default-ttl", "7d")["changed"] is False
    assert cli.json("domain", "ensure", "e.test")["changed"] is False
    assert cli.json("domain", "ensure", "e.test", "--shared")["changed"] is True
    cli("alias", "add", "x", "--domain", "e.test", "--to", "me@x.test")
    refused = cli.json("domain", "ensure", "e.test", "--absent", ok=1)
    assert "still has 1 alias" in refused["error"]
    gone = cli.json("domain", "ensure", "e.test", "--absent", "--force")
    assert (gone["changed"], gone["aliases_removed"]) == (True, 1)
    assert cli.json("domain", "ensure", "e.test", "--absent")["changed"] is False


def test_dry_runs_report_what_a_real_run_would_and_write_nothing(cli):
    def domains():
        return [d["domain"] for d in cli.json("domain", "list")["domains"]]
    for args in (("domain", "ensure", "f.test", "--default-idle", "30d"),
                 ("domain", "ensure", "d.test", "--absent")):
        before = domains()
        assert cli.json(*args, "--dry-run") == {**cli.json(*args, "--dry-run"), "changed": True, "dry_run": True}
        assert domains() == before
    ensure = ("alias", "ensure", "new@d.test", "--to", "me@x.test", "--max-messages", "5")
    predicted = cli.json(*ensure, "--dry-run")
    assert predicted["changed"] is True and predicted["dry_run"] is True
    cli("alias", "show", "new@d.test", ok=1)
    done = cli.json(*ensure)
    assert done["changed"] is True and done["alias"]["max_messages"] == predicted["alias"]["max_messages"] == 5
    assert cli.json(*ensure, "--dry-run")["changed"] is False
    assert cli.json(*ensure[:-1], "6", "--dry-run")["changed"] is True
    assert cli.json("alias", "show", "new@d.test")["alias"]["max_messages"] == 5
    assert cli.json("alias", "ensure", "new@d.test", "--absent", "--dry-run")["changed"] is True
    cli("alias", "show", "new@d.test")
