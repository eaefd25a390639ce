"""One transaction per request, as the CLI has one per command.

The connection opens on first use. GET and HEAD requests read in a
read-only transaction (on SQLite a plain BEGIN: pages never wait for the
daemon's writes); other requests take the write lock up front (BEGIN
IMMEDIATE). The transaction commits before the response leaves, so a page
never says "done" for a write that then fails. An error answer (4xx, 5xx)
rolls it back: a refused request leaves nothing behind, unless its view
committed on purpose (a failed sign-in is counted).
A view that sends mail commits first (commit()), so that no SMTP
conversation runs while the database is locked.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, current_app, g, request

from ..db.accounts import Accounts
from ..db.store import Store

log = logging.getLogger("tmail.web")


def conn() -> sa.Connection:
    if "db_conn" not in g:
        connection = current_app.extensions["tmail"].engine.connect()
        if request.method in ("GET", "HEAD"):
            connection = connection.execution_options(readonly=True)
        g.db_conn = connection
    return g.db_conn


def accounts() -> Accounts:
    return Accounts(conn())


def store() -> Store:
    return Store(conn())


def commit() -> None:
    if "db_conn" in g:
        g.db_conn.commit()


def write(work):
    """`work(connection)` in a short write transaction of its own (a GET
    that must note something, such as a session's last use)."""
    with current_app.extensions["tmail"].engine.begin() as connection:
        return work(connection)


def init_app(app: Flask) -> None:
    @app.after_request
    def _finish(response):
        if response.status_code < 400:
            commit()
        elif "db_conn" in g:
            try:
                g.db_conn.rollback()
            except sa.exc.DBAPIError:     # the database went away: the error page still goes out
                log.warning("rollback failed", exc_info=True)
        return response

    @app.teardown_request
    def _close(_exc):
        connection = g.pop("db_conn", None)
        if connection is not None:
            connection.close()     # rolls back what was not committed
