"""Fixtures for the web app's tests (what they build on: websuite.py)."""
from __future__ import annotations

import pytest
from websuite import Web


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """argon2 at its lowest cost: the tests sign in hundreds of times."""
    from argon2 import PasswordHasher

    from tmail import passwords
    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    passwords._dummy.cache_clear()
    yield
    passwords._dummy.cache_clear()


@pytest.fixture
def web(tmp_path):
    site = Web(tmp_path)
    yield site
    site.engine.dispose()


@pytest.fixture
def any_web(tmp_path, db_url):
    """The site on each database: SQLite, PostgreSQL, MariaDB."""
    site = Web(tmp_path, db_url=db_url)
    yield site
    site.engine.dispose()


@pytest.fixture
def make_web(tmp_path):
    """A site with other [web] settings: make_web(signup="open", ...)."""
    made = []

    def make(**settings):
        site = Web(tmp_path, **settings)
        made.append(site)
        return site
    yield make
    for site in made:
        site.engine.dispose()


@pytest.fixture
def alice(web):
    return web.add_user("alice@real.test", destinations=["alice@work.test"])


@pytest.fixture
def bob(web):
    return web.add_user("bob@real.test")
