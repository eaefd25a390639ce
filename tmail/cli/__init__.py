"""The `tmail` command: one click group, one module per command group."""
from __future__ import annotations

import click

from .. import __version__
from .app import App, TmailGroup


@click.group(cls=TmailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="FILE", envvar="TMAIL_CONFIG",
              help="Configuration file (default /etc/tmail/tmail.toml).")
@click.version_option(__version__, prog_name="tmail")
@click.pass_context
def main(ctx, config_path):
    """tmail: temporary e-mail aliases forwarded through Postfix."""
    ctx.obj = App(config_path)


def _register():
    from . import alias, daemon, dkim, doctor, domain, fleet, lifecycle, postfix, resolve, setup, token, user, web
    for module in (alias, daemon, dkim, doctor, domain, fleet, lifecycle, postfix, resolve, setup, token,
                   user, web):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
