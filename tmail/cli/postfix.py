"""tmail postfix install | uninstall | sync (check: postfix_check.py)"""
from __future__ import annotations

import os
import shutil
import subprocess

import click

from .. import postfix_wiring as wiring
from .app import CommandError, json_option, pass_app
from .follow import follow
from .postfix_check import check


class Postconf:
    """The thin adapter over postconf(1), postmap(1) and postfix(1)."""

    def __init__(self, config_directory: str):
        self.dir = config_directory

    def _run(self, *args, check=True) -> str:
        try:
            result = subprocess.run(args, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise CommandError(f"{args[0]} not found: is Postfix installed?") from None
        if check and result.returncode != 0:
            raise CommandError(f"{' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def main(self) -> dict[str, str]:
        return _parse_params(self._run("postconf", "-c", self.dir, "-n"))

    def value(self, name: str) -> str:
        return self._run("postconf", "-c", self.dir, "-h", name).strip()

    def defaults(self, names) -> dict[str, str]:
        return _parse_params(self._run("postconf", "-c", self.dir, "-d", *names))

    def master(self) -> dict[str, str]:
        entries = {}
        for line in self._run("postconf", "-c", self.dir, "-M").splitlines():
            fields = line.split()
            if len(fields) >= 8:
                entries[f"{fields[0]}/{fields[1]}"] = line.strip()
        return entries

    def apply(self, change: wiring.Change) -> None:
        if change.kind == "main":
            if change.new is None:
                self._run("postconf", "-c", self.dir, "-X", change.name)
            else:
                self._run("postconf", "-c", self.dir, "-e", f"{change.name}={change.new}")
        elif change.new is None:
            self._run("postconf", "-c", self.dir, "-MX", change.name)
        else:
            self._run("postconf", "-c", self.dir, "-M", f"{change.name}={change.new}")

    def own_domains(self) -> frozenset[str]:
        """The names Postfix already delivers or relays itself (literal
        entries; tables and patterns are the admin's to keep apart)."""
        out = self._run("postconf", "-c", self.dir, "-x", "-h", "mydestination", "myhostname",
                        "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains")
        return frozenset(item.lower().rstrip(".") for item in wiring.split_list(out.replace("\n", " "))
                         if ":" not in item and not item.startswith(("/", "!", "$")))

    def postmap(self, path: str) -> None:
        self._run("postmap", "-c", self.dir, f"hash:{path}")

    def reload(self) -> bool:
        """Reload a running Postfix; False if it is not running or we may not."""
        if os.geteuid() != 0:
            return False
        status = subprocess.run(["postfix", "-c", self.dir, "status"], capture_output=True,
                                check=False)
        if status.returncode != 0:
            return False
        self._run("postfix", "-c", self.dir, "reload")
        return True


def _parse_params(text: str) -> dict[str, str]:
    params = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            params[name.strip()] = value.strip()
        elif line.endswith(" ="):
            params[line[:-2].strip()] = ""
    return params


def current_state(cfg, postconf: Postconf):
    """main.cf as written (a parameter it does not set: Postfix's default,
    unexpanded), master.cf, and the defaults of tmail's list parameters."""
    defaults = postconf.defaults(list(wiring.list_items(cfg)))
    explicit = postconf.main()
    return {**defaults, **explicit}, postconf.master(), defaults


def installed_transport(postconf: Postconf) -> str:
    """pipe or lmtp: what master.cf's `tmail` service is (the one place
    that says it; the default where Postfix cannot be asked)."""
    try:
        return wiring.transport_of(postconf.master())
    except CommandError:
        return wiring.DEFAULT_TRANSPORT


def routed_domains(cfg, domains: list[str], own: frozenset[str] = frozenset()) -> list[str]:
    """What Postfix should route to tmail: the database's domains that are
    fit for its tables, and not `own` (what Postfix already delivers or
    relays: a row in the shared database must not take this host's other
    mail); others are named on stderr and left out. And the SRS and reply
    domains."""
    unfit = [d for d in domains if not wiring.routable(d)]
    if unfit:
        click.echo(f"tmail: warning: the database holds names that are not domain names; Postfix "
                   f"does not route them: {', '.join(map(repr, unfit))}", err=True)
    taken = sorted(set(domains) & own)
    if taken:
        click.echo(f"tmail: warning: Postfix already delivers or relays these itself (mydestination, "
                   f"virtual or relay domains); not routed to tmail: {', '.join(map(repr, taken))}",
                   err=True)
    return sorted({d for d in domains if wiring.routable(d) and d not in own} | cfg.service_domains)


def table_is_current(path: str, name: str, content: str) -> bool:
    """The table file holds `content` (and, for a hash: table, is compiled)."""
    try:
        with open(path) as handle:
            return handle.read() == content and (not wiring.indexed(name) or os.path.exists(path + ".db"))
    except OSError:       # missing or unreadable: written (again)
        return False


def write_tables(cfg, routed: list[str], postconf: Postconf, transport: str) -> list[str]:
    """Write tmail's lookup tables routing `routed` to tmail (routed_domains
    made it); returns the ones changed. Postfix is not reloaded here."""
    directory = cfg["postfix"]["map_directory"]
    if not directory:
        return []
    os.makedirs(directory, mode=0o755, exist_ok=True)
    changed = []
    for name, content in wiring.map_files(routed, nexthop=wiring.nexthop(cfg, transport)).items():
        path = os.path.join(directory, name)
        if table_is_current(path, name, content):
            continue
        # Build beside, then rename: Postfix never sees a half-written table.
        # The name is this process's: the follower and a CLI command can
        # write at once (each from the database; the later rename wins).
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as handle:
                handle.write(content)
            if wiring.indexed(name):
                postconf.postmap(tmp)
                os.replace(tmp + ".db", path + ".db")
            os.replace(tmp, path)
        finally:
            for leftover in (tmp, tmp + ".db"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        changed.append(path)
    return changed


def sync_maps(cfg, domains: list[str], postconf: Postconf | None = None,
              reload: bool = True, transport: str | None = None) -> list[str]:
    """Write tmail's lookup tables from the database; returns the ones changed.

    A running Postfix is reloaded after a change: its daemons notice a
    rebuilt hash table only after serving one more request from the old
    one, and that request could be routed past tmail or refused as relay.
    """
    if not cfg["postfix"]["map_directory"]:
        return []
    postconf = postconf or Postconf(cfg["postfix"]["config_directory"])
    routed = routed_domains(cfg, domains, postconf.own_domains())
    changed = write_tables(cfg, routed, postconf, transport or installed_transport(postconf))
    if changed and reload and not postconf.reload():
        click.echo("tmail: warning: Postfix's tables changed; run `postfix reload` (as root) "
                   "so that all of its processes use them at once", err=True)
    return changed


@click.group("postfix")
def postfix():
    """Wire tmail into Postfix (main.cf, master.cf, lookup tables)."""


@postfix.command("install")
@click.option("--dry-run", is_flag=True, help="Print the changes; change nothing.")
@click.option("--force", is_flag=True, help="Replace conflicting settings.")
@click.option("--no-reload", is_flag=True, help="Do not reload a running Postfix.")
@click.option("--transport", type=click.Choice(wiring.TRANSPORTS),
              help="How Postfix hands mail to tmail: lmtp (connections kept open, no process per "
                   "message) or pipe (a tmail-deliver process per message). Default: the one "
                   "installed, else pipe.")
@json_option
@pass_app
def install(app, dry_run, force, no_reload, transport):
    """Add tmail's settings to Postfix (idempotent; backs up the originals)."""
    cfg = app.config
    if not cfg["postfix"]["map_directory"]:
        raise CommandError(f"{cfg.path}: set [postfix] map_directory first "
                           "(for example /etc/postfix/tmail)")
    postconf = Postconf(cfg["postfix"]["config_directory"])
    main, master, _defaults = current_state(cfg, postconf)
    transport = transport or wiring.transport_of(master)
    try:
        changes = wiring.install_changes(cfg, main, master, force, transport)
    except wiring.Conflict as exc:
        raise CommandError(str(exc)) from None
    maps_changed = []
    if not dry_run:
        with app.store() as store:
            domains = store.domain_names()
        maps_changed = sync_maps(cfg, domains, postconf, reload=False, transport=transport)
        if changes:
            _backup(cfg["postfix"]["config_directory"])
        for change in changes:
            postconf.apply(change)
    reloaded = bool(changes or maps_changed) and not dry_run and not no_reload and postconf.reload()
    app.emit({"ok": True, "changed": bool(changes or maps_changed), "dry_run": dry_run, "transport": transport,
              "changes": [str(c) for c in changes], "maps": maps_changed, "reloaded": reloaded},
             "\n".join([("would " if dry_run else "") + str(c) for c in changes]
                       + [f"wrote {m}" for m in maps_changed]) or "Postfix is already wired for tmail")


def _backup(directory: str) -> None:
    for name in ("main.cf", "master.cf"):
        original = os.path.join(directory, name)
        backup = original + ".tmail-backup"
        if os.path.exists(original) and not os.path.exists(backup):
            shutil.copy2(original, backup)


@postfix.command("uninstall")
@click.option("--dry-run", is_flag=True)
@click.option("--no-reload", is_flag=True)
@json_option
@pass_app
def uninstall(app, dry_run, no_reload):
    """Remove everything `install` added, leaving other settings alone.

    A list parameter left holding its default is deleted, not written out,
    so main.cf ends as it was before install."""
    cfg = app.config
    postconf = Postconf(cfg["postfix"]["config_directory"])
    main, master, defaults = current_state(cfg, postconf)
    changes = wiring.uninstall_changes(cfg, main, master, defaults)
    if not dry_run:
        for change in changes:
            postconf.apply(change)
    reloaded = bool(changes) and not dry_run and not no_reload and postconf.reload()
    app.emit({"ok": True, "changed": bool(changes), "dry_run": dry_run,
              "changes": [str(c) for c in changes], "reloaded": reloaded},
             "\n".join(("would " if dry_run else "") + str(c) for c in changes)
             or "nothing of tmail's in Postfix")


@postfix.command("sync")
@json_option
@pass_app
def sync(app):
    """Rewrite tmail's lookup tables from the database."""
    with app.store() as store:
        domains = store.domain_names()
    changed = sync_maps(app.config, domains)
    app.emit({"ok": True, "changed": bool(changed), "maps": changed},
             "\n".join(f"wrote {m}" for m in changed) or "tables up to date")


postfix.add_command(check)
postfix.add_command(follow)
COMMANDS = [postfix]
