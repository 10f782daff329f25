"""The migrations create exactly the tables the code declares, on SQLite and PostgreSQL: a
model changed without its migration fails here."""

from __future__ import annotations

import importlib

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from coldtrace.db import MODEL_MODULES, Base, make_engine, upgrade


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    upgrade(database_url)  # already at head: nothing to do, no error
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "write a migration (alembic revision --autogenerate) for: " + repr(diff)
    assert set(Base.metadata.tables) >= {"held_reading", "breach", "delivery", "audit_log"}
