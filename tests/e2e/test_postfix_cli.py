"""tmail postfix install | check | uninstall against the private instance."""
import json
import subprocess


def postconf(mx, *args):
    return subprocess.run(["postconf", "-c", mx.conf, *args], capture_output=True, text=True,
                          check=True).stdout


def test_check_reports_everything_ok(mx):
    result = mx.tmail("postfix", "check", "--json", as_root=True, check=False)
    out = json.loads(result.stdout)
    assert result.returncode == 0, [c for c in out["checks"] if not c["ok"]]
    names = {c["check"] for c in out["checks"]}
    assert {"postfix settings", "milter socket", "delivery socket", "reinjection listener",
            "pipe user", "lookup tables", "SRS secret file", "database file"} <= names


def test_install_again_changes_nothing_and_dry_run_writes_nothing(mx):
    before = postconf(mx, "-n") + postconf(mx, "-M")
    again = json.loads(mx.tmail("postfix", "install", "--json", as_root=True).stdout)
    assert again["changed"] is False and again["changes"] == []
    assert postconf(mx, "-n") + postconf(mx, "-M") == before


def test_uninstall_restores_then_install_rewires(mx):
    wired = postconf(mx, "-n")
    dry = json.loads(mx.tmail("postfix", "uninstall", "--dry-run", "--json", as_root=True).stdout)
    assert dry["changes"] and postconf(mx, "-n") == wired
    mx.tmail("postfix", "uninstall", "--no-reload", as_root=True)
    unwired = postconf(mx, "-n")
    for trace in ("tmail_", "milter.sock", f"{mx.maps}/", "policy.sock"):
        assert trace not in unwired
    assert "tmail/unix" not in postconf(mx, "-M") and str(mx.reinject_port) not in postconf(mx, "-M")
    assert "relayhost = [127.0.0.1]" in unwired  # unrelated settings stay
    check = mx.tmail("postfix", "check", as_root=True, check=False)
    assert check.returncode == 1 and "[FAIL] postfix settings" in check.stdout
    mx.tmail("postfix", "install", as_root=True)
    assert postconf(mx, "-n") == wired


def test_conflicting_setting_is_refused_without_force(mx):
    mx.postconf("tmail_time_limit=5s")
    try:
        result = mx.tmail("postfix", "install", as_root=True, check=False)
        assert result.returncode == 1 and "tmail_time_limit = 5s" in result.stderr
        assert "tmail_time_limit = 5s" in postconf(mx, "-n")
    finally:
        mx.tmail("postfix", "install", "--force", as_root=True)
    assert "tmail_time_limit = 900s" in postconf(mx, "-n")


def test_adding_a_domain_updates_postfix_maps(mx):
    mx.tmail("domain", "add", "new.test", as_root=True)
    assert "new.test tmail:" in open(f"{mx.maps}/transport").read()
    out = postconf(mx, "-x", "-h", "transport_maps").strip()
    lookup = subprocess.run(["postmap", "-c", mx.conf, "-q", "new.test", out.split(",")[0].strip()],
                            capture_output=True, text=True)
    assert lookup.stdout.strip() == "tmail:"
    mx.tmail("domain", "remove", "new.test", as_root=True)
    assert "new.test" not in open(f"{mx.maps}/transport").read()
