"""Configuration: one TOML file, validated strictly against tmail.defaults.

An unknown section or key, a wrong type or a bad value is a ConfigError that
names the file, the key and what was expected; nothing is silently ignored.
"""
from __future__ import annotations

import copy
import os
import re
import tomllib
from dataclasses import dataclass
from difflib import get_close_matches

from . import defaults
from .core.address import AddressError, normalise_domain, parse_address
from .core.durations import parse_duration


class ConfigError(Exception):
    pass


_CHOICES = {
    ("aliases", "random_style"): ("token", "words"),
    ("daemon", "log_level"): ("debug", "info", "warning", "error"),
    ("srs", "separator"): ("=", "-", "+"),
    ("web", "signup"): ("closed", "invite", "open"),
}
_DURATIONS = {("lifecycle", "purge_grace"), ("lifecycle", "quarantine"), ("lifecycle", "activity_kept"),
              ("web", "session_lifetime"), ("replies", "notice_every")}
_RANGES = {
    ("database", "busy_timeout_ms"): (0, 600_000),
    ("database", "timeout_s"): (1, 60),
    ("daemon", "verdict_timeout_s"): (1, 15),
    ("daemon", "lmtp_processes"): (0, 64),
    ("aliases", "random_length"): (8, 40),
    ("srs", "max_age_days"): (1, 1000),
    ("daemon", "reinject_port"): (1, 65535),
    ("daemon", "reinject_timeout_s"): (1, 3600),
    ("daemon", "max_received_headers"): (5, 200),
    ("dns", "timeout_s"): (1, 60),
    ("dns", "cache_entries"): (0, 1_000_000),
    ("web", "max_aliases"): (0, 10_000_000),
    ("web", "aliases_per_hour"): (0, 1_000_000),
    ("web", "workers"): (1, 64),
    ("fleet", "sync_interval_s"): (2, 300),
}


@dataclass
class Config:
    path: str
    data: dict

    def __getitem__(self, section: str) -> dict:
        return self.data[section]

    def duration(self, section: str, key: str):
        return parse_duration(self.data[section][key])

    @property
    def authserv_id(self) -> str:
        return self.data["dkim"]["authserv_id"] or self.data["srs"]["domain"] or "localhost"

    def resolver(self):
        from .resolver import Resolver, parse_servers
        dns = self.data["dns"]
        return Resolver(parse_servers(dns["servers"]), dns["timeout_s"], dns["cache_entries"])

    @property
    def fleet(self) -> bool:
        """DKIM keys and SRS secrets live in the shared database."""
        return bool(self.data["fleet"]["key_file"])

    @property
    def host_name(self) -> str:
        import socket
        return self.data["fleet"]["host"] or socket.getfqdn()

    def sealer(self):
        from .sealing import Sealer, SealError, read_key
        try:
            return Sealer(read_key(self.data["fleet"]["key_file"]))
        except SealError as exc:
            raise ConfigError(str(exc)) from None

    def key_store(self, engine=None):
        """Where DKIM keys are: the shared database (a fleet) or the key directory."""
        if self.fleet:
            from .db.fleet import DbKeyStore
            return DbKeyStore(engine or self.engine(), self.sealer(),
                              refresh_s=self.data["fleet"]["sync_interval_s"])
        from .keys import KeyStore
        return KeyStore(self.data["dkim"]["key_directory"], self.data["postfix"]["pipe_user"])

    def engine(self):
        from .db.engine import make_engine
        db = self.data["database"]
        return make_engine(db["url"], db["busy_timeout_ms"])

    @property
    def base_url(self) -> str:
        """Where people reach the web app, for links in mail (no trailing /)."""
        web = self.data["web"]
        if web["base_url"]:
            return web["base_url"].rstrip("/")
        listen = web["listen"]
        return "http://localhost" if listen.startswith("unix:") else f"http://{listen}"

    @property
    def signup_domains(self) -> frozenset[str]:
        return frozenset(self.data["web"]["signup_domains"].replace(",", " ").split())

    @property
    def service_domains(self) -> frozenset[str]:
        """tmail's own domains that hold no aliases: the SRS and reply domains."""
        return frozenset(d for d in (self.data["srs"]["domain"], self.data["replies"]["domain"]) if d)

    @property
    def notice_from(self) -> str:
        return self.data["lifecycle"]["notice_from"] or f"postmaster@{self.data['srs']['domain']}"

    def masked(self) -> dict:
        """The effective configuration with secrets (a password in a URL) hidden."""
        shown = copy.deepcopy(self.data)
        url = shown["database"]["url"]
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            shown["database"]["url"] = f"{scheme}://{user}:***@{host}" if ":" in creds else url
        return shown


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(defaults.CONFIG_ENV) or defaults.CONFIG_PATH


def _hint(name: str, known) -> str:
    close = get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(path: str, section: str, key: str, value, default):
    where = f"{path}: [{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        low, high = _RANGES.get((section, key), (None, None))
        if low is not None and not low <= value <= high:
            raise ConfigError(f"{where}: expected an integer from {low} to {high}, got {value}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        choices = _CHOICES.get((section, key))
        if choices and value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    try:
        if (section, key) in (("srs", "domain"), ("replies", "domain")) and value:
            value = normalise_domain(value)
        if (section, key) == ("aliases", "admin_address") or \
                ((section, key) == ("lifecycle", "notice_from") and value):
            value = str(parse_address(value))
    except AddressError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if (section, key) in _DURATIONS:
        try:
            parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if (section, key) == ("dns", "servers"):
        from .resolver import parse_servers
        try:
            parse_servers(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected IP addresses with optional ports "
                              f"('127.0.0.1:5353, ::1'): {exc}") from None
    if (section, key) == ("dkim", "authserv_id") and value:
        try:
            value = normalise_domain(value)
        except AddressError as exc:
            raise ConfigError(f"{where}: expected a host or domain name: {exc}") from None
    if (section, key) == ("web", "signup_domains") and value:
        try:
            value = ", ".join(normalise_domain(d) for d in value.replace(",", " ").split())
        except AddressError as exc:
            raise ConfigError(f"{where}: expected domain names: {exc}") from None
    if (section, key) == ("web", "base_url") and value and not value.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: expected an http:// or https:// URL, got {value!r}")
    if (section, key) == ("fleet", "host") and value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", value):
        raise ConfigError(f"{where}: expected a host name (letters, digits, dots, hyphens), got {value!r}")
    if (section, key) == ("aliases", "recipient_delimiter") and len(value) > 1:
        raise ConfigError(f"{where}: expected a single character or an empty string")
    return value


def _check_sections(data: dict, path: str) -> None:
    """What no single key can say."""
    web = data["web"]
    if bool(web["tls_cert"]) != bool(web["tls_key"]):
        raise ConfigError(f"{path}: [web] tls_cert and tls_key go together: give both, or neither")
    for key in ("tls_cert", "tls_key"):
        if web[key] and not web[key].startswith("/"):
            raise ConfigError(f"{path}: [web] {key}: expected an absolute path, got {web[key]!r}")
    reply_domain = data["replies"]["domain"]
    if reply_domain and reply_domain == data["srs"]["domain"]:
        raise ConfigError(f"{path}: [replies] domain must differ from [srs] domain "
                          "(an SRS address accepts only bounces)")


def validate(raw: dict, path: str) -> Config:
    data = copy.deepcopy(defaults.DEFAULTS)
    for section, values in raw.items():
        if section not in data:
            raise ConfigError(f"{path}: unknown section [{section}]{_hint(section, data)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in values.items():
            if key not in data[section]:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{section}]{_hint(key, data[section])}"
                )
            data[section][key] = _check_value(path, section, key, value, data[section][key])
    _check_sections(data, path)
    return Config(path, data)


def load(explicit: str | None = None, *, missing_ok: bool = False) -> Config:
    path = config_path(explicit)
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        if missing_ok:
            return validate({}, path)
        raise ConfigError(f"{path}: no such configuration file (run `tmail init` to create one)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return validate(raw, path)


def render(values: dict) -> str:
    """A TOML file holding `values` (sections of strings, ints and bools)."""
    lines = []
    for section, items in values.items():
        lines.append(f"[{section}]")
        for key, value in items.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int):
                text = str(value)
            else:
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def read_secrets(path: str) -> list[bytes]:
    """SRS secrets, one per line; the first signs, all verify."""
    try:
        with open(path, "rb") as handle:
            secrets = [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the SRS secret file: {exc.strerror}") from None
    if not secrets:
        raise ConfigError(f"{path}: the SRS secret file holds no secret")
    return secrets


def srs_secrets(cfg: Config, engine=None) -> list[bytes]:
    """The SRS secrets, the signing one first: the shared database's in a
    fleet, else the secret file's."""
    if not cfg.fleet:
        return read_secrets(cfg["srs"]["secret_file"])
    from .core.durations import utcnow
    from .db.fleet import read_srs_secrets
    with (engine or cfg.engine()).connect() as conn:
        secrets = read_srs_secrets(conn, cfg.sealer(), utcnow())
    if not secrets:
        raise ConfigError(f"{cfg.path}: [fleet] key_file is set but the database holds no SRS "
                          "secret: run `tmail fleet import` on the host that has the secret file")
    return secrets


def policy(cfg: Config, engine=None):
    """The core's Policy from the configuration (reads the SRS secrets)."""
    from .core.resolve import Policy
    from .core.srs import SrsCodec

    srs_cfg = cfg["srs"]
    codec = None
    if srs_cfg["domain"]:
        codec = SrsCodec(srs_secrets(cfg, engine), srs_cfg["domain"],
                         srs_cfg["max_age_days"], srs_cfg["separator"])
    return Policy(
        recipient_delimiter=cfg["aliases"]["recipient_delimiter"],
        role_local_parts=defaults.ROLE_LOCAL_PARTS,
        admin_address=cfg["aliases"]["admin_address"],
        srs=codec,
        reply_domain=cfg["replies"]["domain"],
        replies_when_inactive=cfg["replies"]["when_inactive"],
    )
