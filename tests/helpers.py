"""Helpers for the CLI tests: a configuration file and a runner."""
from __future__ import annotations

import json

from click.testing import CliRunner


def write_config(path, db_url, **sections) -> str:
    from tmail.config import render
    values = {"database": {"url": db_url},
              "srs": {"domain": "srs.fwd.test", "secret_file": str(path / "srs.secret")},
              "dkim": {"key_directory": str(path / "dkim")}}
    for section, items in sections.items():
        values.setdefault(section, {}).update(items)
    (path / "srs.secret").write_text("test-secret-1\n")
    config = path / "tmail.toml"
    config.write_text(render(values))
    return str(config)


class Cli:
    """Runs `tmail` through click's runner against a real configuration."""

    def __init__(self, config: str):
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args, ok=True):
        from tmail.cli import main
        result = self.runner.invoke(main, ["--config", self.config, *args], catch_exceptions=False)
        if ok is True:
            assert result.exit_code == 0, result.output + (result.stderr if result.stderr_bytes else "")
        elif ok is not None:
            assert result.exit_code == ok, result.output
        return result

    def json(self, *args, ok=True):
        result = self(*args, "--json", ok=ok)
        return json.loads(result.stdout.strip().splitlines()[-1])


def d_test_keys(directory):
    """A key directory with d.test's RSA and ed25519 keys (selector s1) active,
    and the TXT records that publish them."""
    from tmail.keys import KeyStore, public_record
    store = KeyStore(str(directory))
    for algorithm in ("rsa", "ed25519"):
        store.create("d.test", "s1", algorithm, 1024)
    store.activate("d.test", "s1")
    return store, {f"{key.dns_selector}._domainkey.d.test": [public_record(key.algorithm, store.read(key)).encode()]
                   for key in store.keys("d.test")}
