"""Ansible module tmail_domain: a tmail domain and its defaults, through the tmail CLI."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tmail.tmail.plugins.module_utils.tmail_cli import COMMON_ARGS, Tmail

DOCUMENTATION = r"""
module: tmail_domain
short_description: Manage a tmail domain and its defaults for new aliases
description:
  - Adds or removes a domain tmail hands out aliases at, and sets its defaults,
    by running C(tmail domain ensure NAME --json).
  - Settings not given are left as they are.
  - Adding or removing a domain rewrites Postfix's lookup tables and reloads
    Postfix, so run it as root (C(become)) where Postfix runs. With one shared
    database for several MX hosts, run it once (C(run_once)).
  - In check mode the same command runs with C(--dry-run); tmail does the work
    and rolls it back (Postfix is left alone), so C(changed) is what a real run gives.
version_added: "0.1.0"
options:
  tmail:
    description: The tmail command (for example C(/opt/tmail/venv/bin/tmail)).
    type: str
    default: tmail
  config:
    description: The configuration file (C(tmail --config)); default tmail's own.
    type: path
  name:
    description: The domain.
    type: str
    required: true
  state:
    description: Whether the domain exists.
    type: str
    choices: [present, absent]
    default: present
  force:
    description: With I(state=absent), remove the domain's aliases too (else a
      domain that still has aliases is refused). Their addresses stay quarantined.
    type: bool
    default: false
  default_ttl:
    description: TTL of new aliases (C(7d), C(12h), C(1w2d)); C(none) clears it.
    type: str
  default_idle:
    description: Idle limit of new aliases; C(none) clears it.
    type: str
  on_expiry:
    description: Default on-expiry action of new aliases.
    type: str
    choices: [reject, drop, none]
  random_style:
    description: Style of random local parts at this domain.
    type: str
    choices: [token, words, none]
  warn_before:
    description: Warn an alias's owner this long before it expires; C(none) turns it off.
    type: str
  from_rewrite:
    description: DMARC-safe From rewriting for the domain's aliases.
    type: str
    choices: [never, when-needed, always]
  shared:
    description: Every user of the web app may create addresses here.
    type: bool
  replies:
    description: Replies through reverse aliases for the domain's aliases that
      do not say (needs C([replies] domain) in the configuration).
    type: bool
author: tmail
"""

EXAMPLES = r"""
- name: The domain, with a default TTL of a week
  tmail.tmail.tmail_domain:
    tmail: /opt/tmail/venv/bin/tmail
    name: d.example
    default_ttl: 7d
    on_expiry: reject
  run_once: true

- name: Gone, with its aliases
  tmail.tmail.tmail_domain:
    name: old.example
    state: absent
    force: true
"""

RETURN = r"""
domain:
  description: The domain as tmail stores it (lower case, IDNA A-labels).
  returned: always
  type: str
  sample: d.example
settings:
  description: The domain's settings (C(tmail domain show --json)) as the task
    leaves them (in check mode, would leave them); null when it is absent.
  returned: when state is present
  type: dict
  sample: {"default_ttl_seconds": 604800, "default_idle_seconds": null, "default_on_expiry": "reject",
           "random_style": null, "warn_before_seconds": null, "from_rewrite": "when-needed",
           "shared": false, "replies": false}
aliases_removed:
  description: How many aliases went with the domain.
  returned: when state is absent and the domain existed
  type: int
"""

# The options of `tmail domain set` (and ensure) that take a value.
VALUED = ("default_ttl", "default_idle", "warn_before", "on_expiry", "random_style", "from_rewrite")


def set_arguments(params):
    """The `tmail domain ensure` options for the settings given."""
    args = []
    for name in VALUED:
        if params[name] is not None:
            args += ["--" + name.replace("_", "-"), params[name]]
    if params["shared"] is not None:
        args.append("--shared" if params["shared"] else "--not-shared")
    if params["replies"] is not None:
        args += ["--replies", "on" if params["replies"] else "off"]
    return args


def main():
    module = AnsibleModule(
        argument_spec={
            **COMMON_ARGS,
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "force": {"type": "bool", "default": False},
            "default_ttl": {"type": "str"},
            "default_idle": {"type": "str"},
            "on_expiry": {"type": "str", "choices": ["reject", "drop", "none"]},
            "random_style": {"type": "str", "choices": ["token", "words", "none"]},
            "warn_before": {"type": "str"},
            "from_rewrite": {"type": "str", "choices": ["never", "when-needed", "always"]},
            "shared": {"type": "bool"},
            "replies": {"type": "bool"},
        },
        supports_check_mode=True,
    )
    params = module.params
    args = ["domain", "ensure", params["name"]]
    if params["state"] == "absent":
        args += ["--absent"] + (["--force"] if params["force"] else [])
    else:
        args += set_arguments(params)
    if module.check_mode:
        args.append("--dry-run")
    answer = Tmail(module).run(*args)
    result = {"changed": answer["changed"], "domain": answer["domain"]}
    if params["state"] == "absent":
        result["aliases_removed"] = answer["aliases_removed"]
    else:
        result["settings"] = answer["settings"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
