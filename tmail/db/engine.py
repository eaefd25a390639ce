"""Engines for SQLite (the default), PostgreSQL and MariaDB."""
from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.engine import make_url

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalise_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.drivername.startswith("mysql") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def sqlite_path(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.database
    return None


def make_engine(url: str, busy_timeout_ms: int = 5000, op_timeout: float | None = None,
                **kwargs) -> sa.Engine:
    """An engine for `url`. `op_timeout` (seconds; the daemon sets it, the
    CLI does not) bounds every wait on the database: connecting, a lock, a
    statement, a server that stops answering, a free pooled connection. An
    operation past it fails; it never hangs the thread that runs it."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        if parsed.get_backend_name() in ("mysql", "mariadb"):
            # InnoDB's REPEATABLE READ reads one snapshot, taken at the first
            # read: counts read after a lock (SELECT ... FOR UPDATE) would be
            # older than the lock, and limits let parallel requests through.
            # READ COMMITTED, PostgreSQL's default, sees what was committed.
            kwargs.setdefault("isolation_level", "READ COMMITTED")
        if op_timeout:
            kwargs.setdefault("pool_timeout", op_timeout)
        engine = sa.create_engine(parsed, **kwargs)
        if op_timeout:
            _bound_waits(engine, op_timeout)
        return engine

    path = sqlite_path(url)
    if path:
        # The database holds every alias's real address: tmail's user only.
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = sa.create_engine(
        parsed, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        **kwargs,
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, open transactions (BEGIN IMMEDIATE
        # below) so that concurrent writers wait instead of failing.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        # Writers take the lock up front (a deferred transaction that reads,
        # then writes, fails at once instead of waiting); readers under WAL
        # never wait, so lookups ask for readonly=True.
        # (Straight to the driver: SQLAlchemy's execution path around one
        # BEGIN cost more than the statement, four times a message.)
        readonly = conn.get_execution_options().get("readonly", False)
        conn.connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _bound_waits(engine: sa.Engine, seconds: float) -> None:
    """Client and server side limits, so that a lock held elsewhere, a
    server restart or a network that swallows packets ends in an error
    within `seconds` instead of a thread blocked for good."""
    whole = max(1, int(seconds))
    backend = engine.dialect.name
    if backend == "postgresql":
        import psycopg

        class Connection(psycopg.Connection):
            # psycopg waits for the server without a limit; a server (or a
            # proxy) that keeps the connection open and never answers would
            # hold the thread forever. Past the limit the connection is in
            # an unknown state: closed, and the pool replaces it.
            def wait(self, gen, interval=0.1, timeout=None):
                try:
                    return super().wait(gen, interval=interval, timeout=timeout or seconds)
                except psycopg.errors.OperationalError as exc:
                    if type(exc).__name__ == "_WaitTimeout":
                        self.pgconn.finish()
                        raise psycopg.OperationalError(
                            f"the database did not answer within {seconds:g} s") from None
                    raise

        @sa.event.listens_for(engine, "do_connect")
        def _connect(_dialect, _record, cargs, cparams):
            cparams.setdefault("connect_timeout", whole)
            for name, value in (("keepalives", 1), ("keepalives_idle", whole),
                                ("keepalives_interval", 1), ("keepalives_count", 3),
                                ("tcp_user_timeout", whole * 1000)):
                cparams.setdefault(name, value)
            return Connection.connect(*cargs, **cparams)

        @sa.event.listens_for(engine, "connect")
        def _limits(dbapi_conn, _record):
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {whole * 1000}")
                cursor.execute(f"SET lock_timeout = {whole * 1000}")
                cursor.execute(f"SET idle_in_transaction_session_timeout = {whole * 2000}")
            dbapi_conn.commit()
    elif backend in ("mysql", "mariadb"):
        @sa.event.listens_for(engine, "do_connect")
        def _connect(_dialect, _record, cargs, cparams):
            for name in ("connect_timeout", "read_timeout", "write_timeout"):
                cparams.setdefault(name, whole)
            return None   # the dialect connects, with these parameters

        @sa.event.listens_for(engine, "connect")
        def _limits(dbapi_conn, _record):
            with dbapi_conn.cursor() as cursor:
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {whole}")
                cursor.execute(f"SET SESSION max_statement_time = {whole}")
