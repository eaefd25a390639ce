"""tmail alias ensure | import: declarative and bulk, for automation."""
from __future__ import annotations

import dataclasses
import json

import click

from ..core import aliases as rules_mod
from ..core.address import AddressError, check_text, local_key, parse_address, parse_block_pattern
from ..core.durations import parse_duration, parse_when, utcnow
from .alias import _settings, alias, alias_rules, check_not_quarantined, settings_options
from .app import CommandError, UsageError, json_option, pass_app
from .params import ADDRESS, BLOCK_PATTERN


@dataclasses.dataclass(frozen=True)
class Spec:
    """The desired state of one alias."""

    local: str
    domain: str
    to: tuple[str, ...]
    settings: rules_mod.Settings
    present: bool = True


def desired(spec: Spec, existing, rules, now, domain_defaults=None):
    """The record `spec` asks for (None when absent), given what exists.
    A new alias takes its domain's defaults where the spec is silent."""
    if not spec.present:
        return None
    rules_mod.check_alias_local(spec.local, rules)
    dests = rules_mod.check_destinations(list(spec.to), rules)
    if existing is None:
        settings = spec.settings
        if domain_defaults is not None:
            settings = rules_mod.with_defaults(settings, domain_defaults)
        return rules_mod.new_alias(spec.local, spec.domain, dests, settings, now)
    base = dataclasses.replace(existing, local=spec.local, destinations=dests)
    return rules_mod.apply(base, spec.settings, existing.created_at)


@alias.command("ensure")
@click.argument("address", type=ADDRESS)
@click.option("--to", "to", multiple=True, help="The destinations (the whole list).")
@click.option("--enabled/--disabled", default=None, help="Whether the alias accepts mail.")
@click.option("--block", "blocked", multiple=True, type=BLOCK_PATTERN,
              help="The whole list of blocked senders (repeatable).")
@click.option("--no-blocks", is_flag=True, help="Block no sender.")
@click.option("--absent", is_flag=True, help="Make sure the alias does not exist.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing (check mode).")
@settings_options
@json_option
@pass_app
def ensure(app, address, to, enabled, blocked, no_blocks, absent, dry_run, allow_tmail_destination, **options):
    """Make ADDRESS match the given options; says whether anything changed.

    Options not given are left as they are; --ttl counts from the alias's
    creation, so running the same command again changes nothing. With
    --dry-run the same work is done and rolled back: `changed` and the
    alias are what a real run would report.
    """
    if not absent and not to:
        raise UsageError("--to is required unless --absent")
    block_list = () if no_blocks else (tuple(blocked) or None)
    spec = Spec(address.local, address.domain, tuple(to),
                _settings(enabled=enabled, blocked=block_list, **options), not absent)
    now = utcnow()
    with app.store(dry_run=dry_run) as store:
        if absent and not store.is_tmail_domain(address.domain):
            app.emit({"ok": True, "changed": False, "dry_run": dry_run, "address": str(address), "alias": None},
                     f"{address}: absent")
            return
        store.require_domain(address.domain)
        rules = alias_rules(app, store, allow_tmail_destination)
        existing = store.get_alias(address.key, address.domain)
        want = desired(spec, existing, rules, now, store.domain_settings(address.domain))
        if want is None:
            changed = existing is not None
            if changed:
                store.remove_alias(existing, now)
            app.emit({"ok": True, "changed": changed, "dry_run": dry_run, "address": str(address),
                      "alias": None},
                     f"{address}: {('would be ' if dry_run else '') + 'removed' if changed else 'absent'}")
            return
        if existing is None:
            check_not_quarantined(app, store, want.local, want.domain, now)
            record, changed = store.add_alias(want), True
        elif rules_mod.same_settings(existing, want):
            record, changed = existing, False
        else:
            record, changed = store.replace_alias(want), True
    app.emit({"ok": True, "changed": changed, "dry_run": dry_run, "alias": rules_mod.describe(record, now)},
             f"{record.address}: {('would be ' if dry_run else '') + 'changed' if changed else 'unchanged'}")


_IMPORT_KEYS = {"address", "to", "ttl", "expires", "max_messages", "idle", "on_expiry",
                "note", "enabled", "blocked_senders", "state", "from_rewrite"}


def parse_line(number: int, line: str) -> Spec:
    """One JSON line of `tmail alias import` -> Spec, or ValueError naming the line."""
    try:
        item = json.loads(line)
        if not isinstance(item, dict):
            raise ValueError("expected a JSON object")
        unknown = set(item) - _IMPORT_KEYS
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_IMPORT_KEYS))}")
        address = parse_address(_str(item, "address", required=True))
        to = item.get("to", [])
        to = [to] if isinstance(to, str) else to
        if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
            raise ValueError("'to' must be an address or a list of addresses")
        state = item.get("state", "present")
        if state not in ("present", "absent"):
            raise ValueError("'state' must be present or absent")
        blocked = item.get("blocked_senders")
        if blocked is not None:
            if not isinstance(blocked, list):
                raise ValueError("'blocked_senders' must be a list")
            blocked = tuple(parse_block_pattern(b) for b in blocked)
        enabled = item.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError("'enabled' must be true or false")
        max_messages = item.get("max_messages")
        if max_messages is not None and (isinstance(max_messages, bool) or not isinstance(max_messages, int)):
            raise ValueError("'max_messages' must be an integer")
        on_expiry = item.get("on_expiry")
        if on_expiry not in (None, "reject", "drop"):
            raise ValueError("'on_expiry' must be reject or drop")
        from_rewrite = item.get("from_rewrite")
        if from_rewrite not in (None, "never", "when-needed", "always", "domain"):
            raise ValueError("'from_rewrite' must be never, when-needed, always or domain")
        note = item.get("note")
        if note is not None:
            check_text(_str(item, "note"), "note")
        settings = rules_mod.Settings(
            ttl=_opt(item, "ttl", parse_duration), expires=_opt(item, "expires", parse_when),
            max_messages=max_messages, idle=_opt(item, "idle", parse_duration),
            on_expiry=on_expiry, note=note, enabled=enabled, blocked=blocked,
            from_rewrite=from_rewrite)
        if state == "present" and not to:
            raise ValueError("'to' is required")
        return Spec(address.local, address.domain, tuple(to), settings, state == "present")
    except (ValueError, AddressError) as exc:
        raise ValueError(f"line {number}: {exc}") from None


def _str(item, key, required=False):
    value = item.get(key)
    if value is None and required:
        raise ValueError(f"{key!r} is required")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _opt(item, key, parse):
    value = _str(item, key)
    return None if value is None else parse(value)


@alias.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--allow-tmail-destination", is_flag=True)
@json_option
@pass_app
def import_(app, file, allow_tmail_destination):
    """Create or update aliases from JSON lines (all or nothing).

    Each line: {"address": "a@d.test", "to": ["me@x.test"], "ttl": "7d",
    "max_messages": 5, "idle": "30d", "on_expiry": "reject", "note": "...",
    "enabled": true, "blocked_senders": ["@spam.test"], "state": "present"}.
    """
    specs, errors = [], []
    for number, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            specs.append(parse_line(number, line))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise UsageError(f"{len(errors)} bad line(s), nothing imported: {shown}")
    now = utcnow()
    counts = {"created": 0, "updated": 0, "removed": 0, "unchanged": 0}
    with app.store() as store:
        rules = alias_rules(app, store, allow_tmail_destination)
        missing = {s.domain for s in specs} - rules.tmail_domains
        if missing:
            raise CommandError(f"not tmail domains: {', '.join(sorted(missing))}; nothing imported")
        existing = store.aliases_by_key([(local_key(s.local), s.domain) for s in specs])
        domains = {s.domain for s in specs}
        defaults_of = {d: store.domain_settings(d) for d in domains}
        since = now - app.config.duration("lifecycle", "quarantine")
        quarantined = {(k, d) for d in domains for k in store.retired_keys(d, since)}
        new = {}
        for number, spec in enumerate(specs, 1):
            key = (local_key(spec.local), spec.domain)
            if spec.present and key not in existing and key in quarantined:
                raise CommandError(f"entry {number} ({spec.local}@{spec.domain}) was removed "
                                   "recently and is quarantined; nothing imported")
            try:
                want = desired(spec, existing.get(key), rules, now, defaults_of[spec.domain])
            except (ValueError, AddressError) as exc:
                raise UsageError(f"entry {number} ({spec.local}@{spec.domain}): {exc}; "
                                 "nothing imported") from None
            old = existing.get(key)
            if want is None:
                if old is not None:
                    store.remove_alias(old, now)
                    counts["removed"] += 1
                new.pop(key, None)
            elif old is None:
                new[key] = want
            elif rules_mod.same_settings(old, want):
                counts["unchanged"] += 1
            else:
                store.replace_alias(want)
                counts["updated"] += 1
        store.add_aliases(list(new.values()))
        counts["created"] = len(new)
    app.emit({"ok": True, "changed": any(counts[k] for k in ("created", "updated", "removed")),
              **counts},
             ", ".join(f"{v} {k}" for k, v in counts.items()))
