"""Alembic revisions (a package, so that pip installs them)."""
