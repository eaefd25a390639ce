"""Replies through an alias: contacts (reverse aliases), Message-ID
mappings, refused-reply notices, and the reply settings of domains and aliases.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("replies", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("replies", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("display_name", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reply_scrub", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("address", key_string(320), nullable=False),
        sa.Column("address_key", key_string(320), nullable=False),
        sa.Column("reply_local", key_string(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_at", sa.DateTime, nullable=True),
        sa.Column("forwarded", sa.Integer, nullable=False),
        sa.Column("replied", sa.Integer, nullable=False),
        sa.UniqueConstraint("reply_local", name="uq_contacts_reply_local"),
        sa.UniqueConstraint("alias_id", "address_key", name="uq_contacts_alias_address"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "message_ids",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("theirs", key_string(255), nullable=False),
        sa.Column("ours", key_string(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("ours", name="uq_message_ids_ours"),
    )
    op.create_index("ix_message_ids_created_at", "message_ids", ["created_at"])
    op.create_index("ix_message_ids_alias_theirs", "message_ids", ["alias_id", "theirs"])
    op.create_table(
        "reply_notices",
        sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sent_at", sa.DateTime, nullable=False),
    )


def downgrade():
    op.drop_table("reply_notices")
    op.drop_table("message_ids")
    op.drop_table("contacts")
    with op.batch_alter_table("aliases") as batch:
        batch.drop_column("reply_scrub")
        batch.drop_column("display_name")
        batch.drop_column("replies")
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("replies")
