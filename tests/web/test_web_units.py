"""The pure pieces of the web app: form parsing, next=, TOTP steps, which
proxy is trusted; and how the app is built (wsgi, secret key)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest

from tmail.config import ConfigError
from tmail.web import behind_local_proxy, forms, read_secret, totp
from tmail.web.access import safe_next

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_settings_from_a_form():
    found = forms.settings({"ttl": " 7d ", "max_messages": "3", "idle": "", "on_expiry": "drop", "note": "x"}, NOW)
    assert found.ttl == timedelta(days=7) and found.max_messages == 3 and found.idle is None
    assert found.on_expiry == "drop" and found.note == "x"
    assert forms.settings({}, NOW).ttl is None


@pytest.mark.parametrize("form, message", [
    ({"ttl": "7 days"}, "not a duration"), ({"ttl": "0d"}, "zero"), ({"max_messages": "0"}, "from 1 to"),
    ({"max_messages": "2147483648"}, "from 1 to"),
    ({"max_messages": "-3"}, "from 1 to"), ({"max_messages": "2.5"}, "whole number"),
    ({"on_expiry": "bounce"}, "choose one of"), ({"expires": "yesterday"}, "not a date"),
    ({"expires": "2026-11-30"}, "in the past"), ({"note": "a\nb"}, "control character"),
    ({"note": "x" * 501}, "longer than 500"), ({"ttl": "1d", "expires": "2027-01-01"}, "not both"),
    # digits that are not ASCII digits ("²".isdigit() is true; int() refuses it, int("٣") takes it)
    ({"max_messages": "²"}, "whole number"), ({"max_messages": "٣"}, "whole number"), ({"ttl": "٣d"}, "not a duration"),
    ({"ttl": "999999w"}, "longer than 100 years"),
])
def test_settings_refused(form, message):
    with pytest.raises(forms.FormError, match=message):
        forms.settings(form, NOW)


def test_extension():
    later = NOW + timedelta(days=3)
    assert forms.extension({"by": "2d"}, NOW).expiry(later, NOW) == later + timedelta(days=2)
    assert forms.extension({"by": "2d"}, NOW).expiry(NOW - timedelta(days=9), NOW) == NOW + timedelta(days=2)
    assert forms.extension({"by": "2d"}, NOW).expiry(None, NOW) == NOW + timedelta(days=2)
    assert forms.extension({"max_messages": "9"}, NOW).expiry(later, NOW) == later
    with pytest.raises(forms.FormError):
        forms.extension({}, NOW)
    near_the_end = datetime(9999, 12, 1, tzinfo=timezone.utc)
    with pytest.raises(forms.FormError, match="past the year 9999"):
        forms.extension({"by": "52w"}, NOW).expiry(near_the_end, NOW)


def test_page_numbers():
    assert [forms.page(v) for v in (None, "", "x", "0", "-1", "3", "99999999999", "²", "٣", "9" * 5000)] == \
        [1, 1, 1, 1, 1, 3, 1_000_000, 1, 1, 1_000_000]


@pytest.mark.parametrize("value, expected", [
    ("/addresses/3", "/addresses/3"), ("/addresses?q=a&page=2", "/addresses?q=a&page=2"),
    (None, "/addresses"), ("", "/addresses"), ("//evil.test", "/addresses"), ("/\\evil.test", "/addresses"),
    ("https://evil.test", "/addresses"), ("evil", "/addresses"), ("/a b", "/addresses"),
    ("/a\r\nSet-Cookie: x", "/addresses"), ("/\x00", "/addresses"), ("/\u2028", "/addresses"),
])
def test_safe_next(value, expected):
    assert safe_next(value) == expected


def test_totp_steps():
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).at(NOW)
    step = totp.matching_step(secret, code, NOW)
    assert step == int(NOW.timestamp()) // 30
    assert totp.matching_step(secret, code, NOW + timedelta(seconds=30)) == step
    assert totp.matching_step(secret, code, NOW + timedelta(seconds=90)) is None
    assert totp.matching_step(secret, "12345", NOW) is None and totp.matching_step(secret, "abcdef", NOW) is None
    assert totp.setup_uri(secret, "a@b.test").startswith("otpauth://totp/tmail:a%40b.test?secret=")


@pytest.mark.parametrize("listen, trusted", [
    ("127.0.0.1:8025", True), ("[::1]:8025", True), ("localhost:8025", True), ("unix:/run/tmail/web.sock", True),
    ("0.0.0.0:8025", False), ("192.0.2.1:80", False), ("[2001:db8::1]:80", False), ("web.example:80", False),
])
def test_forwarded_headers_trusted_only_from_this_host(listen, trusted):
    assert behind_local_proxy(listen) is trusted


def test_client_address_from_the_local_proxy(make_web):
    site = make_web(listen="127.0.0.1:8025")
    site.add_user("alice@real.test")
    client = site.client()
    for n in range(20):
        client.sign_in(f"x{n}@real.test", "wrong password!", headers={"X-Forwarded-For": "198.51.100.7"})
    assert client.sign_in("alice@real.test", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429
    assert client.sign_in("alice@real.test", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 303


def test_listen_given_on_the_command_line_decides(web):
    from tmail.web import create_app
    exposed = create_app(web.cfg, engine=web.engine, send=web.outbox, clock=web.clock, listen="0.0.0.0:8025")
    local = create_app(web.cfg, engine=web.engine, send=web.outbox, clock=web.clock)
    headers = {"X-Forwarded-For": "198.51.100.7"}
    seen = {}
    for name, app in (("exposed", exposed), ("local", local)):
        @app.get("/whoami")
        def whoami():
            from flask import request
            return request.remote_addr or ""
        whoami.public = True
        seen[name] = app.test_client().get("/whoami", headers=headers).get_data(as_text=True)
    assert seen == {"exposed": "127.0.0.1", "local": "198.51.100.7"}


def test_forwarded_for_ignored_when_exposed(make_web):
    site = make_web(listen="0.0.0.0:8025")
    site.add_user("alice@real.test")
    client = site.client()
    for n in range(20):
        client.sign_in(f"x{n}@real.test", "wrong password!", headers={"X-Forwarded-For": f"198.51.100.{n}"})
    assert client.sign_in("alice@real.test", headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429


def test_secret_key_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the web secret key"):
        read_secret(str(tmp_path / "missing"))
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        read_secret(str(tmp_path / "short"))


def test_wsgi_builds_the_app_from_tmail_config(web, monkeypatch):
    import importlib
    import sys
    monkeypatch.setenv("TMAIL_CONFIG", web.cfg.path)
    sys.modules.pop("tmail.web.wsgi", None)
    module = importlib.import_module("tmail.web.wsgi")
    try:
        assert module.app.extensions["tmail"].config.path == web.cfg.path
        assert module.app.test_client().get("/sign-in").status_code == 200
    finally:
        module.app.extensions["tmail"].engine.dispose()
        sys.modules.pop("tmail.web.wsgi", None)


def test_templates_and_static_are_packaged():
    import configparser
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["tmail.web"].split(",")]
    web = root / "tmail" / "web"
    shipped = {p for pattern in patterns for p in web.glob(pattern)}
    assert shipped == set((web / "templates").iterdir()) | set((web / "static").iterdir())


def test_unknown_page_and_static(web):
    client = web.client()
    answer = client.get("/no/such/page")
    assert answer.status_code == 404 and "<title>Not Found — tmail</title>" in answer.get_data(as_text=True)
    css = client.get("/static/tmail.css")
    assert css.status_code == 200 and ":focus-visible" in css.get_data(as_text=True)
