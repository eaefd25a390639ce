"""tmail postfix install | check | uninstall against the private instance."""
import json
import os
import smtplib
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
            "pipe user", "lookup tables", "SRS secret file", "database file", "socket directory",
            "postfix user's groups", "configuration file"} <= names


def failed_checks(mx) -> dict:
    result = mx.tmail("postfix", "check", "--json", as_root=True, check=False)
    return {c["check"]: c["detail"] for c in json.loads(result.stdout)["checks"] if not c["ok"]}


def test_check_finds_what_the_postfix_user_could_reach(mx):
    sockets = f"{mx.queue}/tmail"
    os.chmod(sockets, 0o750)        # no setgid: new sockets would not get tmail-postfix
    os.chmod(mx.config, 0o644)      # world-readable, so the postfix user reads it too
    try:
        failed = failed_checks(mx)
        assert set(failed) == {"socket directory", "configuration file"}, failed
        assert "want tmail:tmail-postfix mode 2750" in failed["socket directory"]
        assert "world-readable" in failed["configuration file"]
        assert "readable by postfix" in failed["configuration file"]
    finally:
        os.chmod(sockets, 0o2750)
        os.chmod(mx.config, 0o640)
    assert failed_checks(mx) == {}


def test_reinjection_listener_passes_mail_unchanged(mx, sink):
    # Settings an admin may well have (Postfix's docs suggest domain.invalid):
    # they make cleanup complete and qualify the headers of mail from
    # "remote" clients, 127.0.0.1 included, after tmail signed it.
    mx.postconf("remote_header_rewrite_domain=domain.invalid", "always_add_missing_headers=yes")
    mx.reload()
    body = (b"From: Alice  <alice>\r\nTo: bob,  someone@real.test (Some One)\r\n"
            b"Subject: as signed\r\n\r\nbody\r\n")
    try:
        with smtplib.SMTP("127.0.0.1", mx.reinject_port, timeout=30) as client:
            client.sendmail("alice@orig.test", ["listener@real.test"], body)
        [msg] = sink.wait_for(lambda m: "listener@real.test" in m.rcpts)
    finally:
        postconf(mx, "-X", "remote_header_rewrite_domain", "always_add_missing_headers")
        mx.reload()
    # Only Postfix's own Received field is prepended; no Message-Id, no Date,
    # no @domain.invalid, the spacing as it was.
    assert msg.data.startswith(b"Received: ") and msg.data.endswith(body), msg.data
    assert msg.data.count(b"\r\n\r\n") == 1 and b"Message-I" not in msg.data.split(body)[0]


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
    master = postconf(mx, "-M")
    assert "tmail/unix" not in master and "tmail-cleanup" not in master
    assert str(mx.reinject_port) not in master
    assert "relayhost = [127.0.0.1]" in unwired  # unrelated settings stay
    check = mx.tmail("postfix", "check", as_root=True, check=False)
    assert check.returncode == 1 and "[FAIL] postfix settings" in check.stdout
    fresh = json.loads(mx.tmail("postfix", "install", "--json", as_root=True).stdout)
    assert fresh["transport"] == "lmtp"      # after an uninstall: a new install, LMTP by default
    mx.tmail("postfix", "install", "--transport", mx.transport, as_root=True)
    assert postconf(mx, "-n") == wired


def test_switching_the_transport_rewires_the_service_and_the_table(mx, sink):
    other = "pipe" if mx.transport == "lmtp" else "lmtp"
    wired, master = postconf(mx, "-n"), postconf(mx, "-M")
    try:
        out = json.loads(mx.tmail("postfix", "install", "--transport", other, "--json", as_root=True).stdout)
        assert out["changed"] and out["transport"] == other
        service = next(line for line in postconf(mx, "-M").splitlines() if line.startswith("tmail "))
        assert service.split()[7] == other
        with open(f"{mx.maps}/transport") as handle:
            table = handle.read()
        assert ("tmail:unix:" in table) == (other == "lmtp")
        assert ("tmail_time_limit" in postconf(mx, "-n")) == (other == "pipe")
        mx.tmail("alias", "add", "switched", "--domain", "d.test", "--to", "switched@real.test")
        with mx.client() as client:
            client.sendmail("a@orig.test", ["switched@d.test"], b"Subject: switched\r\n\r\nhi\r\n")
        sink.wait_for(lambda m: m.rcpts == ["switched@real.test"], what=f"mail through {other}")
        # once more: nothing left to change
        again = json.loads(mx.tmail("postfix", "install", "--json", as_root=True).stdout)
        assert not again["changed"] and again["transport"] == other
    finally:
        mx.tmail("postfix", "install", "--transport", mx.transport, as_root=True)
    assert postconf(mx, "-n") == wired and postconf(mx, "-M") == master


def test_conflicting_setting_is_refused_without_force(mx):
    mx.postconf("tmail_destination_recipient_limit=5")
    try:
        result = mx.tmail("postfix", "install", as_root=True, check=False)
        assert result.returncode == 1 and "tmail_destination_recipient_limit = 5" in result.stderr
        assert "tmail_destination_recipient_limit = 5" in postconf(mx, "-n")
    finally:
        mx.tmail("postfix", "install", "--force", as_root=True)
    assert "tmail_destination_recipient_limit = 1" in postconf(mx, "-n")


def test_adding_a_domain_updates_postfix_maps(mx):
    def transport():
        with open(f"{mx.maps}/transport") as handle:
            return handle.read()
    # lmtp(8) needs the socket as the next hop; pipe(8) needs none
    expected = f"tmail:unix:{mx.queue}/tmail/lmtp.sock" if mx.transport == "lmtp" else "tmail:"
    mx.tmail("domain", "add", "new.test", as_root=True)
    assert f"new.test {expected}\n" in transport()
    out = postconf(mx, "-x", "-h", "transport_maps").strip()
    lookup = subprocess.run(["postmap", "-c", mx.conf, "-q", "new.test", out.split(",")[0].strip()],
                            capture_output=True, text=True, check=False)
    assert lookup.stdout.strip() == expected
    mx.tmail("domain", "remove", "new.test", as_root=True)
    assert "new.test" not in transport()
