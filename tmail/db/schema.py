"""Tables. Times are naive UTC (SQLite and MariaDB keep no zone); the store
converts them to aware datetimes at its boundary."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def key_string(length: int) -> sa.types.TypeEngine:
    """A string compared byte for byte: MariaDB's default collation would make
    'a' and 'ä' (or trailing spaces) collide in a unique index."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


domains = sa.Table(
    "domains", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", key_string(255), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # Defaults for new aliases and the expiry warning (None: not set).
    sa.Column("default_ttl_seconds", sa.Integer, nullable=True),
    sa.Column("default_idle_seconds", sa.Integer, nullable=True),
    sa.Column("default_on_expiry", sa.String(10), nullable=True),
    sa.Column("random_style", sa.String(10), nullable=True),
    sa.Column("warn_before_seconds", sa.Integer, nullable=True),
    # DMARC-safe From rewriting: never | when-needed | always (None: when-needed).
    sa.Column("from_rewrite", sa.String(12), nullable=True),
    # Every user may create aliases here (else only users given the domain).
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    # Replies through reverse aliases, for aliases that do not say (off by default).
    sa.Column("replies", sa.Boolean, nullable=False, default=False),
)

aliases = sa.Table(
    "aliases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    sa.Column("local", key_string(64), nullable=False),
    sa.Column("local_key", key_string(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("note", sa.String(500), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=True),
    sa.Column("max_messages", sa.Integer, nullable=True),
    sa.Column("idle_seconds", sa.Integer, nullable=True),
    sa.Column("on_expiry", sa.String(10), nullable=False, default="reject"),
    sa.Column("forwarded", sa.Integer, nullable=False, default=0),
    sa.Column("refused", sa.Integer, nullable=False, default=0),
    sa.Column("last_forwarded_at", sa.DateTime, nullable=True),
    # The expiry date a warning was sent for: at most one per expiry date.
    sa.Column("warned_for", sa.DateTime, nullable=True),
    sa.Column("from_rewrite", sa.String(12), nullable=True),   # None: the domain's
    # The user who owns it (None: the admin's, made at the CLI).
    sa.Column("owner_id", sa.Integer, nullable=True),
    # Replies through reverse aliases (None: the domain's setting), the name
    # they go out with, and whether the real address is taken out of their text.
    sa.Column("replies", sa.Boolean, nullable=True),
    sa.Column("display_name", sa.String(64), nullable=True),
    sa.Column("reply_scrub", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("domain_id", "local_key", name="uq_aliases_domain_local"),
    # a user's page in each of its orders, without sorting all their aliases
    sa.Index("ix_aliases_owner_created", "owner_id", "created_at"),
    sa.Index("ix_aliases_owner_expires", "owner_id", "expires_at"),
    sa.Index("ix_aliases_owner_last_forwarded", "owner_id", "last_forwarded_at"),
)

destinations = sa.Table(
    "destinations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("address", key_string(256), nullable=False),
)

blocked_senders = sa.Table(
    "blocked_senders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    sa.Column("pattern", key_string(256), nullable=False),
    sa.UniqueConstraint("alias_id", "pattern", name="uq_blocked_alias_pattern"),
)

# What the milter decided for each recipient of an accepted message, by
# Postfix queue id, and what the delivery then did with it. The delivery
# follows the verdict given at RCPT time (a limit reached meanwhile does not
# undo a 250), carries the SPF result and the SMTPUTF8 request to the
# forwarded copy without touching the message, and knows a retried delivery
# (forwarded_at and the header digest set) from a new message that reused a
# short queue id (another digest).
receipts = sa.Table(
    "receipts", metadata,
    sa.Column("queue_id", key_string(64), primary_key=True),
    sa.Column("recipient", key_string(320), primary_key=True),   # envelope_key()
    sa.Column("verdict", sa.String(16), nullable=False),   # forward | role | srs-bounce | drop
    sa.Column("counted", sa.Boolean, nullable=False, default=False),  # counted at RCPT
    sa.Column("smtputf8", sa.Boolean, nullable=False, default=False),
    sa.Column("spf", sa.String(16), nullable=True),
    sa.Column("helo", sa.String(255), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.Column("forwarded_at", sa.DateTime, nullable=True),
    sa.Column("digest", sa.String(64), nullable=True),
    # the alias the recipient reached: one copy per alias, not per +tag
    sa.Column("alias", key_string(320), nullable=True),
)

# Removed addresses, kept for a quarantine period so nobody receives mail
# meant for an address's previous owner.
retired = sa.Table(
    "retired", metadata,
    sa.Column("domain", key_string(255), primary_key=True),
    sa.Column("local_key", key_string(64), primary_key=True),
    sa.Column("retired_at", sa.DateTime, nullable=False),
)

# One row per forwarded or refused message at a tmail domain, for `tmail
# stats` (kept for 8 days by `tmail purge`).
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("domain", key_string(255), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),   # forwarded | refused
    sa.Column("at", sa.DateTime, nullable=False, index=True),
)

# -- the people who own addresses (accounts, their destinations, sign-in) ----

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", key_string(320), nullable=False, unique=True),   # case-folded
    sa.Column("password_hash", sa.String(255), nullable=True),         # None: not set yet
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("max_aliases", sa.Integer, nullable=True),       # active aliases (None: the default)
    sa.Column("max_per_hour", sa.Integer, nullable=True),      # aliases created an hour
    sa.Column("totp_secret", sa.String(64), nullable=True),    # None: no second factor
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("password_changed_at", sa.DateTime, nullable=True),
    sa.Column("last_login_at", sa.DateTime, nullable=True),
    # What an address made through the API gets (a password manager's):
    # None is no expiry, and the first domain the user may use.
    sa.Column("api_ttl_seconds", sa.BigInteger, nullable=True),   # up to 100 years: past 32 bits
    sa.Column("api_domain", key_string(255), nullable=True),
)

# Domains a user may create aliases at (besides the shared ones).
user_domains = sa.Table(
    "user_domains", metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
)

# Where a user's aliases may forward to: nothing is forwarded to an address
# until its owner followed the link sent to it (verified_at).
user_destinations = sa.Table(
    "user_destinations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("address", key_string(256), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("verified_at", sa.DateTime, nullable=True),
    sa.Column("last_sent_at", sa.DateTime, nullable=True),   # the last verification mail (throttle)
    sa.UniqueConstraint("user_id", "address", name="uq_user_destinations_user_address"),
)

# One-time links (set or reset a password, verify a destination, sign up):
# only a hash of the token is kept.
tokens = sa.Table(
    "tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sa.Column("subject", key_string(320), nullable=False, default=""),   # e.g. the destination
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
    sa.Column("used_at", sa.DateTime, nullable=True),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
    sa.Column("client", sa.String(64), nullable=False, default=""),
    sa.Column("user_agent", sa.String(200), nullable=False, default=""),
)

recovery_codes = sa.Table(
    "recovery_codes", metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.DateTime, nullable=True),
)

# Failed sign-ins, by account and by client address, for throttling (kept
# in the database: the web app runs as several processes).
login_failures = sa.Table(
    "login_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", key_string(330), nullable=False),   # "account:<email>" or "client:<address>"
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Index("ix_login_failures_key_at", "key", "at"),
)

# API tokens: only the SHA-256 of a token is kept (it is shown once), and
# its first characters, so that a person can tell theirs apart.
api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", key_string(100), nullable=False),
    sa.Column("shown", sa.String(16), nullable=False),
    sa.Column("scopes", sa.String(64), nullable=False),      # space-separated
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=True),
    sa.Column("last_used_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("user_id", "name", name="uq_api_tokens_user_name"),
    # never a revoked token's id again: request counts are kept by id
    sqlite_autoincrement=True,
)

# When each user created an address: the per-hour limit counts these, so
# deleting an address does not give its creation back.
alias_creations = sa.Table(
    "alias_creations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Index("ix_alias_creations_user_at", "user_id", "at"),
)

# What happened at each alias (for its owner's detail page).
activity = sa.Table(
    "activity", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alias_id", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False, index=True),
    sa.Column("sender", key_string(320), nullable=False, default=""),
    sa.Column("verdict", sa.String(16), nullable=False),     # forward | disabled | sender-blocked ...
    sa.Column("reason", sa.String(200), nullable=False, default=""),
    sa.Index("ix_activity_alias_at", "alias_id", "at"),
)

# -- replies through an alias ---------------------------------------------

# One per (alias, outside party): the reverse alias a reply goes to.
contacts = sa.Table(
    "contacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    sa.Column("address", key_string(320), nullable=False),       # where replies go
    sa.Column("address_key", key_string(320), nullable=False),   # case-folded
    sa.Column("reply_local", key_string(32), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_at", sa.DateTime, nullable=True),
    sa.Column("forwarded", sa.Integer, nullable=False, default=0),
    sa.Column("replied", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("alias_id", "address_key", name="uq_contacts_alias_address"),
    # never a removed contact's id again: message ids are kept by alias
    sqlite_autoincrement=True,
)

# The Message-ID a reply had at the person's provider (theirs) and the one
# tmail gave it (ours), so that both sides' answers thread.
message_ids = sa.Table(
    "message_ids", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    sa.Column("theirs", key_string(255), nullable=False),
    sa.Column("ours", key_string(255), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.Index("ix_message_ids_alias_theirs", "alias_id", "theirs"),
)

# Refused replies the alias's owner was told about (one notice an hour).
reply_notices = sa.Table(
    "reply_notices", metadata,
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sent_at", sa.DateTime, nullable=False),
)

# -- several hosts on one database -------------------------------------------

# DKIM private keys, sealed with the fleet key (tmail.sealing), when
# [fleet] key_file is set; one row per domain, selector and algorithm.
dkim_keys = sa.Table(
    "dkim_keys", metadata,
    sa.Column("domain", key_string(255), primary_key=True),
    sa.Column("selector", key_string(63), primary_key=True),
    sa.Column("algorithm", key_string(10), primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The selector that signs each domain's mail.
dkim_selectors = sa.Table(
    "dkim_selectors", metadata,
    sa.Column("domain", key_string(255), primary_key=True),
    sa.Column("selector", key_string(63), nullable=False),
)

# SRS secrets, sealed. Every one verifies; the newest whose signs_from has
# passed signs, so that every host can verify a new secret before any host
# signs with it.
srs_secrets = sa.Table(
    "srs_secrets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("signs_from", sa.DateTime, nullable=False),
    sqlite_autoincrement=True,
)

# What each host last said it uses, for `tmail doctor` to compare: its
# daemon (keys, SRS, the fleet key) and its follower (Postfix's tables).
fleet_hosts = sa.Table(
    "fleet_hosts", metadata,
    sa.Column("name", key_string(255), primary_key=True),
    sa.Column("version", sa.String(40), nullable=False, default=""),
    sa.Column("daemon_seen_at", sa.DateTime, nullable=True),
    sa.Column("fleet_key_id", sa.String(20), nullable=False, default=""),
    sa.Column("keys_digest", sa.String(64), nullable=False, default=""),
    sa.Column("srs_digest", sa.String(64), nullable=False, default=""),
    sa.Column("tables_seen_at", sa.DateTime, nullable=True),
    sa.Column("tables_digest", sa.String(64), nullable=False, default=""),
    sa.Column("transport", sa.String(10), nullable=False, default=""),
)
