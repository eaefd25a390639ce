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
