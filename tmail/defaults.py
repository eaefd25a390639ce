"""Every default tmail uses, in one place.

The configuration loader (tmail.config) validates a file against DEFAULTS:
a key that is not here is unknown and refused.
"""
CONFIG_PATH = "/etc/tmail/tmail.toml"
CONFIG_ENV = "TMAIL_CONFIG"

# Role addresses every mail domain must keep (RFC 5321 s4.5.1, RFC 2142, and
# the addresses CAs use for domain validation). They are never handed out.
ROLE_LOCAL_PARTS = frozenset(
    {"postmaster", "abuse", "hostmaster", "webmaster", "admin", "administrator"}
)

DEFAULTS = {
    "database": {
        "url": "sqlite:////var/lib/tmail/tmail.db",
        "busy_timeout_ms": 5000,
        # The daemon's limit on any one wait for the database (connecting,
        # a lock, a statement, a pooled connection); the CLI has none.
        "timeout_s": 5,
    },
    "aliases": {
        # alias+tag@domain resolves to alias@domain; "" turns tags off.
        "recipient_delimiter": "+",
        # A destination at one of tmail's own domains would be a loop.
        "allow_tmail_destinations": False,
        # Random local parts: "token" (unguessable) or "words" (readable).
        "random_style": "token",
        "random_length": 12,
        # Where postmaster@ (and the other role addresses) of each domain go.
        "admin_address": "root@localhost",
    },
    "srs": {
        "domain": "",
        "secret_file": "/etc/tmail/srs.secret",
        "max_age_days": 21,
        "separator": "=",
    },
    "replies": {
        # Where reverse aliases live ("" = no replies): a domain of its own
        # whose MX is this host, routed to tmail like the SRS domain.
        "domain": "",
        # A disabled or expired alias's reverse aliases still carry replies
        # (the conversation it had goes on); false refuses them too.
        "when_inactive": True,
        # Keep User-Agent/X-Mailer in replies (they name the mail program).
        "keep_user_agent": False,
        # One notice of a refused reply per alias in this time.
        "notice_every": "1h",
    },
    "daemon": {
        # Relative milter/policy paths are what Postfix's chrooted smtpd sees
        # (relative to its queue directory); the daemon resolves them against
        # postfix_queue_directory.
        "postfix_queue_directory": "/var/spool/postfix",
        "milter_socket": "tmail/milter.sock",
        "policy_socket": "tmail/policy.sock",
        "deliver_socket": "/run/tmail/deliver.sock",
        # Postfix's lmtp(8) client delivers here when `tmail postfix install
        # --transport lmtp` chose it (relative: under the queue directory,
        # where the postfix user reaches it through the tmail-postfix group).
        "lmtp_socket": "tmail/lmtp.sock",
        # LMTP deliveries run in this many processes of their own, beside the
        # daemon's (milter, pipe socket): a delivery is Python's CPU work
        # (verifying, signing, sealing, the database), and one process runs
        # one thread of Python at a time. More than one per core gains
        # nothing. 0: in the daemon's own process.
        "lmtp_processes": 2,
        "reinject_host": "127.0.0.1",
        "reinject_port": 10026,
        "reinject_timeout_s": 60,
        # Every milter answer that needs the database comes within this;
        # past it the answer is 451 (Postfix's milter command_timeout, 20 s,
        # would otherwise accept the rest of the session unchecked).
        "verdict_timeout_s": 10,
        # More Received fields than this: a loop, refused at end of data.
        "max_received_headers": 30,
        "log_level": "info",
    },
    "dkim": {
        # Private keys, one directory per domain (`tmail dkim keygen` writes them).
        "key_directory": "/etc/tmail/dkim",
        # Sign forwarded mail, relayed bounces and notices with the sending
        # domain's active selector; seal forwarded mail with ARC.
        "sign": True,
        "arc_seal": True,
        # The authserv-id of tmail's Authentication-Results ("" = the SRS domain).
        "authserv_id": "",
        # Check the connecting client's SPF for mail to tmail's addresses.
        "check_spf": True,
        # Refuse at the end of DATA a message with no DKIM signature and no
        # ARC set that fails DMARC of a From domain publishing p=reject (a
        # forged sender: the domain asks receivers to refuse it). Needs check_spf.
        "reject_dmarc_failures": True,
    },
    "dns": {
        # "" = the system's resolvers (/etc/resolv.conf); else "host[:port], ...".
        "servers": "",
        "timeout_s": 5,
        # Answers kept in the daemon, each for its TTL (at most an hour), about
        # 4 KiB each (measured: 3.8 KiB for SPF-sized records); 0: none.
        "cache_entries": 5_000,
    },
    "lifecycle": {
        # `tmail purge` removes aliases expired for longer than this ...
        "purge_grace": "30d",
        # ... and a removed address cannot be created again for this long,
        # so nobody receives mail meant for its previous owner.
        "quarantine": "180d",
        # Expiry warnings come from this address ("" = postmaster@ the SRS domain).
        "notice_from": "",
        # Per-alias activity (time, sender, verdict) for its owner's page.
        "activity_kept": "30d",
    },
    "web": {
        # Where gunicorn listens: host:port, or unix:/path for a socket.
        "listen": "127.0.0.1:8025",
        # The address people reach the app at (links in mail); "" = http://<listen>.
        "base_url": "",
        # Signs CSRF tokens; written 0600 by `tmail init`.
        "secret_key_file": "/etc/tmail/web.secret",
        "session_lifetime": "14d",
        # Who may create an account: "closed" (the admin, with `tmail user
        # add`), "invite" (a link from `tmail user invite`), "open" (anyone
        # whose address is at one of signup_domains, once it is verified).
        "signup": "closed",
        "signup_domains": "",
        # Passwords reset by an e-mailed link (else only by the admin).
        "password_reset": False,
        # Each user's limits, unless `tmail user set` gives them others.
        "max_aliases": 1000,
        "aliases_per_hour": 60,
        "workers": 2,
        # Only when the app is served over HTTPS (behind nginx): cookies are
        # then Secure. Off for a plain-HTTP trial on localhost.
        "secure_cookies": True,
        # TLS in gunicorn itself (PEM files readable by the tmail user), for a
        # host without nginx; "" = plain HTTP behind a proxy that does TLS.
        "tls_cert": "",
        "tls_key": "",
    },
    "postfix": {
        "config_directory": "/etc/postfix",
        # Where tmail writes its lookup tables (domains, transport, guard);
        # "" leaves Postfix alone (tmail postfix install sets it).
        "map_directory": "",
        "deliver_command": "",      # "": this installation's python -IS .../deliver.py
        "pipe_user": "tmail",
        "reinject_listener": "127.0.0.1:10026",
    },
    "fleet": {
        # Several MX hosts on one database. With a key file (the same on
        # every host: `tmail fleet keygen`), DKIM keys, active selectors and
        # SRS secrets live in the database, sealed with it; "" keeps them in
        # [dkim] key_directory and [srs] secret_file, this host's alone.
        "key_file": "",
        # This host's name in `tmail fleet status` ("" = its FQDN).
        "host": "",
        # How often `tmail postfix follow` writes Postfix's tables from the
        # database, and the daemon re-reads keys and secrets and reports in:
        # a change on one host reaches every other within about this.
        "sync_interval_s": 10,
    },
}

SECRET_KEYS = frozenset({("database", "url")})

# Exit codes of the CLI, documented in README.md.
EXIT_OK = 0
EXIT_ERROR = 1          # a command failed (not found, conflict, refused)
EXIT_USAGE = 2          # bad option or argument (click's own code)
EXIT_CONFIG = 3         # the configuration file is missing keys or wrong
EXIT_DATABASE = 4       # the database is unreachable or not migrated

# pipe(8): only 75 (and 71) defer; every other non-zero status bounces.
EX_TEMPFAIL = 75
