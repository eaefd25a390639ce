"""The web app as the admin runs it (`tmail web`, gunicorn, as the tmail
user) beside a private Postfix instance (tests/e2e/harness.py), and Debian's
chromium driven by Playwright."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import tempfile

from harness import TMAIL, Instance, free_port, wait_until

# Debian's build: Playwright's own browser download cannot work here. The
# pairing checked: playwright 1.65.2 (setup.cfg) with chromium 156.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def web_config(port: int) -> dict:
    """[web] for a plain-HTTP app on loopback (no Secure cookies without TLS)."""
    return {"web": {"listen": f"127.0.0.1:{port}", "base_url": f"http://127.0.0.1:{port}",
                    "secure_cookies": False, "workers": 2}}


class WebApp:
    """`tmail web` on a free loopback port, started and stopped as a service would be."""

    def __init__(self, mx: Instance, port: int):
        self.mx = mx
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = f"{mx.home}/web.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [TMAIL, "--config", self.mx.config, "web", "--log-file", self.log],
            user="tmail", group="tmail", cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"tmail web exited ({self.process.returncode}): "
                                     f"{self.process.stderr.read().decode()}{self.log_text()[-3000:]}")
            return self.status("/") is not None
        wait_until(up, timeout=30, what="tmail web answering")

    def status(self, path: str) -> int | None:
        """The HTTP status of GET path (redirects not followed), None if no answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)   # gunicorn: graceful
            try:
                self.process.wait(25)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""


def start(sink_port: int) -> tuple[Instance, WebApp]:
    """A private Postfix with tmail, then the web app on its configuration."""
    mx = Instance(sink_port)
    port = free_port()
    while port in (mx.smtp_port, mx.reinject_port, sink_port):   # a port just freed comes back
        port = free_port()
    mx.extra_config = web_config(port)         # written into tmail.toml by setup()
    try:
        mx.setup()
        web = WebApp(mx, port)
        web.start()
    except BaseException:
        print(mx.maillog()[-3000:])
        print(mx.tmail_log()[-3000:])
        mx.teardown()
        raise
    return mx, web


def add_user(mx: Instance, email: str, password: str, *options: str) -> None:
    """`tmail user add EMAIL --password-stdin`, as the admin would."""
    result = subprocess.run([TMAIL, "--config", mx.config, "user", "add", email, "--password-stdin", *options],
                            input=password + "\n", capture_output=True, text=True,
                            user="tmail", group="tmail", cwd="/")
    if result.returncode != 0:
        raise AssertionError(f"tmail user add {email} failed: {result.stdout}{result.stderr}")


def screenshot_dir() -> str:
    """$TMAIL_SCREENSHOTS when set (docs/screenshots to refresh the ones the
    README shows: they change with every run, random addresses and times),
    else a directory of the run's own."""
    path = os.environ.get("TMAIL_SCREENSHOTS") or os.path.join(tempfile.gettempdir(), "tmail-screenshots")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)
