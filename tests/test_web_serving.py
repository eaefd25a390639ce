"""`tmail web`: what it listens on, why it refuses to start, and that,
started as root, it serves as the tmail user. (The pages themselves:
tests/web/; in a real browser: tests/browser/.)"""
from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

import pytest

from tmail.cli.web import parse_listen
from tmail.config import render

TMAIL = os.path.join(os.path.dirname(sys.executable), "tmail")


@pytest.mark.parametrize("value", ["127.0.0.1:8025", "0.0.0.0:80", "[::1]:8025", "localhost:65535",
                                   "unix:/run/tmail-web/web.sock"])
def test_listen_values_gunicorn_binds(value):
    assert parse_listen(value) == value


@pytest.mark.parametrize("value", ["8025", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:8025",
                                   "unix:relative.sock", ":8025", "127.0.0.1:80a"])
def test_listen_values_refused(value):
    with pytest.raises(ValueError):
        parse_listen(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home():
    """A directory the tmail user owns (the app drops to it when started as root)."""
    path = tempfile.mkdtemp(prefix="tmail-web-", dir="/var/tmp")
    os.chmod(path, 0o755)
    shutil.chown(path, "tmail", "tmail")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tmail(home, *args, **kwargs):
    return subprocess.run([TMAIL, "--config", f"{home}/tmail.toml", *args], capture_output=True, text=True,
                          cwd="/", **kwargs)


def init(home, port: int) -> None:
    """`tmail init` beside the configuration, as the tmail user; [web] on `port`."""
    result = tmail(home, "init", "--srs-domain", "srs.fwd.test", user="tmail", group="tmail")
    assert result.returncode == 0, result.stderr
    with open(f"{home}/tmail.toml", "rb") as handle:
        values = tomllib.load(handle)
    values["web"].update(listen=f"127.0.0.1:{port}", workers=1, secure_cookies=False)
    with open(f"{home}/tmail.toml", "w") as handle:
        handle.write(render(values))


def test_a_bad_listen_option_is_a_usage_error(home):
    init(home, free_port())
    result = tmail(home, "web", "--listen", "8025")
    assert result.returncode == 2
    assert "--listen: expected host:port" in result.stderr


def test_an_unreadable_secret_stops_it_with_one_line_in_the_log(home):
    init(home, free_port())
    os.chown(f"{home}/web.secret", 0, 0)      # 0600 root: the tmail user cannot read it
    result = tmail(home, "web", "--log-file", f"{home}/web.log")
    assert result.returncode == 1
    assert f"{home}/web.secret: cannot read the web secret: Permission denied" in result.stderr
    with open(f"{home}/web.log") as handle:
        assert "tmail web cannot start:" in handle.read()
    assert os.stat(f"{home}/web.log").st_uid == pwd.getpwnam("tmail").pw_uid   # opened as tmail


def test_a_database_not_migrated_stops_it(home):
    init(home, free_port())
    with open(f"{home}/tmail.toml") as handle:
        text = handle.read().replace("tmail.db", "other.db")
    with open(f"{home}/tmail.toml", "w") as handle:
        handle.write(text)
    result = tmail(home, "web")
    assert result.returncode == 4
    assert "run `tmail db upgrade`" in result.stderr


def test_started_as_root_it_serves_as_tmail_and_stops_on_sigterm(home):
    port = free_port()
    init(home, port)
    process = subprocess.Popen([TMAIL, "--config", f"{home}/tmail.toml", "web", "--log-file", f"{home}/web.log"],
                               cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/sign-in")
                response = conn.getresponse()
                break
            except OSError:
                assert time.monotonic() < deadline, "tmail web did not answer within 30 s"
                time.sleep(0.2)
            finally:
                conn.close()
        assert response.status == 200
        tmail_uid = pwd.getpwnam("tmail").pw_uid
        with open(f"/proc/{process.pid}/status") as handle:
            uids = next(line for line in handle if line.startswith("Uid:")).split()[1:]
        assert uids == [str(tmail_uid)] * 4            # real, effective, saved, filesystem
        assert not os.path.exists("/var/lib/tmail/.gunicorn")   # no control socket in its home
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    with open(f"{home}/web.log") as handle:
        log = handle.read()
    assert f"Listening at: http://127.0.0.1:{port}" in log
    assert "as tmail" in log
