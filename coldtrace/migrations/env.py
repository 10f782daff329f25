"""Alembic environment: the database comes from ``coldtrace.db.upgrade`` (config attribute
``url``), else from alembic.ini / ``-x url=...``, else from the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

# The modules that declare tables, imported for their tables on Base.metadata (autogenerate).
# The migrations sit with the entry points (docs/architecture.md): they may know every stage.
import alerts.store  # noqa: F401
import coldtrace.breaches
import coldtrace.deliveries.models  # noqa: F401
import ingest.held  # noqa: F401
from coldtrace.db import Base, make_engine

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    from coldtrace.settings import load_settings

    return load_settings().sqlalchemy_url


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # The API and ingest may start together: one migrates, the other waits for it.
                conn.execute(text("SELECT pg_advisory_lock(7405361)"))
                conn.commit()
            context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        # Closing the connection releases the session's lock, also when a migration failed
        # (back in the pool it would hold it as long as this process lives).
        engine.dispose()


run_migrations_online()
