"""The relational store's one SQLAlchemy metadata and engine factory.

Everything that is not a time series (held readings, rule state, breaches, deliveries, keys,
the audit log) lives in tables declared on ``Base``: SQLite under the run directory by
default, PostgreSQL in production (``COLDTRACE_DATABASE_URL``).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def make_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)
