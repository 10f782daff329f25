"""Alembic environment: the database comes from ``coldtrace.db.upgrade`` (config attribute
``url``), else from alembic.ini / ``-x url=...``, else from the settings."""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import text

from coldtrace.db import MODEL_MODULES, Base, make_engine

for module in MODEL_MODULES:
    importlib.import_module(module)  # every table on Base.metadata, for autogenerate

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
