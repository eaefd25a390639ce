"""The pure computation of tmail's Postfix changes."""
import pytest

from tmail import config
from tmail import postfix_wiring as wiring


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
    assert new_main["relay_domains"] == "other.test, hash:/etc/postfix/tmail/domains"
    assert new_main["smtpd_recipient_restrictions"].startswith("check_recipient_access hash:")
    assert "permit_mynetworks, reject_unauth_destination" in new_main["smtpd_recipient_restrictions"]
    assert "default_action=accept" in new_main["smtpd_milters"]
    assert new_main["tmail_destination_recipient_limit"] == "1"
    assert "flags=D" in new_master["tmail/unix"] and "no_milters" in new_master["127.0.0.1:10026/inet"]
    assert wiring.install_changes(cfg, new_main, new_master) == []


def test_conflicting_setting_needs_force(cfg):
    main = {"tmail_time_limit": "5s"}
    with pytest.raises(wiring.Conflict, match="tmail_time_limit"):
        wiring.install_changes(cfg, main, {})
    assert any(c.name == "tmail_time_limit" for c in wiring.install_changes(cfg, main, {}, force=True))


def test_uninstall_removes_only_what_install_added(cfg):
    main = {"smtpd_milters": "inet:127.0.0.1:8891", "relay_domains": "other.test"}
    installed = apply(main, {}, wiring.install_changes(cfg, main, {}))
    restored_main, restored_master = apply(*installed, wiring.uninstall_changes(cfg, *installed))
    assert restored_main["smtpd_milters"] == "inet:127.0.0.1:8891"
    assert restored_main["relay_domains"] == "other.test"
    assert "tmail_time_limit" not in restored_main and restored_master == {}


def test_split_list_keeps_braced_groups():
    value = "{ unix:a, default_action=accept }, inet:127.0.0.1:1 unix:b"
    assert wiring.split_list(value) == ["{ unix:a, default_action=accept }", "inet:127.0.0.1:1", "unix:b"]


def test_map_files():
    files = wiring.map_files(["b.test", "a.test"], "srs.test")
    assert files["transport"] == "a.test tmail:\nb.test tmail:\nsrs.test tmail:\n"
    assert files["guard"].splitlines()[0] == "a.test tmail_guard"
