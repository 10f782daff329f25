"""The migrations create exactly the tables the code declares, on SQLite and PostgreSQL: a
model changed without its migration fails here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import alerts.store  # noqa: F401  (the modules that declare tables, as the migrations' env.py)
import coldtrace.breaches
import coldtrace.deliveries.models  # noqa: F401
import ingest.held  # noqa: F401
from coldtrace.db import Base, make_engine, upgrade


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    upgrade(database_url)  # already at head: nothing to do, no error
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "write a migration (alembic revision --autogenerate) for: " + repr(diff)
    assert set(Base.metadata.tables) >= {"held_reading", "breach", "delivery", "audit_log"}
