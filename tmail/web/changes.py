"""Changes an owner makes to an address, the same from a page and from the
API: blocking a sender, deleting. Each returns the new record or raises
FormError with a sentence for the person.
"""
from __future__ import annotations

import dataclasses

from flask import current_app

from ..core.address import AddressError, parse_block_pattern
from ..core.verdict import AliasRecord
from . import database as db
from .forms import FormError

MAX_BLOCKED = 1000


def blocking(record: AliasRecord, sender: str) -> tuple[AliasRecord, str]:
    """(the record blocking `sender`, the pattern as stored)."""
    try:
        pattern = parse_block_pattern(sender)
    except AddressError as exc:
        raise FormError(f"Cannot block that sender: {exc}") from None
    if len(record.blocked) >= MAX_BLOCKED and pattern not in record.blocked:
        raise FormError(f"This address blocks {MAX_BLOCKED} senders already; unblock some first", 409)
    return dataclasses.replace(record, blocked=tuple(sorted(set(record.blocked) | {pattern}))), pattern


def unblocking(record: AliasRecord, sender: str) -> tuple[AliasRecord, bool]:
    """(the record no longer blocking `sender`, whether it was blocked):
    the pattern as blocking() stored it, so "Spam@Example.test" unblocks
    "spam@example.test"."""
    try:
        pattern = parse_block_pattern(sender)
    except AddressError:
        pattern = sender
    kept = tuple(p for p in record.blocked if p not in (pattern, sender))
    return dataclasses.replace(record, blocked=kept), kept != record.blocked


def delete(record: AliasRecord) -> None:
    """Refused from now on, quarantined, its activity forgotten."""
    db.store().remove_alias(record, current_app.extensions["tmail"].now())
    db.accounts().forget_alias_activity(record.id)
