"""tmail's Postfix changes: computed purely, and applied to a real main.cf."""
import grp
import os
import pwd
import shutil
import subprocess

import pytest
from helpers import Cli, write_config

from tmail import config
from tmail import postfix_wiring as wiring

# What `postconf -d` says on Postfix 3.7 for the list parameters tmail adds to.
DEFAULTS = {"smtpd_milters": "", "transport_maps": "", "smtpd_recipient_restrictions": "",
            "smtpd_restriction_classes": "",
            "relay_domains": "${{$compatibility_level} <level {2} ? {$mydestination} : {}}"}


@pytest.fixture
def cfg(tmp_path):
    return config.validate({"postfix": {"map_directory": "/etc/postfix/tmail"},
                            "srs": {"domain": "srs.d.test"}}, "test.toml")


def apply(main, master, changes):
    main, master = dict(main), dict(master)
    for c in changes:
        target = main if c.kind == "main" else master
        if c.new is None:
            target.pop(c.name, None)
        else:
            target[c.name] = c.new
    return main, master


def test_install_adds_to_lists_and_is_idempotent(cfg):
    main = {"smtpd_milters": "inet:127.0.0.1:8891", "relay_domains": "other.test",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination"}
    changes = wiring.install_changes(cfg, main, {})
    new_main, new_master = apply(main, {}, changes)
    assert wiring.split_list(new_main["smtpd_milters"])[1] == "inet:127.0.0.1:8891"
    assert new_main["relay_domains"] == "other.test, regexp:/etc/postfix/tmail/domains.regexp"
    assert new_main["smtpd_recipient_restrictions"].startswith("check_recipient_access hash:")
    assert "permit_mynetworks, reject_unauth_destination" in new_main["smtpd_recipient_restrictions"]
    assert "default_action=accept" in new_main["smtpd_milters"]
    assert new_main["tmail_destination_recipient_limit"] == "1"
    assert "no_milters" in new_master["127.0.0.1:10026/inet"]
    assert wiring.install_changes(cfg, new_main, new_master) == []


def test_install_replaces_the_hash_table_of_relay_domains_and_uninstall_takes_either(cfg):
    """An earlier version listed tmail's domains as a hash: table, which
    Postfix also matched for every subdomain (relayed past the milter)."""
    old = {"relay_domains": "other.test, hash:/etc/postfix/tmail/domains"}
    new_main, _ = apply(old, {}, wiring.install_changes(cfg, old, {}))
    assert new_main["relay_domains"] == "other.test, regexp:/etc/postfix/tmail/domains.regexp"
    restored, _ = apply(old, {}, wiring.uninstall_changes(cfg, old, {}))
    assert restored["relay_domains"] == "other.test"


def test_the_relay_domains_table_matches_exact_names_only():
    table = wiring.map_files(["d.test", "xn--bcher-kva.test"], frozenset({"srs.d.test"}))[wiring.DOMAINS_TABLE]
    assert table == "/^d\\.test$/ OK\n/^srs\\.d\\.test$/ OK\n/^xn--bcher-kva\\.test$/ OK\n"


def test_an_upgrade_replaces_tmails_own_master_entries_and_no_one_elses(cfg):
    """An earlier tmail's pipe (flags=D) and listener are replaced without
    --force; an admin's own service on the listener's address is not."""
    main = {}
    installed_main, installed_master = apply(main, {}, wiring.install_changes(cfg, main, {}, transport="pipe"))
    old = dict(installed_master)
    old["tmail/unix"] = old["tmail/unix"].replace("pipe null_sender=", "pipe flags=D null_sender=")
    old["127.0.0.1:10026/inet"] = old["127.0.0.1:10026/inet"].replace(" -o message_size_limit=0", "")
    changes = wiring.install_changes(cfg, installed_main, old)
    assert {c.name for c in changes} == {"tmail/unix", "127.0.0.1:10026/inet"}
    admins = {**old, "127.0.0.1:10026/inet": "127.0.0.1:10026 inet n - n - - smtpd -o content_filter=amavis"}
    with pytest.raises(wiring.Conflict, match="10026"):
        wiring.install_changes(cfg, installed_main, admins)


def test_conflicting_setting_needs_force(cfg):
    main = {"tmail_time_limit": "5s"}
    with pytest.raises(wiring.Conflict, match="tmail_time_limit"):
        wiring.install_changes(cfg, main, {}, transport="pipe")
    assert any(c.name == "tmail_time_limit"
               for c in wiring.install_changes(cfg, main, {}, transport="pipe", force=True))


def test_uninstall_removes_only_what_install_added(cfg):
    main = {"smtpd_milters": "inet:127.0.0.1:8891", "relay_domains": "other.test"}
    installed = apply(main, {}, wiring.install_changes(cfg, main, {}))
    restored_main, restored_master = apply(*installed, wiring.uninstall_changes(cfg, *installed))
    assert restored_main["smtpd_milters"] == "inet:127.0.0.1:8891"
    assert restored_main["relay_domains"] == "other.test"
    assert "tmail_time_limit" not in restored_main and restored_master == {}


def test_install_keeps_a_default_expression_and_uninstall_returns_to_it(cfg):
    main = dict(DEFAULTS)   # nothing explicit: what the adapter reads via postconf -d
    installed = apply(main, {}, wiring.install_changes(cfg, main, {}))
    assert installed[0]["relay_domains"] == DEFAULTS["relay_domains"] + ", regexp:/etc/postfix/tmail/domains.regexp"
    changes = wiring.uninstall_changes(cfg, *installed, DEFAULTS)
    assert {c.name for c in changes if c.kind == "main" and c.new is None} >= set(DEFAULTS)
    restored, master = apply(*installed, changes)
    assert {k: v for k, v in restored.items() if k not in DEFAULTS} == {} and master == {}
    assert wiring.uninstall_changes(cfg, {**DEFAULTS, **restored}, master, DEFAULTS) == []


def test_uninstall_keeps_explicit_values_that_differ_from_the_default(cfg):
    main = {**DEFAULTS, "relay_domains": "", "smtpd_milters": "inet:127.0.0.1:8891"}
    installed = apply(main, {}, wiring.install_changes(cfg, main, {}))
    restored, _ = apply(*installed, wiring.uninstall_changes(cfg, *installed, DEFAULTS))
    # relay_domains = (empty) differs from its default: it stays, empty
    assert restored["relay_domains"] == "" and restored["smtpd_milters"] == "inet:127.0.0.1:8891"


def test_master_entries_pass_mail_through_unchanged(cfg):
    entries = wiring.master_entries(cfg)
    pipe, listener = entries["tmail/unix"], entries["127.0.0.1:10026/inet"]
    # pipe's D flag bounces a looping message: backscatter to the sender
    assert "flags=" not in pipe and "null_sender=" in pipe.split()
    assert "-o local_header_rewrite_clients=" in listener
    assert "-o cleanup_service_name=tmail-cleanup" in listener
    assert "no_address_mappings" not in listener   # destinations may be virtual aliases
    cleanup = entries[wiring.MASTER_CLEANUP]
    assert cleanup.split()[:8] == ["tmail-cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"]
    assert "-o remote_header_rewrite_domain=" in cleanup and "always_add_missing_headers=no" in cleanup


def test_the_pipe_runs_deliver_py_isolated_and_without_site(cfg, tmp_path):
    """No site module, no venv paths: the file finds its package beside it.
    (A usage error, exit 75, shows it imported; e2e runs it under pipe(8).)"""
    argv = wiring.master_entries(cfg)["tmail/unix"].split("argv=", 1)[1].split()
    interpreter, flags, script = argv[:3]
    assert flags == "-IS" and script.endswith("/tmail/mailpath/deliver.py")
    assert argv[3:] == ["--socket", cfg["daemon"]["deliver_socket"], "${queue_id}", "${sender}",
                        "${recipient}"]
    ran = subprocess.run([interpreter, flags, script, "--socket", str(tmp_path / "none.sock"), "Q", "a@b.test",
                          "c@d.test"], capture_output=True, text=True, cwd=tmp_path)
    assert (ran.returncode, ran.stdout) == (75, "4.3.0 tmail daemon unavailable (No such file or directory); "
                                                "will retry\n")
    named = config.validate({"postfix": {"map_directory": "/etc/postfix/tmail",
                                         "deliver_command": "/usr/local/bin/my-deliver"},
                             "srs": {"domain": "srs.d.test"}}, "test.toml")
    assert "argv=/usr/local/bin/my-deliver --socket" in wiring.master_entries(named)["tmail/unix"]


def test_a_blank_in_the_interpreters_path_falls_back_to_the_console_script(cfg, monkeypatch):
    """pipe(8) splits its argv at blanks: the console script beside the
    interpreter is one word."""
    monkeypatch.setattr(wiring.sys, "executable", "/opt/my venv/bin/python3")
    assert wiring.deliver_command(cfg) == "/opt/my venv/bin/tmail-deliver"


def test_socket_directory_check(tmp_path):
    from tmail.cli.postfix_check import _socket_directory
    try:
        tmail, _ = pwd.getpwnam("tmail"), grp.getgrnam(wiring.SOCKET_GROUP)
    except KeyError:
        pytest.skip("no tmail user or tmail-postfix group (run install.sh --deps-only)")
    sockets = tmp_path / "tmail"
    sockets.mkdir()
    shutil.chown(sockets, "tmail", wiring.SOCKET_GROUP)
    os.chmod(sockets, 0o2750)
    assert _socket_directory(str(sockets), tmail)[0] is True
    shutil.chown(sockets, "tmail", "tmail")       # what an older install made
    os.chmod(sockets, 0o750)
    ok, detail = _socket_directory(str(sockets), tmail)
    assert not ok and detail.endswith("tmail:tmail mode 0750 (want tmail:tmail-postfix mode 2750)")


def test_split_list_keeps_braced_groups():
    value = "{ unix:a, default_action=accept }, inet:127.0.0.1:1 unix:b"
    assert wiring.split_list(value) == ["{ unix:a, default_action=accept }", "inet:127.0.0.1:1", "unix:b"]


def test_map_files():
    files = wiring.map_files(["b.test", "a.test"], frozenset({"srs.test", "reply.test"}))
    assert files["transport"] == "a.test tmail:\nb.test tmail:\nreply.test tmail:\nsrs.test tmail:\n"
    assert files["guard"].splitlines()[0] == "a.test tmail_guard"


# -- through a real postconf(1) on a copy of Postfix's pristine main.cf -------

def _pristine(directory):
    directory.mkdir()
    for name in ("main.cf", "master.cf"):
        shutil.copy(f"/usr/share/postfix/{name}.dist", directory / name)
    # .dist leaves these empty for the packager; postmap refuses to run so.
    _postconf(directory, "-X", "debugger_command", "sendmail_path", "newaliases_path", "mailq_path",
              "html_directory", "manpage_directory", "sample_directory", "readme_directory")
    _postconf(directory, "-e", "setgid_group=postdrop")


def _postconf(directory, *args):
    return subprocess.run(["postconf", "-c", str(directory), *args], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def postfix_dir(tmp_path):
    if not os.path.exists("/usr/share/postfix/main.cf.dist"):
        pytest.skip("Postfix is not installed")
    return tmp_path / "postfix"


@pytest.mark.parametrize("explicit", [[], ["relay_domains=", "smtpd_milters=inet:127.0.0.1:8891",
                                          "smtpd_recipient_restrictions=permit_mynetworks, reject"]])
def test_install_then_uninstall_leaves_postfix_as_it_was(tmp_path, postfix_dir, explicit):
    _pristine(postfix_dir)
    if explicit:
        _postconf(postfix_dir, "-e", *explicit)
    original = {name: (postfix_dir / name).read_bytes() for name in ("main.cf", "master.cf")}
    cli = Cli(write_config(tmp_path, f"sqlite:///{tmp_path}/tmail.db", postfix={
        "config_directory": str(postfix_dir), "map_directory": str(tmp_path / "maps")}))
    cli("db", "upgrade")
    assert cli.json("postfix", "install", "--no-reload")["changed"] is True
    relay = _postconf(postfix_dir, "-n", "-h", "relay_domains").strip()
    if not explicit:   # the default expression, not what it expands to today
        assert relay.startswith("${{$compatibility_level}") and relay.endswith(f"{tmp_path}/maps/domains.regexp")
    assert cli.json("postfix", "install", "--no-reload")["changed"] is False

    dry = cli.json("postfix", "uninstall", "--dry-run", "--no-reload")
    assert any(c.startswith("remove main tmail_guard") for c in dry["changes"])
    assert (postfix_dir / "main.cf").read_bytes() != original["main.cf"]
    assert cli.json("postfix", "uninstall", "--no-reload")["changed"] is True
    for name in ("main.cf", "master.cf"):
        assert (postfix_dir / name).read_bytes() == original[name], name
    assert cli.json("postfix", "uninstall", "--no-reload")["changed"] is False


def test_a_new_install_is_lmtp_and_an_installed_pipe_stays_a_pipe(cfg):
    main, master = apply({}, {}, wiring.install_changes(cfg, {}, {}))
    assert wiring.transport_of(master) == "lmtp" and "tmail_time_limit" not in main
    assert master[wiring.MASTER_PIPE].split()[7] == "lmtp"
    main, master = apply({}, {}, wiring.install_changes(cfg, {}, {}, transport="pipe"))
    assert wiring.install_changes(cfg, main, master) == []          # an upgrade keeps the pipe
    assert wiring.transport_of(master) == "pipe"


def test_lmtp_transport_is_read_from_master_cf_and_switches_both_ways(cfg):
    main, master = apply({}, {}, wiring.install_changes(cfg, {}, {}, transport="pipe"))
    assert wiring.transport_of(master) == "pipe" and main["tmail_time_limit"] == "900s"
    main, master = apply(main, master, wiring.install_changes(cfg, main, master, transport="lmtp"))
    service = master[wiring.MASTER_PIPE].split()
    assert service[7] == "lmtp" and "lmtp_send_xforward_command=yes" in master[wiring.MASTER_PIPE]
    assert wiring.transport_of(master) == "lmtp" and "tmail_time_limit" not in main
    assert wiring.install_changes(cfg, main, master) == []          # no --transport: the installed one stays
    main, master = apply(main, master, wiring.install_changes(cfg, main, master, transport="pipe"))
    assert wiring.transport_of(master) == "pipe" and main["tmail_time_limit"] == "900s"
    assert wiring.uninstall_changes(cfg, *apply(main, master, wiring.install_changes(
        cfg, main, master, transport="lmtp"))) != []


def test_the_transport_table_names_the_lmtp_socket(cfg):
    hop = wiring.nexthop(cfg, "lmtp")
    assert hop == "unix:/var/spool/postfix/tmail/lmtp.sock" and wiring.nexthop(cfg, "pipe") == ""
    assert wiring.map_files(["d.test"], frozenset({"srs.d.test"}), hop)["transport"] == (
        f"d.test tmail:{hop}\nsrs.d.test tmail:{hop}\n")


def test_two_processes_writing_the_tables_at_once_never_fail(tmp_path, postfix_dir):
    """The follower and a CLI command (`domain add`) write the same tables
    at once: neither may fail, and each file left is whole and one of theirs."""
    from tmail.cli.postfix import Postconf, write_tables
    _pristine(postfix_dir)
    cfg = config.validate({"postfix": {"map_directory": str(tmp_path / "maps"),
                                       "config_directory": str(postfix_dir)},
                           "srs": {"domain": "srs.d.test"}}, "test.toml")
    sets = [["a.test", "srs.d.test"], ["a.test", "b.test", "srs.d.test"]]
    children = []
    for which in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(30):
                    write_tables(cfg, sets[(i + which) % 2], Postconf(str(postfix_dir)), "lmtp")
            except BaseException:
                os._exit(1)
            os._exit(0)
        children.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children] == [0, 0]
    hop = wiring.nexthop(cfg, "lmtp")
    for name in wiring.map_files(sets[0], nexthop=hop):       # each file whole (files rename one by one)
        assert (tmp_path / "maps" / name).read_text() in [wiring.map_files(s, nexthop=hop)[name] for s in sets]
    assert not list((tmp_path / "maps").glob("*.tmp*"))
