"""Where the test databases are (this machine's PostgreSQL and MariaDB)."""
import contextlib
import os
import secrets

PG_ADMIN = os.environ.get("TMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIA_ADMIN = os.environ.get("TMAIL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@contextlib.contextmanager
def scratch_database(kind: str, prefix: str = "tmail_t"):
    """A URL to a fresh PostgreSQL schema or MariaDB database, dropped after."""
    import sqlalchemy as sa
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN if kind == "postgresql" else MARIA_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if kind == "postgresql":
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
            url = f"{PG_ADMIN}?options=-csearch_path%3D{name}"
        else:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            url = MARIA_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE" if kind == "postgresql" else f"DROP DATABASE {name}")
        admin.dispose()
