"""A private Postfix instance on loopback ports, wired to tmail by
`tmail postfix install`, with the tmail daemon running as the tmail user."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

from dnsserver import DnsServer, Zone

from tmail.config import render

VENV_BIN = os.path.dirname(sys.executable)
TMAIL = os.path.join(VENV_BIN, "tmail")
DELIVER = os.path.join(VENV_BIN, "tmail-deliver")
SRS_DOMAIN = "srs.fwd.test"
REPLY_DOMAIN = "reply.fwd.test"


def smtp_reply(reply) -> tuple[int, bytes]:
    """A named reply (tmail.core.replies) as smtplib reports it."""
    return int(reply.code), f"{reply.xcode} {reply.text}".encode()


def send_at_once(instances, count: int, rcpt: str, message_for, sender: str = "alice@orig.test",
                 outside: bool = True) -> list:
    """`count` SMTP sessions (Instance.client(outside)), taking turns over
    `instances`, each sending one message (message_for(i)) to `rcpt` at the
    same moment; for each, "sent" or the refusal as smtplib reports it, (code, text)."""
    start = threading.Barrier(count)
    outcomes: list = []

    def one(i):
        with instances[i % len(instances)].client(outside=outside, timeout=60) as client:
            client.ehlo()
            start.wait()
            try:
                client.sendmail(sender, [rcpt], message_for(i))
                outcomes.append("sent")
            except smtplib.SMTPRecipientsRefused as exc:
                outcomes.append(exc.recipients[rcpt])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout=20.0, what="condition", interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def connects(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class Instance:
    def __init__(self, sink_port: int, db_url: str | None = None, config: dict | None = None,
                 transport: str = "pipe", fleet_key: str | None = None):
        self.transport = transport           # how Postfix hands mail to tmail: pipe or lmtp
        self.fleet_key = fleet_key           # one of several hosts on db_url: the shared key
        self.tmail_user = pwd.getpwnam("tmail")  # created by install.sh --deps-only
        self.base = tempfile.mkdtemp(prefix="tmail-e2e-", dir="/var/tmp")
        os.chmod(self.base, 0o755)
        self.conf = f"{self.base}/postfix"
        self.queue = f"{self.base}/queue"
        self.home = f"{self.base}/tmail"        # tmail's private files
        self.run_dir = f"{self.base}/run"
        self.maps = f"{self.base}/maps"
        self.smtp_port = free_port()
        self.reinject_port = free_port()
        self.sink_port = sink_port
        self.daemon = None
        self.log = f"{self.base}/tmail/tmail.log"
        self.config = f"{self.home}/tmail.toml"
        self.db_url = db_url or f"sqlite:///{self.home}/tmail.db"
        self.key_directory = f"{self.home}/dkim"
        self.extra_config = config or {}   # {section: {key: value}} for tmail.toml
        # tmail's resolver asks a DNS server on loopback that the test fills
        self.zone = Zone()
        self.dns = DnsServer(self.zone)

    # -- set-up ------------------------------------------------------------
    def setup_postfix(self):
        """Postfix's part: its own configuration, queue and data directories,
        loopback ports, mail to the sink (not started yet)."""
        os.makedirs(self.conf)
        # Postfix's pristine defaults, not /etc/postfix: the host's own
        # configuration (tmail installed on it, say) must not leak in.
        for path in ("main.cf", "master.cf"):
            shutil.copy(f"/usr/share/postfix/{path}.dist", f"{self.conf}/{path}")
        # .dist leaves these empty for the packager to fill in.
        for name in ("debugger_command", "sendmail_path", "newaliases_path", "mailq_path",
                     "html_directory", "manpage_directory", "sample_directory", "readme_directory"):
            subprocess.run(["postconf", "-c", self.conf, "-X", name], check=True)
        os.makedirs(f"{self.base}/data")
        os.makedirs(self.queue)
        shutil.chown(f"{self.base}/data", "postfix")
        self.postconf(
            f"queue_directory={self.queue}", f"data_directory={self.base}/data",
            "inet_interfaces=127.0.0.1", "inet_protocols=ipv4", "mynetworks=127.0.0.1/32",
            "myhostname=mx.fwd.test", "mydomain=fwd.test", "myorigin=$myhostname",
            "mydestination=mx.fwd.test", "local_recipient_maps=", "alias_maps=", "alias_database=",
            f"relayhost=[127.0.0.1]:{self.sink_port}", "smtp_dns_support_level=disabled",
            "smtp_tls_security_level=none", "smtpd_tls_security_level=none",
            f"maillog_file={self.base}/maillog", "compatibility_level=3.6",
            "setgid_group=postdrop", "mail_owner=postfix",
        )
        subprocess.run(["postconf", "-c", self.conf, "-F", "*/*/chroot = n"], check=True)
        subprocess.run(["postconf", "-c", self.conf, "-MX", "smtp/inet"], check=True)
        listener = f"127.0.0.1:{self.smtp_port}"
        subprocess.run(["postconf", "-c", self.conf, "-M",
                        f"{listener}/inet={listener} inet n - n - - smtpd"], check=True)

    def setup(self):
        self.setup_postfix()
        for path in (self.home, self.run_dir, self.maps):
            os.makedirs(path, mode=0o750, exist_ok=True)
            shutil.chown(path, "tmail", "tmail")
        # The milter and guard sockets' directory, as install.sh makes it:
        # setgid tmail-postfix, the one group the postfix user shares with it.
        os.makedirs(f"{self.queue}/tmail")
        shutil.chown(f"{self.queue}/tmail", "tmail", "tmail-postfix")
        os.chmod(f"{self.queue}/tmail", 0o2750)
        self.postconf("smtputf8_enable=yes", "message_size_limit=30000000", "queue_run_delay=1s",
                      "minimal_backoff_time=1s", "maximal_backoff_time=2s",
                      "smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination",
                      "relay_domains=", "smtp_connection_cache_on_demand=no",
                      "default_destination_concurrency_limit=50", "header_size_limit=1024000")
        secret = f"{self.home}/srs.secret"
        self.tmail("init", "--srs-domain", SRS_DOMAIN, "--admin", "admin@real.test",
                   "--database-url", self.db_url, "--secret-file", secret)
        # Merged, not appended: init writes the paths it chose (a [dkim]
        # table among them) and TOML refuses a table declared twice.
        extra = tomllib.loads(
                f'\n[daemon]\npostfix_queue_directory = "{self.queue}"\n'
                f'deliver_socket = "{self.run_dir}/deliver.sock"\n'
                f'reinject_port = {self.reinject_port}\nlog_level = "debug"\n'
                f'\n[dns]\nservers = "{self.dns.address}"\ntimeout_s = 2\n'
                f'\n[replies]\ndomain = "{REPLY_DOMAIN}"\n'
                f'\n[dkim]\nkey_directory = "{self.key_directory}"\nauthserv_id = "mx.fwd.test"\n'
                f'\n[postfix]\nconfig_directory = "{self.conf}"\nmap_directory = "{self.maps}"\n'
                f'reinject_listener = "127.0.0.1:{self.reinject_port}"\n')
        with open(self.config, "rb") as handle:
            values = tomllib.load(handle)
        if self.fleet_key:
            key_file = f"{self.home}/fleet.key"
            with open(os.open(key_file, os.O_CREAT | os.O_WRONLY, 0o600), "w") as handle:
                handle.write(self.fleet_key + "\n")
            shutil.chown(key_file, "tmail", "tmail")
            extra["fleet"] = {"key_file": key_file}
        for section, items in [*extra.items(), *self.extra_config.items()]:
            values.setdefault(section, {}).update(items)
        with open(self.config, "w") as handle:
            handle.write(render(values))
        if self.fleet_key:    # the first host's SRS secret becomes the fleet's; later hosts' are unused
            self.tmail("fleet", "import")
        self.tmail("domain", "add", "d.test")
        subprocess.run(["postfix", "-c", self.conf, "start"], check=True, capture_output=True)
        self.tmail("postfix", "install", "--transport", self.transport, as_root=True)
        self.start_daemon()
        wait_until(lambda: self.smtp_ready(), what="postfix smtpd")

    def postconf(self, *settings):
        subprocess.run(["postconf", "-c", self.conf, "-e", *settings], check=True)

    def reload(self):
        subprocess.run(["postfix", "-c", self.conf, "reload"], check=True, capture_output=True)

    def client(self, outside: bool = True, timeout: float = 30) -> smtplib.SMTP:
        """An SMTP client of this instance. `outside`: from 127.0.0.2, which
        is neither in mynetworks nor an address Postfix listens on, so it is
        treated as the internet is (no relaying, no header rewriting)."""
        source = ("127.0.0.2", 0) if outside else None
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=timeout, source_address=source)

    def smtp_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    # -- tmail -------------------------------------------------------------
    def tmail(self, *args, as_root=False, check=True):
        """Run the CLI as an admin would: as tmail (or root for Postfix files)."""
        kwargs = {} if as_root else {"user": "tmail", "group": "tmail"}
        result = subprocess.run([TMAIL, "--config", self.config, *args], capture_output=True,
                                text=True, cwd="/", **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"tmail {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def start_daemon(self):
        self.daemon = subprocess.Popen(
            [TMAIL, "--config", self.config, "daemon", "--log-file", self.log],
            user="tmail", group="tmail", cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        def up():
            if self.daemon.poll() is not None:
                raise AssertionError(f"tmail daemon exited: {self.daemon.stderr.read().decode()}"
                                     f"{self.tmail_log()[-3000:]}")
            return (connects(f"{self.queue}/tmail/milter.sock")
                    and connects(f"{self.run_dir}/deliver.sock")
                    and connects(f"{self.queue}/tmail/policy.sock"))
        wait_until(up, what="tmail daemon sockets")

    def kill_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait(10)

    def start_follower(self):
        """`tmail postfix follow`, as root (as tmail-follow.service runs it)."""
        self.follower = subprocess.Popen(
            [TMAIL, "--config", self.config, "postfix", "follow"], cwd="/",
            stdout=subprocess.DEVNULL, stderr=open(f"{self.base}/follow.log", "ab"))

    def stop_follower(self):
        follower = getattr(self, "follower", None)
        if follower and follower.poll() is None:
            follower.terminate()
            follower.wait(10)

    # -- postfix -------------------------------------------------------------
    def flush(self):
        subprocess.run(["postqueue", "-c", self.conf, "-f"], capture_output=True)

    def queue_size(self) -> int:
        count = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _root, _dirs, files in os.walk(f"{self.queue}/{sub}"):
                count += len(files)
        return count

    def maillog(self) -> str:
        try:
            with open(f"{self.base}/maillog", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def tmail_log(self) -> str:
        try:
            with open(self.log, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def teardown(self):
        self.kill_daemon()
        self.stop_follower()
        self.dns.close()
        subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
        if os.environ.get("TMAIL_KEEP_E2E"):
            print(f"kept {self.base}")
            return
        shutil.rmtree(self.base, ignore_errors=True)
