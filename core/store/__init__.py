"""The store: SQLAlchemy 2.x models of SPEC §6, engine set-up and migrations."""

from core.store.db import Database, open_database

__all__ = ["Database", "open_database"]
