"""What tmail changes in Postfix's main.cf and master.cf, computed purely.

Every change is either one item added to a list-valued parameter (left in
place if there already) or a parameter/service of tmail's own. The adapter
(tmail.cli.postfix) reads the current values with postconf, asks this module
what to change, and applies it with postconf -e / -X / -M.

Values are always Postfix's unexpanded text: what main.cf says, or for a
parameter it does not set, Postfix's default (`postconf -d`), which may be
an expression such as relay_domains' `${{$compatibility_level} <level {2} ?
{$mydestination} : {}}`. Building on the expanded value would freeze today's
result into main.cf; building on the text keeps it live, and lets uninstall
recognise "back to the default" and delete the line instead of leaving
`relay_domains = <what the default expanded to>` or an empty `smtpd_milters =`.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

MASTER_PIPE = "tmail/unix"
MASTER_CLEANUP = "tmail-cleanup/unix"
# The milter and guard sockets' directory under the queue directory: owned
# by tmail, group SOCKET_GROUP (the postfix user's only link to tmail),
# setgid so the sockets the daemon makes there get that group.
SOCKET_GROUP = "tmail-postfix"
SOCKET_DIR_MODE = 0o2750


@dataclass(frozen=True)
class Change:
    kind: str        # "main" or "master"
    name: str        # parameter name, or service/type
    old: str | None
    new: str | None  # None removes it

    def __str__(self) -> str:
        if self.new is None:
            return f"remove {self.kind} {self.name} (was: {self.old})"
        return f"set {self.kind} {self.name} = {self.new}" + (f"   (was: {self.old})" if self.old else "")


def maps(cfg) -> dict[str, str]:
    """The tables tmail writes, as main.cf names them.

    The relay domains are a regexp: table of anchored names, not a hash:
    Postfix looks up the parent domains of a name in fixed-string tables
    listed in relay_domains (parent_domain_matches_subdomains), so with a
    hash: table `anyone@sub.d.example` was a relay domain nobody routed to
    tmail: relayed past the milter to whatever DNS says."""
    directory = cfg["postfix"]["map_directory"]
    return {"domains": f"regexp:{directory}/{DOMAINS_TABLE}",
            "transport": f"hash:{directory}/transport", "guard": f"hash:{directory}/guard"}


DOMAINS_TABLE = "domains.regexp"


def legacy_items(cfg) -> dict[str, list[str]]:
    """Items earlier versions added, taken out by install and uninstall."""
    return {"relay_domains": [f"hash:{cfg['postfix']['map_directory']}/domains"]}


def indexed(table: str) -> bool:
    """Whether a table file is compiled with postmap (hash:), or read as is."""
    return not table.endswith(".regexp")


def _listener_key(cfg) -> str:
    return f"{cfg['postfix']['reinject_listener']}/inet"


def _milter(cfg) -> str:
    # default_action=accept: with the daemon down, other mail keeps flowing;
    # the guard below defers tmail's own recipients.
    return f"{{ unix:{cfg['daemon']['milter_socket']}, default_action=accept, command_timeout=20s }}"


def list_items(cfg) -> dict[str, tuple[str, str]]:
    """List parameters tmail adds one item to: name -> (item, 'first'|'last')."""
    m = maps(cfg)
    return {
        "smtpd_milters": (_milter(cfg), "first"),
        "transport_maps": (m["transport"], "first"),
        "relay_domains": (m["domains"], "last"),
        "smtpd_recipient_restrictions": (f"check_recipient_access {m['guard']}", "first"),
        "smtpd_restriction_classes": ("tmail_guard", "last"),
    }


def own_params(cfg, transport: str = "pipe") -> dict[str, str]:
    """Parameters that are tmail's alone (uninstall: the pipe's, the most)."""
    params = {
        "tmail_guard": (f"check_policy_service {{ unix:{cfg['daemon']['policy_socket']}, "
                        "default_action=DEFER_IF_PERMIT }"),
        "tmail_destination_recipient_limit": "1",
    }
    if transport == "pipe":      # pipe(8)'s own limit; lmtp(8) has its timeouts
        params["tmail_time_limit"] = "900s"
    return params


TRANSPORTS = ("pipe", "lmtp")
# For a new install. Measured side by side (bench/forwarding.py), LMTP
# forwards about 1.4 times as many messages a second as the pipe at about
# 0.6 times the CPU a message: no process is started per message, and
# Postfix keeps the connections open. The pipe stays for those who prefer
# one process a message to reason about.
DEFAULT_TRANSPORT = "lmtp"


def lmtp_socket(cfg) -> str:
    """The daemon's LMTP socket, absolute (lmtp(8) runs outside the chroot)."""
    path = cfg["daemon"]["lmtp_socket"]
    return path if path.startswith("/") else f"{cfg['daemon']['postfix_queue_directory'].rstrip('/')}/{path}"


def transport_of(master: dict[str, str]) -> str:
    """Which transport the installed `tmail` service is (the default when none is)."""
    fields = (master.get(MASTER_PIPE) or "").split()
    if len(fields) >= 8:
        return "lmtp" if fields[7] == "lmtp" else "pipe"
    return DEFAULT_TRANSPORT


def nexthop(cfg, transport: str) -> str:
    """What the transport table gives after `tmail:`: lmtp(8) needs the
    socket (else it would connect to the recipient's domain); pipe nothing."""
    return f"unix:{lmtp_socket(cfg)}" if transport == "lmtp" else ""


def deliver_command(cfg) -> str:
    """What pipe(8) runs: [postfix] deliver_command, or by default this
    installation's interpreter on tmail's deliver.py, isolated (-I) and
    without the site module (-S), which the pipe would pay on every message."""
    configured = cfg["postfix"]["deliver_command"]
    if configured:
        return configured
    from .mailpath import deliver
    interpreter, script = sys.executable, os.path.abspath(deliver.__file__)
    if any(c.isspace() for c in interpreter + script):    # pipe(8) splits its argv at blanks
        return os.path.join(os.path.dirname(interpreter), "tmail-deliver")
    return f"{interpreter} -IS {script}"


def master_entries(cfg, transport: str = "pipe") -> dict[str, str]:
    p = cfg["postfix"]
    if transport == "lmtp":
        # Connections kept open and reused: no process per message. The
        # queue id, by which the milter kept its receipt, comes over
        # XFORWARD IDENT; without it tmail defers (451).
        # lmtp_line_length_limit=0: Postfix would fold lines over 998
        # characters, breaking the sender's DKIM body hash, as the pipe does not.
        tmail = ("tmail unix - - n - - lmtp -o syslog_name=postfix/tmail-lmtp"
                 " -o lmtp_send_xforward_command=yes -o lmtp_line_length_limit=0")
    else:
        # No flags=D: pipe would bounce a message that already has this
        # Delivered-To, i.e. send backscatter to a probably forged sender; tmail
        # detects loops itself. null_sender= passes <> as an empty argument
        # (else MAILER-DAEMON); one recipient per run (tmail_destination_
        # recipient_limit) so each alias is counted and answered on its own.
        tmail = (f"tmail unix - n n - - pipe null_sender= user={p['pipe_user']} "
                 f"argv={deliver_command(cfg)} --socket {cfg['daemon']['deliver_socket']} "
                 "${queue_id} ${sender} ${recipient}")
    # The reinjection listener's own cleanup: remote_header_rewrite_domain
    # and always_add_missing_headers belong to cleanup(8), out of reach of
    # the listener's -o, and either would add Message-Id/Date or qualify
    # and reformat address fields of a message tmail has already signed.
    # No size limit there either: a message that fitted when it arrived
    # must fit with the fields tmail adds (Delivered-To, Authentication-
    # Results, signatures, an ARC set), or it waits in the queue until it
    # expires and bounces; the public smtpd already applied the limit.
    cleanup = ("tmail-cleanup unix n - n - 0 cleanup"
               " -o remote_header_rewrite_domain= -o always_add_missing_headers=no"
               " -o undisclosed_recipients_header= -o message_strip_characters="
               " -o message_size_limit=0")
    host = p["reinject_listener"].rpartition(":")[0]
    # Postfix's FILTER_README after-filter listener: nothing checked twice,
    # nothing rewritten (local_header_rewrite_clients= : 127.0.0.1 would
    # otherwise count as local and get its headers completed). Address
    # mappings stay on: a destination may be one of Postfix's virtual aliases.
    listener = (
        f"{p['reinject_listener']} inet n - n - - smtpd"
        " -o syslog_name=postfix/tmail-reinject"
        " -o smtpd_milters= -o non_smtpd_milters= -o content_filter= -o smtpd_proxy_filter="
        " -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks,no_milters"
        " -o local_header_rewrite_clients= -o cleanup_service_name=tmail-cleanup"
        f" -o mynetworks={host}/32"
        " -o smtpd_client_restrictions= -o smtpd_helo_restrictions="
        " -o smtpd_sender_restrictions= -o smtpd_data_restrictions="
        " -o smtpd_end_of_data_restrictions="
        " -o smtpd_recipient_restrictions=permit_mynetworks,reject"
        " -o smtpd_relay_restrictions=permit_mynetworks,reject"
        " -o smtputf8_enable=yes -o message_size_limit=0"
    )
    return {MASTER_PIPE: tmail, MASTER_CLEANUP: cleanup, _listener_key(cfg): listener}


def split_list(value: str) -> list[str]:
    """Split a Postfix list value on commas/whitespace, keeping { ... } groups."""
    items, depth, current = [], 0, ""
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current.strip():
                items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def _norm(item: str) -> str:
    return re.sub(r"\s+", " ", item.replace("{ ", "{").replace(" }", "}")).strip()


def _find(items: list[str], item: str) -> int:
    """Where `item` (which may be several list tokens, as in
    'check_recipient_access hash:...') starts in `items`, or -1."""
    tokens = [_norm(t) for t in split_list(item)]
    normed = [_norm(i) for i in items]
    for start in range(len(normed) - len(tokens) + 1):
        if normed[start:start + len(tokens)] == tokens:
            return start
    return -1


class Conflict(Exception):
    pass


def _tmails_own(key: str, entry: str) -> bool:
    """A master.cf entry an earlier tmail wrote (an upgrade replaces it, as
    --force would), as opposed to one of the admin's that happens to use the
    same name or listener address."""
    return key.split("/")[0] in ("tmail", "tmail-cleanup") or "syslog_name=postfix/tmail-reinject" in entry


def install_changes(cfg, main: dict[str, str], master: dict[str, str],
                    force: bool = False, transport: str | None = None) -> list[Change]:
    """The changes that wire tmail in; [] when it already is (idempotent).
    `transport`: pipe or lmtp (None: the one installed, else pipe).

    `main` holds each parameter's unexpanded text (see the module's doc):
    tmail's item is added to it, so a default that is an expression stays one.
    """
    changes: list[Change] = []
    legacy = legacy_items(cfg)
    for name, (item, where) in list_items(cfg).items():
        current = main.get(name, "")
        items = _without(split_list(current), legacy.get(name, []))
        if _find(items, item) < 0:
            items = [item] + items if where == "first" else items + [item]
        if not _same_list(items, split_list(current)):
            changes.append(Change("main", name, current or None, ", ".join(items)))
    conflicts = []
    transport = transport or transport_of(master)
    wanted = own_params(cfg, transport)
    for name, value in wanted.items():
        current = main.get(name)
        if current == value:
            continue
        if current and not force:
            conflicts.append(f"main.cf {name} = {current} (tmail wants {value})")
        changes.append(Change("main", name, current, value))
    for name in own_params(cfg).keys() - wanted.keys():      # the pipe's, after a switch to lmtp
        if main.get(name):
            changes.append(Change("main", name, main[name], None))
    for key, value in master_entries(cfg, transport).items():
        current = master.get(key)
        if current is not None and _norm(current) == _norm(value):
            continue
        if current and not force and not _tmails_own(key, current):
            conflicts.append(f"master.cf {key}: {current}")
        changes.append(Change("master", key, current, value))
    if conflicts:
        raise Conflict("these settings exist with other values; use --force to replace them: "
                       + "; ".join(conflicts))
    return changes


def _without(items: list[str], remove: list[str]) -> list[str]:
    for item in remove:
        start = _find(items, item)
        if start >= 0:
            items = items[:start] + items[start + len(split_list(item)):]
    return items


def _same_list(a: list[str], b: list[str]) -> bool:
    return [_norm(i) for i in a] == [_norm(i) for i in b]


def uninstall_changes(cfg, main: dict[str, str], master: dict[str, str],
                      defaults: dict[str, str] | None = None) -> list[Change]:
    """The changes that take out what install added; [] when nothing is left.

    A list parameter whose remaining items are its default (`defaults`,
    from postconf -d) is removed from main.cf rather than written out, so
    main.cf ends as it was before install, default expressions included.
    """
    defaults = defaults or {}
    changes = []
    legacy = legacy_items(cfg)
    for name, (item, _where) in list_items(cfg).items():
        current = main.get(name, "")
        kept = _without(split_list(current), [item, *legacy.get(name, [])])
        if _same_list(kept, split_list(current)):
            continue
        back_to_default = _same_list(kept, split_list(defaults.get(name, "")))
        changes.append(Change("main", name, current, None if back_to_default else ", ".join(kept)))
    for name in own_params(cfg):
        if main.get(name):
            changes.append(Change("main", name, main[name], None))
    for key in master_entries(cfg):
        if master.get(key):
            changes.append(Change("master", key, master[key], None))
    return changes


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ROUTABLE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")


def routable(name: str) -> bool:
    """A name fit for Postfix's tables: lower-case LDH labels (A-labels),
    at least two. The database is shared by every host, and whatever any
    of them (or anyone with access to it) wrote there must not become a
    regular expression or a second table line here."""
    return bool(_ROUTABLE.fullmatch(name))


def map_files(domains: list[str], service_domains: frozenset[str] = frozenset(),
              nexthop: str = "") -> dict[str, str]:
    """The lookup tables: relay domains, the transport (`nexthop`: see
    nexthop()), the guard's classes. `service_domains`: the SRS and reply
    domains, routed to tmail like the alias domains."""
    names = sorted(set(domains) | set(service_domains))
    unfit = [n for n in names if not routable(n)]
    if unfit:
        raise ValueError(f"not domain names: {', '.join(map(repr, unfit))}")
    return {
        # the exact names only (see maps); domains are LDH A-labels: only dots need escaping
        DOMAINS_TABLE: "".join(f"/^{d.replace('.', chr(92) + '.')}$/ OK\n" for d in names),
        "transport": "".join(f"{d} tmail:{nexthop}\n" for d in names),
        "guard": "".join(f"{d} tmail_guard\n" for d in names),
    }
