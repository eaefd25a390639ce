"""The database adapter: SQLAlchemy Core tables, the engine, the store."""
