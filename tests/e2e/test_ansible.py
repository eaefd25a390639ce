"""The Ansible collection (ansible/): the role installs tmail into a scratch
prefix against a private Postfix instance, twice (the second run changes
nothing), and the modules add a domain and an alias; in check mode they
change nothing, and a refusal fails the task with tmail's own message.

The role builds its own virtualenv from this source (pymilter compiles:
a minute or two); the system's Postfix, /opt/tmail and /etc/tmail are left
alone.
"""
import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

import pytest
from harness import Instance, connects, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
ANSIBLE_DOC = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
# What must not change: the system's Postfix and tmail's system paths.
SYSTEM_PATHS = ("/etc/postfix/main.cf", "/etc/postfix/master.cf", "/opt/tmail", "/etc/tmail",
                "/var/lib/tmail", "/usr/local/bin/tmail", "/etc/systemd/system/tmail.service")

SITE = """
- name: tmail in a scratch prefix
  hosts: all
  gather_facts: false
  roles:
    - tmail.tmail.tmail
  tasks:
    - name: A domain
      tmail.tmail.tmail_domain:
        name: d.test
        default_idle: 60d
    - name: An alias
      tmail.tmail.tmail_alias:
        address: shop@d.test
        destinations: [me@real.test]
        max_messages: 20
        ttl: 30d
        blocked_senders: ["@spam.test"]
  module_defaults:
    group/tmail.tmail.tmail:
      tmail: "{{ tmail_prefix }}/venv/bin/tmail"
      config: "{{ tmail_etc }}/tmail.toml"
"""

# Each result goes to a JSON file the test reads (ansible-core has no JSON
# stdout callback of its own).
PROBES = """
- name: check mode and errors
  hosts: all
  gather_facts: false
  module_defaults:
    group/tmail.tmail.tmail:
      tmail: "{{ tmail_prefix }}/venv/bin/tmail"
      config: "{{ tmail_etc }}/tmail.toml"
  tasks:
    - name: A new alias, in check mode
      tmail.tmail.tmail_alias:
        address: new@d.test
        destinations: [me@real.test]
      check_mode: true
      register: new_alias
    - name: The alias as it is, in check mode
      tmail.tmail.tmail_alias:
        address: shop@d.test
        destinations: [me@Real.Test, ME@real.test]     # tmail keeps the first spelling
        max_messages: 20
        ttl: 30d
        blocked_senders: ["@SPAM.test"]
      check_mode: true
      register: same_alias
    - name: Another limit, in check mode
      tmail.tmail.tmail_alias:
        address: shop@d.test
        destinations: [me@real.test]
        max_messages: 5
      check_mode: true
      register: other_limit
    - name: The domain as it is, and with another default, in check mode
      tmail.tmail.tmail_domain:
        name: D.TEST.
        default_idle: "{{ item }}"
      loop: [60d, 7d]
      check_mode: true
      register: domain_settings
    - name: Removing the domain that has an alias, in check mode
      tmail.tmail.tmail_domain:
        name: d.test
        state: absent
      check_mode: true
      register: domain_absent
      ignore_errors: true
    - name: No address
      tmail.tmail.tmail_alias:
        address: not-an-address
        destinations: [me@real.test]
      register: bad_address
      ignore_errors: true
    - name: A destination at a tmail domain
      tmail.tmail.tmail_alias:
        address: loop@d.test
        destinations: [shop@d.test]
      register: bad_destination
      ignore_errors: true
    - name: An alias that is not there, absent
      tmail.tmail.tmail_alias:
        address: never@d.test
        state: absent
      register: absent_alias
    - name: What the probes answered
      ansible.builtin.copy:
        dest: "{{ probe_results }}"
        mode: "0600"
        content: "{{ {'new_alias': new_alias, 'same_alias': same_alias, 'other_limit': other_limit,
                      'domain_settings': domain_settings.results, 'domain_absent': domain_absent,
                      'bad_address': bad_address, 'bad_destination': bad_destination,
                      'absent_alias': absent_alias} | to_json }}"
"""


def snapshot_source(target: str) -> None:
    """What the role installs from, copied: others may edit the work tree
    between the two runs, and pip's build files stay out of it."""
    os.makedirs(target)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), target)
    for name in ("tmail", "systemd", "nginx"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(target, name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def system_state() -> dict:
    def stat(path):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns
    return {path: stat(path) for path in SYSTEM_PATHS}


def ansible_env(directory: str) -> dict:
    """Ansible with this repository's collection and a configuration and
    home of its own in `directory` (none of the machine's or the user's)."""
    with open(f"{directory}/ansible.cfg", "w") as handle:
        handle.write("[defaults]\n")
    return dict(os.environ, ANSIBLE_CONFIG=f"{directory}/ansible.cfg", ANSIBLE_HOME=f"{directory}/home",
                ANSIBLE_COLLECTIONS_PATH=f"{REPO}/ansible", ANSIBLE_NOCOLOR="1",
                ANSIBLE_RETRY_FILES_ENABLED="0")


class Deployment:
    def __init__(self, mx: Instance):
        self.mx = mx
        base = mx.base
        self.prefix, self.etc, self.lib = f"{base}/prefix", f"{base}/etc", f"{base}/lib"
        self.log, self.run_dir, self.systemd = f"{base}/log", f"{base}/run", f"{base}/systemd"
        self.source = f"{base}/src"
        self.tmail_bin = f"{self.prefix}/venv/bin/tmail"
        self.config = f"{self.etc}/tmail.toml"
        self.ansible = f"{base}/ansible"
        os.makedirs(self.ansible)
        with open(f"{self.ansible}/inventory.ini", "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
        for name, text in (("site.yml", SITE), ("probes.yml", PROBES)):
            with open(f"{self.ansible}/{name}", "w") as handle:
                handle.write(text)
        variables = {
            "tmail_source": self.source, "tmail_prefix": self.prefix, "tmail_etc": self.etc,
            "tmail_lib": self.lib, "tmail_log": self.log, "tmail_run": self.run_dir,
            "tmail_systemd_directory": self.systemd, "tmail_bin_link": "",
            "tmail_map_directory": mx.maps,
            "tmail_postfix_config_directory": mx.conf, "tmail_postfix_queue_directory": mx.queue,
            "tmail_srs_domain": "srs.fwd.test", "tmail_admin": "admin@real.test",
            "tmail_reinject_port": mx.reinject_port, "tmail_dns_servers": mx.dns.address,
            "tmail_config_extra": {"daemon": {"log_level": "debug"}},
            "probe_results": f"{self.ansible}/probes.json",
        }
        with open(f"{self.ansible}/vars.json", "w") as handle:
            json.dump(variables, handle)

    def playbook(self, name: str, *extra_vars: str) -> tuple[str, float]:
        started = time.monotonic()
        extra = [arg for path in extra_vars for arg in ("-e", f"@{path}")]
        result = subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", f"{self.ansible}/inventory.ini", "-e", f"@{self.ansible}/vars.json",
             *extra, f"{self.ansible}/{name}"], capture_output=True, text=True, env=ansible_env(self.ansible),
            cwd=self.ansible)
        took = time.monotonic() - started
        assert result.returncode == 0, f"{name} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        return result.stdout, took

    def tmail(self, *args, check=True):
        result = subprocess.run([self.tmail_bin, "--config", self.config, *args], capture_output=True,
                                text=True, cwd="/")
        if check:
            assert result.returncode == 0, f"tmail {' '.join(args)}: {result.stdout}{result.stderr}"
        return result


def recap(output: str) -> dict:
    """localhost's counts from the PLAY RECAP."""
    line = output[output.rindex("PLAY RECAP"):].splitlines()[1]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


@pytest.fixture(scope="module")
def deployed(sink):
    assert os.path.exists(ANSIBLE_PLAYBOOK), "ansible-core is missing: pip install '.[test]'"
    mx = Instance(sink.port)
    before = system_state()
    try:
        mx.setup_postfix()       # tmail's part is the role's to do
        subprocess.run(["postfix", "-c", mx.conf, "start"], check=True, capture_output=True)
        snapshot_source(f"{mx.base}/src")
        site = Deployment(mx)
        site.runs, site.installed = [], []
        for _ in range(2):
            site.runs.append(site.playbook("site.yml"))
            site.installed.append(os.stat(site.tmail_bin).st_mtime_ns)   # pip rewrites it
        site.system_before = before
        yield site
    except Exception:
        print(mx.maillog()[-4000:])
        raise
    finally:
        mx.teardown()


def test_a_second_run_changes_nothing(deployed):
    (first, first_took), (second, second_took) = deployed.runs
    print(f"first run {first_took:.0f} s, {recap(first)}; second run {second_took:.0f} s, {recap(second)}")
    assert recap(first)["changed"] > 0
    assert recap(second)["changed"] == 0, second
    assert deployed.installed[0] == deployed.installed[1], "the second run installed tmail again"


def test_files_have_install_sh_owners_and_modes(deployed):
    def owner_mode(path):
        info = os.stat(path)
        return f"{pwd.getpwuid(info.st_uid).pw_name} {info.st_mode & 0o7777:04o}"
    assert owner_mode(deployed.etc) == "root 0750"
    assert owner_mode(deployed.config) == "root 0640"
    assert os.stat(deployed.config).st_gid == deployed.mx.tmail_user.pw_gid
    for secret in ("srs.secret", "web.secret"):
        assert owner_mode(f"{deployed.etc}/{secret}") == "tmail 0600"
    assert owner_mode(f"{deployed.lib}/tmail.db") == "tmail 0600"
    assert owner_mode(deployed.lib) == "tmail 0700"
    assert owner_mode(f"{deployed.mx.queue}/tmail") == "tmail 2750"
    with open(deployed.config) as handle:
        config = handle.read()
    assert f'url = "sqlite:///{deployed.lib}/tmail.db"' in config
    assert f"reinject_port = {deployed.mx.reinject_port}\n" in config
    assert 'log_level = "debug"' in config        # tmail_config_extra


def test_units_are_written_with_the_scratch_paths(deployed):
    with open(f"{deployed.systemd}/tmail.service") as handle:
        unit = handle.read()
    assert f"ExecStart={deployed.tmail_bin} --config {deployed.config} daemon\n" in unit
    assert f"ReadWritePaths={deployed.lib} {deployed.mx.queue}/tmail {deployed.log}\n" in unit
    with open(f"{deployed.systemd}/tmail-follow.service") as handle:
        assert f"ExecStart={deployed.tmail_bin} --config {deployed.config} postfix follow\n" in handle.read()
    for name in ("tmail-web.service", "tmail-maintenance.service", "tmail-maintenance.timer"):
        assert os.path.exists(f"{deployed.systemd}/{name}")
    for name in os.listdir(deployed.systemd):
        with open(f"{deployed.systemd}/{name}") as handle:
            text = handle.read()
        assert not re.findall(r"(?<![\w.-])/(?:opt|etc|var/lib|var/log)/tmail", text), name


def test_postfix_is_wired_and_tmail_postfix_check_passes(deployed):
    mx = deployed.mx
    assert "milter.sock" in subprocess.run(["postconf", "-c", mx.conf, "-h", "smtpd_milters"],
                                           capture_output=True, text=True, check=True).stdout
    # the daemon from the role's virtualenv, as the tmail user (as systemd would)
    daemon = subprocess.Popen([deployed.tmail_bin, "--config", deployed.config, "daemon",
                               "--log-file", f"{deployed.log}/tmail.log"],
                              user="tmail", group="tmail", cwd="/", stderr=subprocess.PIPE)
    try:
        def up():
            assert daemon.poll() is None, daemon.stderr.read().decode()
            return connects(f"{mx.queue}/tmail/milter.sock") and connects(f"{deployed.run_dir}/deliver.sock")
        wait_until(up, what="the tmail daemon's sockets")
        result = deployed.tmail("postfix", "check", "--json", check=False)
        checks = json.loads(result.stdout)["checks"]
        assert result.returncode == 0, [c for c in checks if not c["ok"]]
    finally:
        daemon.kill()
        daemon.wait(10)


def test_the_modules_made_the_domain_and_the_alias(deployed):
    alias = json.loads(deployed.tmail("alias", "show", "shop@d.test", "--json").stdout)["alias"]
    assert alias["destinations"] == ["me@real.test"]
    assert alias["max_messages"] == 20 and alias["blocked_senders"] == ["@spam.test"]
    settings = json.loads(deployed.tmail("domain", "show", "d.test", "--json").stdout)["settings"]
    assert settings["default_idle_seconds"] == 60 * 86400
    with open(f"{deployed.mx.maps}/domains.regexp") as handle:     # Postfix routes it to tmail
        assert "d\\.test" in handle.read()


def test_check_mode_changes_nothing_and_errors_are_tmails(deployed):
    deployed.playbook("probes.yml")
    with open(f"{deployed.ansible}/probes.json") as handle:
        probes = json.load(handle)
    # check mode: a change foreseen, none made
    # (the alias it would make: tmail made it and rolled it back, `--dry-run`)
    assert probes["new_alias"]["changed"] is True and probes["new_alias"]["alias"]["address"] == "new@d.test"
    missing = deployed.tmail("alias", "show", "new@d.test", "--json", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"] == "no alias new@d.test"
    assert probes["same_alias"]["changed"] is False
    assert probes["other_limit"]["changed"] is True
    alias = json.loads(deployed.tmail("alias", "show", "shop@d.test", "--json").stdout)["alias"]
    assert alias["max_messages"] == 20
    assert [r["changed"] for r in probes["domain_settings"]] == [False, True]
    assert probes["domain_absent"]["failed"] is True
    assert "d.test still has 1 alias(es)" in probes["domain_absent"]["msg"]
    # refusals: tmail's message, whether click's (a malformed argument) or tmail's own
    assert probes["bad_address"]["failed"] is True
    assert "'not-an-address' is not an address: it has no '@'" in probes["bad_address"]["msg"]
    assert probes["bad_destination"]["failed"] is True
    assert probes["bad_destination"]["msg"].startswith("destination shop@d.test is at a tmail domain")
    assert probes["absent_alias"]["changed"] is False


def test_a_fleet_key_makes_a_fleet(deployed):
    """Several MX hosts on one database: the key file, [fleet], and this
    host's DKIM keys and SRS secret sealed into the database (the runs
    before had none of it)."""
    fleet = f"{deployed.ansible}/fleet.json"
    with open(fleet, "w") as handle:
        json.dump({"tmail_fleet_key": base64.b64encode(os.urandom(32)).decode(),
                   "tmail_host_name": "mx1.fwd.test"}, handle)
    first, _took = deployed.playbook("site.yml", fleet)
    assert recap(first)["changed"] > 0
    assert re.search(r"TASK \[tmail\.tmail\.tmail : What the other hosts of the fleet share "
                     r"\(tmail fleet import\)\] \**\nchanged:", first), first
    second, _took = deployed.playbook("site.yml", fleet)
    assert recap(second)["changed"] == 0, second
    key = os.stat(f"{deployed.etc}/fleet.key")
    assert (pwd.getpwuid(key.st_uid).pw_name, key.st_mode & 0o7777) == ("tmail", 0o600)
    with open(deployed.config) as handle:
        config = handle.read()
    assert f'[fleet]\nhost = "mx1.fwd.test"\nkey_file = "{deployed.etc}/fleet.key"\nsync_interval_s = 10\n' in config
    # the SRS domain's key, made as a file by the first runs, is now the database's
    os.rename(f"{deployed.etc}/dkim", f"{deployed.etc}/dkim.files")
    try:
        records = json.loads(deployed.tmail("dkim", "show-dns", "--domain", "srs.fwd.test", "--json").stdout)
    finally:
        os.rename(f"{deployed.etc}/dkim.files", f"{deployed.etc}/dkim")
    assert {r["selector"] for r in records["records"]} == {"s1"}


def test_the_system_is_left_alone(deployed):
    assert system_state() == deployed.system_before


def test_the_modules_documentation_parses(tmp_path):
    result = subprocess.run([ANSIBLE_DOC, "tmail.tmail.tmail_domain", "tmail.tmail.tmail_alias"],
                            capture_output=True, text=True, env=ansible_env(str(tmp_path)))
    assert result.returncode == 0 and "[ERROR]" not in result.stderr, result.stderr
    assert "RETURN VALUES" in result.stdout
