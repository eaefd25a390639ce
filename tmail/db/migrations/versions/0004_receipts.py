"""Receipts: the RCPT-time verdict of each accepted recipient, by queue id
(replaces deliveries, which was keyed on the reusable short queue id alone).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "receipts",
        sa.Column("queue_id", key_string(64), nullable=False),
        sa.Column("recipient", key_string(320), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("counted", sa.Boolean, nullable=False),
        sa.Column("smtputf8", sa.Boolean, nullable=False),
        sa.Column("spf", sa.String(16), nullable=True),
        sa.Column("helo", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("forwarded_at", sa.DateTime, nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("alias", key_string(320), nullable=True),
        sa.PrimaryKeyConstraint("queue_id", "recipient", name="pk_receipts"),
    )
    op.create_index("ix_receipts_created_at", "receipts", ["created_at"])
    op.drop_index("ix_deliveries_delivered_at", table_name="deliveries")
    op.drop_table("deliveries")


def downgrade():
    op.create_table(
        "deliveries",
        sa.Column("queue_id", key_string(64), nullable=False),
        sa.Column("recipient", key_string(256), nullable=False),
        sa.Column("delivered_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "recipient", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_delivered_at", "deliveries", ["delivered_at"])
    op.drop_index("ix_receipts_created_at", table_name="receipts")
    op.drop_table("receipts")
