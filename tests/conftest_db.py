"""Where the test databases are (this machine's PostgreSQL and MariaDB)."""
import os

PG_ADMIN = os.environ.get("TMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIA_ADMIN = os.environ.get("TMAIL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
