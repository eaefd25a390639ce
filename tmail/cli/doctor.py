"""tmail doctor: check the DNS of every domain tmail receives or sends for."""
from __future__ import annotations

import ipaddress
import socket

import click

from .. import doctor as doctor_mod
from .app import CommandError, json_option, pass_app, printable
from .dkim import signing_domains
from .fleet import fleet_problems
from .params import DOMAIN


def _ip(ctx, param, values):
    try:
        return [str(ipaddress.ip_address(v)) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("doctor")
@click.option("--domain", "only", type=DOMAIN, multiple=True, help="Only this domain (repeatable).")
@click.option("--host", help="This host's name, as MX records name it (default: its FQDN).")
@click.option("--ip", "ips", multiple=True, callback=_ip,
              help="An address this host sends from (repeatable; default: the host name's).")
@json_option
@pass_app
def doctor(app, only, host, ips):
    """Check MX, SPF, DKIM and DMARC records; print what to publish. Exit 1 on errors."""
    from ..mailpath.arrival import checker

    cfg = app.config
    resolver = cfg.resolver()
    resolver.install()
    host = host or socket.getfqdn()
    addresses = list(ips) or resolver.addresses(host) or []
    domains = signing_domains(app)
    unknown = [d for d in only if d not in domains]
    if unknown:
        raise CommandError(f"{', '.join(unknown)}: neither a tmail domain nor the SRS domain")
    domains = list(only) or domains
    check_spf = checker(cfg["dns"]["timeout_s"])
    report = doctor_mod.diagnose(domains, cfg["srs"]["domain"], resolver, cfg.key_store(app.engine),
                                 doctor_mod.Host(host, addresses),
                                 lambda ip, sender, helo: check_spf(ip, sender, helo).result)
    fleet = fleet_problems(app)     # where hosts sharing this database disagree
    errors = sum(c["status"] == doctor_mod.ERROR for d in report for c in d["checks"]) + len(fleet)
    warnings = sum(c["status"] == doctor_mod.WARNING for d in report for c in d["checks"])
    lines = []
    for entry in report:
        lines.append(f"{entry['domain']} ({entry['role']})")
        for c in entry["checks"]:
            lines.append(f"  {c['status']:8} {c['check']:14} {c['detail']}")
            if c["publish"] and c["status"] != doctor_mod.OK:
                lines.append(f"           publish: {c['publish']}")
    lines += [f"fleet: ERROR {printable(p)}" for p in fleet]
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    app.emit({"ok": errors == 0, "host": host, "addresses": addresses, "errors": errors,
              "warnings": warnings, "domains": report, "fleet": fleet}, "\n".join(lines))
    if errors:
        raise SystemExit(1)


COMMANDS = [doctor]
