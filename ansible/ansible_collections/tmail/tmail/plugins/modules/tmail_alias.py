"""Ansible module tmail_alias: one alias, declaratively, through `tmail alias ensure`."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tmail.tmail.plugins.module_utils.tmail_cli import COMMON_ARGS, Tmail

DOCUMENTATION = r"""
module: tmail_alias
short_description: Manage one tmail alias
description:
  - Makes an alias match what is given, by running
    C(tmail alias ensure ADDRESS --json); settings not given are left as they are.
  - A TTL counts from the alias's creation, so the same task run again changes nothing.
  - A new alias takes its domain's defaults (C(tmail_domain)) where the task is silent.
  - In check mode the same command runs with C(--dry-run); tmail does the work
    and rolls it back, so C(changed) and the alias are what a real run gives.
version_added: "0.1.0"
options:
  tmail:
    description: The tmail command (for example C(/opt/tmail/venv/bin/tmail)).
    type: str
    default: tmail
  config:
    description: The configuration file (C(tmail --config)); default tmail's own.
    type: path
  address:
    description: The alias, C(local@domain); the domain must be a tmail domain.
    type: str
    required: true
  state:
    description: Whether the alias exists. A removed address stays quarantined
      for C([lifecycle] quarantine) (180 days) and cannot be created again before.
    type: str
    choices: [present, absent]
    default: present
  destinations:
    description: The real mailboxes it forwards to (the whole list). Required
      with I(state=present).
    type: list
    elements: str
  enabled:
    description: Whether it accepts mail (a disabled alias refuses with 550 5.2.1).
    type: bool
  ttl:
    description: Expire this long after its creation (C(7d), C(12h), C(1w2d)).
      Not with I(expires).
    type: str
  expires:
    description: Expire at this date (C(YYYY-MM-DD[THH:MM]), no zone means UTC).
      Not with I(ttl).
    type: str
  max_messages:
    description: Expire after this many forwarded messages.
    type: int
  idle:
    description: Expire after this long without mail.
    type: str
  on_expiry:
    description: Once expired, refuse mail (550 5.2.1) or accept and discard it.
    type: str
    choices: [reject, drop]
  note:
    description: A note for the admin.
    type: str
  blocked_senders:
    description: The whole list of blocked senders, each an address or C(@domain);
      C([]) blocks none.
    type: list
    elements: str
  from_rewrite:
    description: DMARC-safe From rewriting (C(domain) follows the domain's setting).
    type: str
    choices: [never, when-needed, always, domain]
  replies:
    description: Replies through reverse aliases (C(domain) follows the domain's setting).
    type: str
    choices: ["on", "off", domain]
  display_name:
    description: The name replies go out with (C("") for none).
    type: str
  allow_tmail_destination:
    description: Allow a destination at one of tmail's own domains (an alias chain).
    type: bool
    default: false
author: tmail
"""

EXAMPLES = r"""
- name: A shop address, 20 messages, gone after 30 days without mail
  tmail.tmail.tmail_alias:
    tmail: /opt/tmail/venv/bin/tmail
    address: shop@d.example
    destinations: [me@real.example]
    max_messages: 20
    idle: 30d
  run_once: true

- name: A week-long address (the week counts from its creation)
  tmail.tmail.tmail_alias:
    address: trial@d.example
    destinations: [me@real.example]
    ttl: 7d
    on_expiry: drop

- name: Gone (the address stays quarantined)
  tmail.tmail.tmail_alias:
    address: old@d.example
    state: absent
"""

RETURN = r"""
alias:
  description: The alias as C(tmail alias show --json) prints it (keys in tmail's
    README, "JSON output"), as the task leaves it (in check mode, would leave it);
    null when it does not exist (or no longer does).
  returned: always
  type: dict
  sample: {"address": "shop@d.example", "destinations": ["me@real.example"], "state": "active",
           "enabled": true, "max_messages": 20, "idle_seconds": 2592000, "on_expiry": "reject",
           "expires_at": null, "forwarded": 0, "refused": 0, "blocked_senders": []}
"""


def ensure_arguments(params):
    """The options of `tmail alias ensure` for what the task gives."""
    args = []
    for destination in params["destinations"] or []:
        args += ["--to", destination]
    if params["enabled"] is not None:
        args.append("--enabled" if params["enabled"] else "--disabled")
    for name in ("ttl", "expires", "max_messages", "idle", "on_expiry", "note", "from_rewrite", "replies",
                 "display_name"):
        if params[name] is not None:
            args += ["--" + name.replace("_", "-"), str(params[name])]
    if params["blocked_senders"] is not None:
        if params["blocked_senders"]:
            for sender in params["blocked_senders"]:
                args += ["--block", sender]
        else:
            args.append("--no-blocks")
    if params["allow_tmail_destination"]:
        args.append("--allow-tmail-destination")
    return args


def main():
    module = AnsibleModule(
        argument_spec={
            **COMMON_ARGS,
            "address": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "destinations": {"type": "list", "elements": "str"},
            "enabled": {"type": "bool"},
            "ttl": {"type": "str"},
            "expires": {"type": "str"},
            "max_messages": {"type": "int"},
            "idle": {"type": "str"},
            "on_expiry": {"type": "str", "choices": ["reject", "drop"]},
            "note": {"type": "str"},
            "blocked_senders": {"type": "list", "elements": "str"},
            "from_rewrite": {"type": "str", "choices": ["never", "when-needed", "always", "domain"]},
            "replies": {"type": "str", "choices": ["on", "off", "domain"]},
            "display_name": {"type": "str"},
            "allow_tmail_destination": {"type": "bool", "default": False},
        },
        required_if=[("state", "present", ("destinations",))],
        mutually_exclusive=[("ttl", "expires")],
        supports_check_mode=True,
    )
    params = module.params
    args = ["alias", "ensure", params["address"]]
    args += ["--absent"] if params["state"] == "absent" else ensure_arguments(params)
    if module.check_mode:
        args.append("--dry-run")
    answer = Tmail(module).run(*args)
    module.exit_json(changed=answer["changed"], alias=answer["alias"])


if __name__ == "__main__":
    main()
