"""tmail dkim keygen | show-dns | activate | remove | list

Rotation: `keygen` a second selector, publish its record, `activate` it once
DNS has it, `remove` the old selector after the mail it signed is delivered
(a few days).
"""
from __future__ import annotations

import click

from ..keys import ALGORITHMS, DkimKeyError, check_selector, public_record, record_name, zone_txt
from ..sealing import SealError
from .app import CommandError, json_option, pass_app
from .fleet import require_key_opens
from .params import DOMAIN


def _store(app):
    return app.config.key_store(app.engine)


def signing_domains(app) -> list[str]:
    """tmail's domains and its SRS domain: the domains tmail sends mail from."""
    with app.store() as store:
        names = store.domain_names()
    srs = app.config["srs"]["domain"]
    return sorted(set(names) | ({srs} if srs else set()))


def _check_domain(app, domain: str) -> None:
    if domain not in signing_domains(app):
        raise CommandError(f"{domain} is neither a tmail domain nor the SRS domain "
                           f"(add it with `tmail domain add {domain}`)")


def _selector(value: str) -> str:
    try:
        return check_selector(value)
    except DkimKeyError as exc:
        raise click.BadParameter(str(exc)) from None


def _records(app, store, domain, selector=None) -> list[dict]:
    active = store.active(domain)
    rows = []
    for key in store.keys(domain):
        if selector and key.selector != selector:
            continue
        try:
            value = public_record(key.algorithm, store.read(key))
        except OSError as exc:
            raise CommandError(f"cannot read {key.path}: {exc.strerror}") from None
        except SealError as exc:
            raise CommandError(str(exc)) from None
        name = record_name(domain, key.dns_selector)
        rows.append({"domain": domain, "selector": key.selector, "algorithm": key.algorithm,
                     "active": key.selector == active, "name": name, "value": value,
                     "zone": zone_txt(name, value), "path": key.path})
    return rows


def _text(rows) -> str:
    return "\n".join(f"; {r['domain']} selector {r['selector']} ({r['algorithm']}"
                     f"{', active' if r['active'] else ''})\n{r['zone']}" for r in rows) or "no DKIM keys"


@click.group()
def dkim():
    """DKIM keys of tmail's domains (and the DNS records to publish)."""


@dkim.command("keygen")
@click.option("--domain", required=True, type=DOMAIN, help="A tmail domain or the SRS domain.")
@click.option("--selector", required=True, callback=lambda c, p, v: _selector(v), help="e.g. s2026")
@click.option("--algorithm", type=click.Choice(["rsa", "ed25519", "both"]), default="both",
              show_default=True, help="ed25519 signatures are added to RSA ones, never alone.")
@click.option("--bits", type=click.Choice(["2048", "3072", "4096"]), default="2048", show_default=True)
@click.option("--activate/--no-activate", default=None,
              help="Sign with this selector now (default: only if the domain has none yet).")
@json_option
@pass_app
def keygen(app, domain, selector, algorithm, bits, activate):
    """Create the keys of a selector (idempotent) and print its DNS records."""
    _check_domain(app, domain)
    require_key_opens(app)
    store = _store(app)
    wanted = ALGORITHMS if algorithm == "both" else (algorithm,)
    changed = False
    try:
        for name in wanted:
            changed |= store.create(domain, selector, name, int(bits))[1]
        if activate or (activate is None and store.active(domain) is None):
            changed |= store.activate(domain, selector)
    except OSError as exc:
        raise CommandError(f"cannot write keys under {app.config['dkim']['key_directory']}: "
                           f"{exc.strerror}") from None
    rows = _records(app, store, domain, selector)
    hint = "" if rows[0]["active"] else \
        f"\n; publish, then: tmail dkim activate --domain {domain} --selector {selector}"
    app.emit({"ok": True, "changed": changed, "records": rows}, _text(rows) + hint)


@dkim.command("show-dns")
@click.option("--domain", type=DOMAIN, help="Only this domain.")
@click.option("--selector", help="Only this selector.")
@json_option
@pass_app
def show_dns(app, domain, selector):
    """Print the DNS TXT records of the keys on disk."""
    store = _store(app)
    domains = [domain] if domain else store.domains()
    rows = [row for d in domains for row in _records(app, store, d, selector)]
    if (domain or selector) and not rows:
        raise CommandError(f"no DKIM key for {domain or 'any domain'}"
                           f"{' selector ' + selector if selector else ''}")
    app.emit({"ok": True, "records": rows}, _text(rows))


@dkim.command("list")
@json_option
@pass_app
def list_(app):
    """Every domain tmail sends from, with its selectors (and which one signs)."""
    store = _store(app)
    rows = []
    for domain in signing_domains(app):
        keys = store.keys(domain)
        rows.append({"domain": domain, "active": store.active(domain),
                     "selectors": sorted({k.selector for k in keys}),
                     "algorithms": sorted({k.algorithm for k in keys})})
    text = "\n".join(f"{r['domain']:40} active={r['active'] or '-':12} selectors={','.join(r['selectors']) or '-'}"
                     for r in rows) or "no domains"
    app.emit({"ok": True, "domains": rows}, text)


def _change(app, action, domain, selector):
    try:
        return action(domain, selector)
    except DkimKeyError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot change keys under {app.config['dkim']['key_directory']}: "
                           f"{exc.strerror}") from None


@dkim.command("activate")
@click.option("--domain", required=True, type=DOMAIN)
@click.option("--selector", required=True, callback=lambda c, p, v: _selector(v))
@json_option
@pass_app
def activate(app, domain, selector):
    """Sign the domain's mail with SELECTOR (publish its record first)."""
    changed = _change(app, _store(app).activate, domain, selector)
    app.emit({"ok": True, "changed": changed, "domain": domain, "active": selector},
             f"{domain} signs with {selector}" + ("" if changed else " already"))


@dkim.command("remove")
@click.option("--domain", required=True, type=DOMAIN)
@click.option("--selector", required=True, callback=lambda c, p, v: _selector(v))
@json_option
@pass_app
def remove(app, domain, selector):
    """Delete a retired selector's keys (not the active one)."""
    removed = _change(app, _store(app).remove, domain, selector)
    app.emit({"ok": True, "changed": bool(removed), "domain": domain, "selector": selector},
             f"removed {len(removed)} key(s) of {domain} selector {selector}")


COMMANDS = [dkim]
