"""tmail daemon: run the milter, the delivery socket and the policy guard."""
from __future__ import annotations

import click

from .app import pass_app


@click.command("daemon")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log here instead of stderr.")
@pass_app
def daemon(app, log_file):
    """Run tmail's long-lived daemon (what systemd starts)."""
    from ..mailpath.daemon import run
    run(app.config, log_file)


COMMANDS = [daemon]
