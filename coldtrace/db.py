"""The relational store's one SQLAlchemy metadata and engine factory.

Everything that is not a time series (held readings, rule state, breaches, deliveries, keys,
the audit log) lives in tables declared on ``Base``: SQLite under the run directory by
default, PostgreSQL in production (``COLDTRACE_DATABASE_URL``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.orm import DeclarativeBase

# The tables are declared by the stages' model modules on ``Base``; the migrations
# (coldtrace/migrations/, Alembic) cover all of them (their env.py imports those modules).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for a permission denied


class Base(DeclarativeBase):
    pass


def make_engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def upgrade(url: str, app_role: str | None = None) -> None:
    """Bring the database at `url` to the newest schema (Alembic, to head); idempotent. On
    PostgreSQL with separate roles, `url` names the owner and `app_role` the application's
    role, granted its rights afterwards (``grant_app``). A role that may not migrate gets
    a ConfigError saying who may, unless the schema is at head already (nothing to do)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import ProgrammingError

    from coldtrace.settings import ENV_PREFIX, ConfigError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    try:
        command.upgrade(config, "head")
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise ConfigError(
            f"the relational store's schema is not at the newest version and "
            f"{make_url(url).username!r} may not migrate it: run `coldtrace db upgrade` with "
            f"{ENV_PREFIX}MIGRATION_DATABASE_URL naming the owner role (docs/deploy.md)"
        ) from None
    if app_role is not None:
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                grant_app(conn, app_role)
        finally:
            engine.dispose()


def grant_app(conn: Connection, role: str) -> None:
    """What the application's PostgreSQL role may do, once more after each migration (so a
    new table is covered): read and write the tables, except the audit log (read and
    append only: no UPDATE, DELETE or TRUNCATE, on top of its triggers) and the migrations'
    bookkeeping (read only). It owns nothing, so it can neither alter a table nor disable
    a trigger; not being a superuser, it cannot set session_replication_role either."""
    who = conn.dialect.identifier_preparer.quote(role)
    for statement in (
        f"GRANT USAGE ON SCHEMA public TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {who}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}",
    ):
        conn.execute(text(statement))
