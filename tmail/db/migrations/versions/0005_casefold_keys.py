"""Alias keys case-folded as Postfix folds addresses (STRASSE = straße).

Revision ID: 0005
Revises: 0004

Only local parts that are not ASCII change. Two aliases of one domain that
fold to the same key were one recipient to Postfix already (it delivered a
message to one of them only); the upgrade stops and names them, for the
admin to remove one first.
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

aliases = sa.table("aliases", sa.column("id", sa.Integer), sa.column("domain_id", sa.Integer),
                   sa.column("local", sa.String), sa.column("local_key", sa.String))
retired = sa.table("retired", sa.column("domain", sa.String), sa.column("local_key", sa.String),
                   sa.column("retired_at", sa.DateTime))


def _rekey(fold):
    conn = op.get_bind()
    rows = conn.execute(sa.select(aliases.c.id, aliases.c.domain_id, aliases.c.local,
                                  aliases.c.local_key)).all()
    taken = {(r.domain_id, r.local_key): r for r in rows}
    changes = [(r, fold(r.local)) for r in rows if fold(r.local) != r.local_key]
    clashes = [f"{r.local} and {taken[(r.domain_id, key)].local}" for r, key in changes
               if (r.domain_id, key) in taken and taken[(r.domain_id, key)].id != r.id]
    if clashes:
        raise RuntimeError("these aliases are one address once case-folded (as Postfix folds "
                           "it); remove one of each pair, then upgrade: " + "; ".join(clashes))
    for row, key in changes:
        conn.execute(aliases.update().where(aliases.c.id == row.id).values(local_key=key))
    for row in conn.execute(sa.select(retired)).all():
        key = fold(row.local_key)
        if key != row.local_key:
            conn.execute(retired.delete().where(retired.c.domain == row.domain,
                                                retired.c.local_key == row.local_key))
            if not conn.execute(sa.select(retired.c.domain).where(
                    retired.c.domain == row.domain, retired.c.local_key == key)).first():
                conn.execute(retired.insert().values(domain=row.domain, local_key=key,
                                                     retired_at=row.retired_at))


def upgrade():
    _rekey(str.casefold)


def downgrade():
    _rekey(str.lower)
