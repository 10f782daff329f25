"""The relational store's one SQLAlchemy metadata and engine factory.

Everything that is not a time series (held readings, rule state, breaches, deliveries, keys,
the audit log) lives in tables declared on ``Base``: SQLite under the run directory by
default, PostgreSQL in production (``COLDTRACE_DATABASE_URL``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase

# The modules that declare tables; the migrations (migrations/, Alembic) cover all of them.
MODEL_MODULES = ("ingest.held", "alerts.store", "deliveries.models")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class Base(DeclarativeBase):
    pass


def make_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema (Alembic, to head); idempotent."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    command.upgrade(config, "head")
