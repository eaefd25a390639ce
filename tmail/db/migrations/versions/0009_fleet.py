"""Several hosts on one database: DKIM keys, selectors and SRS secrets
(sealed with the fleet key), and what each host reports it uses.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

from tmail.db.schema import key_string

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dkim_keys",
        sa.Column("domain", key_string(255), primary_key=True),
        sa.Column("selector", key_string(63), primary_key=True),
        sa.Column("algorithm", key_string(10), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "dkim_selectors",
        sa.Column("domain", key_string(255), primary_key=True),
        sa.Column("selector", key_string(63), nullable=False),
    )
    op.create_table(
        "srs_secrets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("signs_from", sa.DateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "fleet_hosts",
        sa.Column("name", key_string(255), primary_key=True),
        sa.Column("version", sa.String(40), nullable=False, server_default=""),
        sa.Column("daemon_seen_at", sa.DateTime, nullable=True),
        sa.Column("fleet_key_id", sa.String(20), nullable=False, server_default=""),
        sa.Column("keys_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("srs_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("tables_seen_at", sa.DateTime, nullable=True),
        sa.Column("tables_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("transport", sa.String(10), nullable=False, server_default=""),
    )


def downgrade():
    op.drop_table("fleet_hosts")
    op.drop_table("srs_secrets")
    op.drop_table("dkim_selectors")
    op.drop_table("dkim_keys")
