"""DMARC-safe From rewriting, per domain and per alias.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("from_rewrite", sa.String(12), nullable=True))
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("from_rewrite", sa.String(12), nullable=True))


def downgrade():
    with op.batch_alter_table("aliases") as batch:
        batch.drop_column("from_rewrite")
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("from_rewrite")
