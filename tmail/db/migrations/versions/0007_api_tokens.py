"""API tokens, and each user's defaults for addresses made through the API.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", key_string(100), nullable=False),
        sa.Column("shown", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        sa.UniqueConstraint("user_id", "name", name="uq_api_tokens_user_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("api_ttl_seconds", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("api_domain", key_string(255), nullable=True))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("api_domain")
        batch.drop_column("api_ttl_seconds")
    op.drop_table("api_tokens")
