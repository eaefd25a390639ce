"""The web app as the admin runs it (`tmail web`, gunicorn, as the tmail
user) beside a private Postfix instance (tests/e2e/harness.py), and Debian's
chromium driven by Playwright."""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import ssl
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


def web_config(port: int, tls: tuple[str, str] | None = None) -> dict:
    """[web] for a plain-HTTP app on loopback (no Secure cookies without
    TLS), or with TLS in gunicorn: tls = (certificate, key) files."""
    if tls is None:
        return {"web": {"listen": f"127.0.0.1:{port}", "base_url": f"http://127.0.0.1:{port}",
                        "secure_cookies": False, "workers": 2}}
    return {"web": {"listen": f"127.0.0.1:{port}", "base_url": f"https://localhost:{port}",
                    "secure_cookies": True, "workers": 2, "tls_cert": tls[0], "tls_key": tls[1]}}


def self_signed(directory: str, name: str = "localhost") -> tuple[str, str]:
    """A certificate for `name` (and 127.0.0.1) and its key, as PEM files the
    tmail user can read; the certificate is also what a client trusts."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "web.crt"), os.path.join(directory, "web.key")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    shutil.chown(key_path, "tmail", "tmail")
    return cert_path, key_path


class WebApp:
    """`tmail web` on a free loopback port, started and stopped as a service would be."""

    def __init__(self, mx: Instance, port: int, cafile: str | None = None):
        self.mx = mx
        self.port = port
        self.cafile = cafile                    # TLS: the certificate to trust
        self.url = f"https://localhost:{port}" if cafile else f"http://127.0.0.1:{port}"
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
        conn = self.connection()
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def connection(self) -> http.client.HTTPConnection:
        if self.cafile is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        context = ssl.create_default_context(cafile=self.cafile)     # verified: name and chain
        return http.client.HTTPSConnection("localhost", self.port, timeout=5, context=context)

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


def start(sink_port: int, tls: bool = False) -> tuple[Instance, WebApp]:
    """A private Postfix with tmail, then the web app on its configuration
    (over TLS, with a self-signed certificate for localhost, when `tls`)."""
    mx = Instance(sink_port)
    port = free_port()
    while port in (mx.smtp_port, mx.reinject_port, sink_port):   # a port just freed comes back
        port = free_port()
    files = None
    if tls:      # beside, not in, mx.home: setup() makes that afresh
        certs = tempfile.mkdtemp(prefix="tmail-tls-", dir="/var/tmp")
        os.chmod(certs, 0o755)
        files = self_signed(certs)
    mx.extra_config = web_config(port, files)  # written into tmail.toml by setup()
    try:
        mx.setup()
        web = WebApp(mx, port, cafile=files[0] if files else None)
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
