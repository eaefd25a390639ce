"""The delivery's half of replies through an alias (the milter's half
decides who may send one).

Forwarding to the person: the contacts the message's Reply-To (else From)
names are made or found, Reply-To then names their reverse aliases, and an
answer to one of the person's earlier replies names the person's own
Message-ID again (tmail.core.replywrite.forward_edits).

Sending a reply on: the header is rebuilt from a whitelist
(tmail.core.replywrite.rewrite_reply), To and Cc name the contacts' real
addresses, the Message-ID is one at the alias's domain, derived from the
person's own so that every copy and every retry of one reply carries the
same, and the mapping is kept for the contact's answer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging

from ..core import headers as hdr
from ..core import rfc5322
from ..core.contacts import Contact, reply_targets
from ..core.replyauth import Proof, authorise, check_reply_header
from ..core.replywrite import (
    forward_edits,
    header_addresses,
    mailboxes,
    message_ids,
    new_message_id,
    rewrite_reply,
)
from ..core.scrub import scrub
from ..core.verdict import AliasRecord
from ..db.accounts import Accounts
from ..db.contacts import Contacts

log = logging.getLogger("tmail")

MAX_TARGETS = 10               # reverse aliases one forwarded message's Reply-To may name
MAX_SCRUB_BYTES = 10 * 1024 * 1024   # larger replies go out unscrubbed (logged)


class Refused(Exception):
    """A reply that reached the delivery without the milter's check and
    fails it here."""


@dataclasses.dataclass
class PreparedReply:
    header: bytes
    body: object
    theirs: str          # the person's Message-ID ("" if it had none)
    ours: str            # the one the contact sees


def _shown(contact: Contact) -> str:
    return f"{contact.name} ({contact.address})" if contact.name else contact.address


# -- forwarding to the person ----------------------------------------------------
def forward_edit(service, alias: AliasRecord, header: bytes, reply_domain: str):
    """The edit for prepare_forward (None: nothing to change) and the
    contacts it names."""
    fields = hdr.split_fields(header)
    targets = reply_targets(lambda name: mailboxes(fields, name))[:MAX_TARGETS]
    threading = [mid for f in fields if hdr.name_of(f) in ("in-reply-to", "references")
                 for mid in message_ids(hdr.value_of(f))]
    if not targets and not threading:
        return None, []          # nothing to look up: no write on the way
    now = service.clock()

    def ensure(store):
        book = Contacts(store.conn)
        found = [book.ensure(alias.id, t.address, t.display_name, now)[0] for t in targets]
        return found, book.theirs_for(alias.id, threading)
    used, ids_back = service.write(ensure)
    if not used and not ids_back:
        return None, []
    reply_to = [rfc5322.format_mailbox(_shown(c), c.reply_address(reply_domain)) for c in used] or None
    return (lambda fields: forward_edits(fields, reply_to, ids_back)), used


def note_forwarded(used: list[Contact], now):
    if not used:
        return None

    def note(store):
        book = Contacts(store.conn)
        for contact in used:
            book.note_forward(contact.id, now)
    return note


# -- a reply, on its way to the contact ----------------------------------------------
def our_id(alias: AliasRecord, theirs: str) -> str:
    """The Message-ID the contact sees for the person's `theirs`: the same
    for every copy and retry of one reply, and telling nothing of it."""
    if not theirs:
        return new_message_id(alias.domain)
    digest = hashlib.sha256(f"{alias.id}:{alias.created_at}:{theirs}".encode("utf-8", "surrogateescape"))
    return f"<{digest.hexdigest()[:32]}@{alias.domain}>"


def prepare(service, alias: AliasRecord, contact: Contact, sender: str, header: bytes, body, now, *,
            checked: bool, keep_user_agent: bool = False) -> PreparedReply:
    """The reply as the contact receives it, unsigned. `checked`: the milter
    has authorised it; otherwise (it was submitted on this host, past every
    milter) its sender must be a destination of the alias and its To and
    Cc reverse aliases of it, or it raises Refused."""
    reply_domain = service.policy.reply_domain
    fields = hdr.split_fields(header)
    with service.read() as store:
        book = Contacts(store.conn)
        addressed: dict[str, Contact] = {}

        def own(local: str) -> bool:
            found = book.by_reply_local(local)
            if found is None or found[1].id != alias.id:
                return False
            addressed[local] = found[0]
            return True
        problem = check_reply_header(fields, reply_domain, own)
        if problem and checked:
            # the milter let it through; a contact removed since is left out
            log.info("reply through %s: %s", alias.address, problem)
        elif problem:
            raise Refused(problem)
        if not checked:
            # past every milter (sendmail on this host): trusted as SASL is
            decision = authorise(alias.forwardable, Proof(sender, tuple(mailboxes(fields, "from") or ()),
                                                          authenticated=True))
            if not decision.allowed:
                raise Refused(decision.told)
        theirs_field = hdr.first(fields, "message-id")
        theirs = (message_ids(hdr.value_of(theirs_field)) or [""])[0] if theirs_field else ""
        threading = [mid for f in fields if hdr.name_of(f) in ("in-reply-to", "references")
                     for mid in message_ids(hdr.value_of(f))]
        ids = book.ours_for(alias.id, threading)
    to, cc = _rewritten_recipients(fields, addressed, contact)
    ours = our_id(alias, theirs)
    private = frozenset(d.rpartition("@")[2].lower() for d in alias.destinations)
    out = rewrite_reply(fields, author=rfc5322.format_mailbox(alias.display_name, alias.address),
                        to=to, cc=cc, message_id=ours, ids=ids, private_domains=private, now=now,
                        keep_user_agent=keep_user_agent)
    out_header = b"".join(out)
    if alias.reply_scrub:
        out_header, body = _scrubbed(out_header, body, alias)
    return PreparedReply(out_header, body, theirs, ours)


def _rewritten_recipients(fields, addressed: dict[str, Contact], contact: Contact):
    def mapped(name: str) -> list[str]:
        try:
            boxes = header_addresses(fields, (name,))
        except rfc5322.HeaderSyntaxError:
            return []
        out = []
        for box in boxes:
            found = addressed.get(box.local.lower())
            if found is not None:
                out.append(rfc5322.format_mailbox(found.name, found.address))
        return list(dict.fromkeys(out))
    to, cc = mapped("to"), mapped("cc")
    if not to and not cc:      # sent as Bcc: the contact is who it goes to
        to = [rfc5322.format_mailbox(contact.name, contact.address)]
    return to, cc


def _scrubbed(header: bytes, body, alias: AliasRecord):
    data, chunks = bytearray(), iter(body)
    for chunk in chunks:
        data += chunk
        if len(data) > MAX_SCRUB_BYTES:
            log.warning("reply through %s larger than %d bytes: sent unscrubbed", alias.address,
                        MAX_SCRUB_BYTES)
            return header, _chain([bytes(data)], chunks)
    raw, count = scrub(header + bytes(data), list(alias.destinations), alias.address)
    if count:
        log.info("reply through %s: %d occurrence(s) of a destination replaced", alias.address, count)
    head, sep, rest = raw.partition(b"\n\n")
    return head + b"\n", [sep[1:] + rest]


def _chain(first, rest):
    yield from first
    yield from rest


def note_replied(alias: AliasRecord, contact: Contact, prepared: PreparedReply, now):
    def note(store):
        book = Contacts(store.conn)
        book.note_reply(contact.id, now)
        if prepared.theirs and not book.has_id(prepared.ours):
            book.remember_id(alias.id, prepared.theirs, prepared.ours, now)
        Accounts(store.conn).add_activity([(alias.id, now, contact.address, "reply",
                                            "sent as the alias")])
    return note
