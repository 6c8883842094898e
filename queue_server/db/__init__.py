"""Persistence: SQLAlchemy tables, the engine factory and Alembic migrations."""
