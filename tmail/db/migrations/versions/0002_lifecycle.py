"""The lifecycle of temporary addresses: domain defaults, expiry warnings,
quarantine of removed addresses, message events for statistics.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("default_ttl_seconds", sa.Integer, nullable=True))
        batch.add_column(sa.Column("default_idle_seconds", sa.Integer, nullable=True))
        batch.add_column(sa.Column("default_on_expiry", sa.String(10), nullable=True))
        batch.add_column(sa.Column("random_style", sa.String(10), nullable=True))
        batch.add_column(sa.Column("warn_before_seconds", sa.Integer, nullable=True))
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("warned_for", sa.DateTime, nullable=True))
    op.create_table(
        "retired",
        sa.Column("domain", key_string(255), primary_key=True),
        sa.Column("local_key", key_string(64), primary_key=True),
        sa.Column("retired_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("domain", key_string(255), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_events_at", "events", ["at"])


def downgrade():
    op.drop_table("events")
    op.drop_table("retired")
    with op.batch_alter_table("aliases") as batch:
        batch.drop_column("warned_for")
    with op.batch_alter_table("domains") as batch:
        for column in ("warn_before_seconds", "random_style", "default_on_expiry",
                       "default_idle_seconds", "default_ttl_seconds"):
            batch.drop_column(column)
