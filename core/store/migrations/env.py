"""Alembic environment: runs on the connection qloop hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from core.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            msg = "no connection or sqlalchemy.url for migrations"
            raise RuntimeError(msg)
        with create_engine(url).connect() as conn:
            context.configure(
                connection=conn, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
