"""API tokens on one Connection (the caller owns the transaction).

A token is found by its hash only; every other query takes the user's id,
so one user's token is never found for another.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.api_tokens import SHOWN, ApiToken, new_api_token
from .schema import api_tokens
from .store import StoreError, from_db, to_db

TOUCH_EVERY = timedelta(minutes=1)     # last_used_at is written at most this often


def _token(row) -> ApiToken:
    return ApiToken(row.id, row.user_id, row.name, row.shown, tuple(row.scopes.split()),
                    from_db(row.created_at), from_db(row.expires_at), from_db(row.last_used_at))


class ApiTokens:
    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def add(self, user_id: int, name: str, scopes: tuple[str, ...], now: datetime,
            expires_at: datetime | None = None) -> tuple[str, ApiToken]:
        """(the token, shown this once; its record)."""
        if self.by_name(user_id, name) is not None:
            raise StoreError(f"there is a token named {name!r} already; revoke it or choose another name")
        token, hashed = new_api_token()
        try:
            with self.conn.begin_nested():      # two requests at once: the second is told, not crashed
                token_id = self.conn.execute(api_tokens.insert().values(
                    user_id=user_id, token_hash=hashed, name=name, shown=token[:SHOWN], scopes=" ".join(scopes),
                    created_at=to_db(now), expires_at=to_db(expires_at) if expires_at else None)
                ).inserted_primary_key[0]
        except sa.exc.IntegrityError:
            raise StoreError(f"there is a token named {name!r} already; revoke it or choose another name") from None
        found = self.get(user_id, token_id)
        assert found is not None
        return token, found

    def by_hash(self, hashed: str) -> ApiToken | None:
        row = self.conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == hashed)).first()
        return _token(row) if row else None

    def get(self, user_id: int, token_id: int) -> ApiToken | None:
        row = self.conn.execute(sa.select(api_tokens).where(
            api_tokens.c.user_id == user_id, api_tokens.c.id == token_id)).first()
        return _token(row) if row else None

    def by_name(self, user_id: int, name: str) -> ApiToken | None:
        row = self.conn.execute(sa.select(api_tokens).where(
            api_tokens.c.user_id == user_id, api_tokens.c.name == name)).first()
        return _token(row) if row else None

    def of_user(self, user_id: int) -> list[ApiToken]:
        return [_token(row) for row in self.conn.execute(
            sa.select(api_tokens).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id))]

    def revoke(self, user_id: int, token_id: int) -> bool:
        """Gone at once: its next request gets 401."""
        return self.conn.execute(api_tokens.delete().where(
            api_tokens.c.user_id == user_id, api_tokens.c.id == token_id)).rowcount == 1

    def revoke_all(self, user_id: int) -> int:
        """Every token of the user (a reset after a break-in, a disabled account)."""
        return self.conn.execute(api_tokens.delete().where(api_tokens.c.user_id == user_id)).rowcount

    def touch_due(self, token: ApiToken, now: datetime) -> bool:
        return token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY

    def touch(self, token_id: int, now: datetime) -> None:
        self.conn.execute(api_tokens.update().where(api_tokens.c.id == token_id)
                          .values(last_used_at=to_db(now)))
