"""Creating an address for the signed-in user: the CLI's rules (tmail alias
add) plus the account's: a domain the user may use, their limits, and
destinations among their verified ones only.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from flask import current_app

from .. import defaults
from ..core import aliases as alias_rules
from ..core.accounts import LimitReached, NotAllowed, TooFast, User, check_new_alias
from ..core.address import AddressError, local_key
from ..core.lifecycle import quarantined_until
from ..core.verdict import AliasRecord
from ..db.store import StoreError
from . import database as db
from .forms import FormError

RANDOM_TRIES = 10


def rules() -> alias_rules.Rules:
    """The CLI's rules, except that a user's destination is never at one of
    tmail's own domains, whatever [aliases] allow_tmail_destinations says."""
    cfg = current_app.extensions["tmail"].config
    return alias_rules.Rules(
        tmail_domains=frozenset(db.store().domain_names()), service_domains=cfg.service_domains,
        recipient_delimiter=cfg["aliases"]["recipient_delimiter"], role_local_parts=defaults.ROLE_LOCAL_PARTS)


def verified(user: User) -> list[str]:
    return [d.address for d in db.accounts().destinations(user.id) if d.verified]


def default_destinations(user: User) -> list[str]:
    """The account's own address when verified, else its first verified one."""
    found = verified(user)
    own = [address for address in found if address.casefold() == user.email]
    return own or found[:1]


def chosen_destinations(user: User, wanted: list[str]) -> tuple[str, ...]:
    allowed = verified(user)
    wanted = [w for w in wanted if w]
    if not wanted:
        raise FormError("Choose at least one destination")
    strangers = [w for w in wanted if w not in allowed]
    if strangers:
        raise FormError(f"{strangers[0]} is not one of your verified destinations")
    try:
        return alias_rules.check_destinations(wanted, rules())
    except AddressError as exc:
        raise FormError(str(exc)) from None


def counts_as_active(record: AliasRecord, now) -> bool:
    """Whether the address counts against the user's limit (as count_active)."""
    return record.enabled and (record.expires_at is None or record.expires_at > now)


def check_limits(user: User, domain: str, created_last_hour: int | None = None) -> None:
    """The user's limits for one more active address at `domain`. The user's
    row is locked first, so two requests at once cannot both pass."""
    state = current_app.extensions["tmail"]
    accounts, now, web = db.accounts(), state.now(), state.config["web"]
    accounts.lock_user(user.id)
    if created_last_hour is None:
        created_last_hour = accounts.created_since(user.id, now - timedelta(hours=1))
    try:
        check_new_alias(user, domain, accounts.shared_domains(), active=accounts.count_active(user.id, now),
                        created_last_hour=created_last_hour, default_max=web["max_aliases"],
                        default_per_hour=web["aliases_per_hour"])
    except NotAllowed as exc:
        raise FormError(str(exc), 403) from None
    except LimitReached as exc:
        raise FormError(str(exc), 409) from None
    except TooFast as exc:
        raise FormError(str(exc), 429) from None


def check_revival(user: User, before: AliasRecord, after: AliasRecord) -> None:
    """A change that makes an expired or disabled address live again makes
    one more active address: the user's limit, as for a new one."""
    now = current_app.extensions["tmail"].now()
    if not counts_as_active(before, now) and counts_as_active(after, now):
        check_limits(user, before.domain, created_last_hour=0)


def _free_local(domain: str, style: str | None = None) -> str:
    state = current_app.extensions["tmail"]
    store, cfg = db.store(), state.config["aliases"]
    style = style or store.domain_settings(domain).random_style or cfg["random_style"]
    for _ in range(RANDOM_TRIES):
        local = alias_rules.random_local(style, cfg["random_length"])
        key = local_key(local)
        if store.get_alias(key, domain) is None and store.retired_at(domain, key) is None:
            return local
    raise FormError("No free random address was found; try again")


def _check_local(local: str, domain: str) -> str:
    state = current_app.extensions["tmail"]
    store, now = db.store(), state.now()
    try:
        alias_rules.check_alias_local(local, rules())
    except AddressError as exc:
        raise FormError(str(exc)) from None
    key = local_key(local)
    if store.get_alias(key, domain) is not None:
        raise FormError(f"{local}@{domain} is taken; choose another name", 409)
    until = quarantined_until(store.retired_at(domain, key), state.config.duration("lifecycle", "quarantine"))
    if until is not None and now < until:
        raise FormError(f"{local}@{domain} was deleted not long ago. It stays unused until {until:%Y-%m-%d} "
                        "so that nobody receives mail meant for its previous owner; choose another name", 409)
    return local


def create(user: User, local: str | None, domain: str, destinations: list[str],
           settings: alias_rules.Settings, *, style: str | None = None,
           domain_defaults: bool = True) -> AliasRecord:
    """A new address owned by `user` (a random one, of `style` or the
    domain's, when `local` is None). `domain_defaults=False`: the settings
    as given (the API's defaults, no expiry unless the user chose one)."""
    state = current_app.extensions["tmail"]
    store, now = db.store(), state.now()
    check_limits(user, domain)
    # the name first: a refusal of it must not say which destinations are verified
    local = _free_local(domain, style) if local is None else _check_local(local, domain)
    dests = chosen_destinations(user, destinations)
    if domain_defaults:
        settings = alias_rules.with_defaults(settings, store.domain_settings(domain))
    record = alias_rules.new_alias(local, domain, dests, settings, now)
    try:
        added = store.add_alias(dataclasses.replace(record, owner_id=user.id))
    except StoreError as exc:
        raise FormError(str(exc)) from None
    db.accounts().note_creation(user.id, now)
    return added
