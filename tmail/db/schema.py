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
    sa.UniqueConstraint("domain_id", "local_key", name="uq_aliases_domain_local"),
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
