"""The web app on a real, migrated SQLite database, with a clock the tests
move and an outbox instead of Postfix (the fixtures are in conftest.py)."""
from __future__ import annotations

import contextlib
import dataclasses
import re
from datetime import datetime, timedelta, timezone

from helpers import write_config

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"https?://\S+")
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


class Outbox(list):
    """What the app would have sent: (recipients, message bytes)."""

    fail = False

    def __call__(self, cfg, recipients, message):
        if self.fail:
            raise OSError("connection refused")
        self.append((recipients, message))

    def links(self, to: str | None = None) -> list[str]:
        return [link for recipients, message in self if to is None or to in recipients
                for link in LINK.findall(message.decode())]

    def last_link(self, to: str | None = None) -> str:
        return self.links(to)[-1]


class Client:
    """Flask's test client, with the CSRF token a browser would send."""

    def __init__(self, flask_client):
        self.http = flask_client

    def get(self, path, **kw):
        return self.http.get(path, **kw)

    def csrf(self) -> str:
        page = self.http.get("/sign-in")
        if page.status_code != 200:              # signed in: any page with a form
            page = self.http.get("/account")
        return CSRF.search(page.get_data(as_text=True)).group(1)

    def post(self, path, data=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf())
        return self.http.post(path, data=data, **kw)

    def sign_in(self, email, password=PASSWORD, **kw):
        return self.post("/sign-in", {"email": email, "password": password}, **kw)


class Web:
    def __init__(self, tmp_path, db_url: str | None = None, **web_settings):
        from tmail import config
        from tmail.db import migrate
        from tmail.db.engine import make_engine
        from tmail.web import create_app

        (tmp_path / "web.secret").write_text("a-test-secret-of-some-length\n")
        settings = {"secret_key_file": str(tmp_path / "web.secret"), "secure_cookies": False,
                    "base_url": "https://mail.test", **web_settings}
        self.cfg = config.load(write_config(tmp_path, db_url or f"sqlite:///{tmp_path}/tmail.db", web=settings))
        self.engine = make_engine(self.cfg["database"]["url"])
        migrate.upgrade(self.engine)
        self.clock = Clock()
        self.outbox = Outbox()
        self.app = create_app(self.cfg, engine=self.engine, send=self.outbox, clock=self.clock)
        with self.store() as store:
            store.add_domain("d.test", self.clock())
            store.add_domain("other.test", self.clock())
            settings = store.domain_settings("d.test")
            store.set_domain_settings("d.test", dataclasses.replace(settings, shared=True))

    def store(self):
        from tmail.db.store import Store

        @contextlib.contextmanager
        def opened():
            with self.engine.begin() as conn:
                yield Store(conn)
        return opened()

    def accounts(self):
        from tmail.db.accounts import Accounts

        @contextlib.contextmanager
        def opened():
            with self.engine.begin() as conn:
                yield Accounts(conn)
        return opened()

    def add_user(self, email, password=PASSWORD, *, admin=False, domains=(), destinations=(), **limits):
        from tmail.passwords import hash_password
        with self.accounts() as accounts:
            user = accounts.add_user(email, self.clock(), is_admin=admin, **limits)
            accounts.set_user_domains(user.id, list(domains))
            accounts.add_destination(user.id, email, self.clock(), verified=True)
            for address in destinations:
                accounts.add_destination(user.id, address, self.clock(), verified=True)
            if password is not None:
                accounts.set_password(user.id, hash_password(password), self.clock())
            return accounts.user(user.id)

    def user(self, email):
        with self.accounts() as accounts:
            return accounts.user_by_email(email)

    def add_alias(self, owner, local, domain="d.test", to=None, **changes):
        from tmail.core import aliases
        record = aliases.new_alias(local, domain, (to or owner.email,), aliases.Settings(), self.clock())
        with self.store() as store:
            return store.add_alias(dataclasses.replace(record, owner_id=owner.id, **changes))

    def alias(self, alias_id):
        from tmail.db.accounts import Accounts
        from tmail.db.schema import aliases
        with self.engine.begin() as conn:
            row = conn.execute(aliases.select().where(aliases.c.id == alias_id)).first()
            return Accounts(conn).owned_alias(row.owner_id, alias_id) if row else None

    def token(self, user, name="bitwarden", scopes=("create", "read", "change"), expires_at=None) -> str:
        """An API token of `user` (the text a password manager sends)."""
        from tmail.db.api_tokens import ApiTokens
        with self.engine.begin() as conn:
            return ApiTokens(conn).add(user.id, name, tuple(scopes), self.clock(), expires_at)[0]

    def client(self) -> Client:
        return Client(self.app.test_client())

    def signed_in(self, email) -> Client:
        client = self.client()
        answer = client.sign_in(email)
        assert answer.status_code == 303, answer.get_data(as_text=True)
        return client
