"""Mail loops, found while the sender is still connected.

A message that has passed too many hops, or that names the tmail address
it is sent to in a Delivered-To field (tmail adds one to every forwarded
copy), is going round in a circle. It is refused at the end of the SMTP
transaction, so the connected client learns of it; accepting it and
bouncing later would send the whole message to a sender nobody verified.
"""
from __future__ import annotations

from .address import AddressError, envelope_key
from .receipts import stored_key


def loop_reason(received: int, max_received: int, delivered_to: list[str],
                recipient_keys: list[str]) -> str | None:
    """Why the message loops, or None. `received`: its Received fields;
    `delivered_to`: the values of its Delivered-To fields; `recipient_keys`:
    the stored keys (receipts.stored_key) of tmail's recipients."""
    if received > max_received:
        return f"too many hops ({received} Received fields, at most {max_received})"
    keys = set(recipient_keys)
    for value in delivered_to:
        try:
            key = stored_key(envelope_key(value.strip()))
        except AddressError:
            continue     # not an address: names no recipient of ours
        if key in keys:
            return f"already delivered to {value.strip()} (Delivered-To)"
    return None
