"""The first schema: domains, aliases, destinations, blocked senders, deliveries.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", key_string(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_domains_name"),
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("domain_id", sa.Integer,
                  sa.ForeignKey("domains.id", ondelete="CASCADE", name="fk_aliases_domain_id"),
                  nullable=False),
        sa.Column("local", key_string(64), nullable=False),
        sa.Column("local_key", key_string(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("max_messages", sa.Integer, nullable=True),
        sa.Column("idle_seconds", sa.Integer, nullable=True),
        sa.Column("on_expiry", sa.String(10), nullable=False),
        sa.Column("forwarded", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("last_forwarded_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("domain_id", "local_key", name="uq_aliases_domain_local"),
    )
    op.create_table(
        "destinations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alias_id", sa.Integer,
                  sa.ForeignKey("aliases.id", ondelete="CASCADE", name="fk_destinations_alias_id"),
                  nullable=False),
        sa.Column("address", key_string(256), nullable=False),
    )
    op.create_index("ix_destinations_alias_id", "destinations", ["alias_id"])
    op.create_table(
        "blocked_senders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alias_id", sa.Integer,
                  sa.ForeignKey("aliases.id", ondelete="CASCADE", name="fk_blocked_senders_alias_id"),
                  nullable=False),
        sa.Column("pattern", key_string(256), nullable=False),
        sa.UniqueConstraint("alias_id", "pattern", name="uq_blocked_alias_pattern"),
    )
    op.create_table(
        "deliveries",
        sa.Column("queue_id", key_string(64), primary_key=True),
        sa.Column("recipient", key_string(256), primary_key=True),
        sa.Column("delivered_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_deliveries_delivered_at", "deliveries", ["delivered_at"])


def downgrade():
    op.drop_table("deliveries")
    op.drop_table("blocked_senders")
    op.drop_table("destinations")
    op.drop_table("aliases")
    op.drop_table("domains")
