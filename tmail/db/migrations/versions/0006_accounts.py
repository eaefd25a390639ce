"""Accounts: users, their domains and verified destinations, one-time links,
web sessions, recovery codes, sign-in failures, alias activity; alias owners
and shared domains.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", key_string(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("max_aliases", sa.Integer, nullable=True),
        sa.Column("max_per_hour", sa.Integer, nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("password_changed_at", sa.DateTime, nullable=True),
        sa.Column("last_login_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "user_domains",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("domain_id", sa.Integer, sa.ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "user_destinations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("address", key_string(256), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("verified_at", sa.DateTime, nullable=True),
        sa.Column("last_sent_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("user_id", "address", name="uq_user_destinations_user_address"),
    )
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("subject", key_string(320), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_tokens_expires_at", "tokens", ["expires_at"])
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])
    op.create_table(
        "recovery_codes",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("used_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", key_string(330), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])
    op.create_table(
        "alias_creations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_alias_creations_user_at", "alias_creations", ["user_id", "at"])
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alias_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("sender", key_string(320), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )
    op.create_index("ix_activity_at", "activity", ["at"])
    op.create_index("ix_activity_alias_at", "activity", ["alias_id", "at"])
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer, nullable=True))
        batch.create_index("ix_aliases_owner_created", ["owner_id", "created_at"])
        batch.create_index("ix_aliases_owner_expires", ["owner_id", "expires_at"])
        batch.create_index("ix_aliases_owner_last_forwarded", ["owner_id", "last_forwarded_at"])


def downgrade():
    with op.batch_alter_table("aliases") as batch:
        batch.drop_index("ix_aliases_owner_last_forwarded")
        batch.drop_index("ix_aliases_owner_expires")
        batch.drop_index("ix_aliases_owner_created")
        batch.drop_column("owner_id")
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("shared")
    for table in ("activity", "alias_creations", "login_failures", "recovery_codes", "web_sessions", "tokens",
                  "user_destinations", "user_domains", "users"):
        op.drop_table(table)
