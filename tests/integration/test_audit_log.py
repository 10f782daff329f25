"""The audit log cannot be rewritten, by any statement, on SQLite and PostgreSQL; on
PostgreSQL the application's role is no superuser and owns nothing, so it can neither turn
the triggers off nor take the migrations' place (migrations run as the owner role)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from coldtrace.db import make_engine, upgrade
from coldtrace.deliveries.store import Store
from coldtrace.devtools.services import PG_OWNER, PG_SUPERUSER, postgres_bin
from coldtrace.settings import ConfigError, Settings
from tests.conftest import REPO, pg_url, run_coldtrace

COLUMNS = "(id, at_ms, actor, action, entity, entity_id)"
FORGED = "VALUES ({id}, 0, 'me', 'device.delete', 'device', 'x')"


def rewrites(dialect: str, entry: int) -> list[str]:
    values = FORGED.format(id=entry)
    statements = [
        "UPDATE audit_log SET actor = 'me'",
        f"DELETE FROM audit_log WHERE id = {entry}",
        "DELETE FROM audit_log",  # SQLite's TRUNCATE (its truncate optimisation)
        f"INSERT INTO audit_log {COLUMNS} {values} ON CONFLICT (id) DO UPDATE SET actor = 'me'",
    ]
    if dialect == "sqlite":
        return [
            *statements,
            f"INSERT OR REPLACE INTO audit_log {COLUMNS} {values}",
            f"REPLACE INTO audit_log {COLUMNS} {values}",
            f"INSERT INTO audit_log {COLUMNS} {FORGED.format(id=-1)}",  # would block later ones
        ]
    return [*statements, "TRUNCATE audit_log"]


def entries(conn: Connection) -> list[tuple[int, str, str]]:
    return [tuple(r) for r in conn.execute(text("SELECT id, actor, action FROM audit_log"))]  # type: ignore[misc]


def test_no_statement_rewrites_the_audit_log(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        Store(session, "ops").create_customer("acme", "ACME")
        session.commit()
    with engine.connect() as conn:
        before = entries(conn)
        ((entry, _, _),) = before
        for statement in rewrites(engine.dialect.name, entry):
            with pytest.raises(DBAPIError, match=r"append-only|permission denied"):
                conn.execute(text(statement))
            conn.rollback()
        assert entries(conn) == before == [(entry, "ops", "customer.create")]
    with Session(engine) as session:  # appending still works, with the next id
        Store(session, "ops").create_customer("bistro", "Bistro")
        session.commit()
    with engine.connect() as conn:
        assert [e[0] for e in entries(conn)] == [entry, entry + 1]
    engine.dispose()


@pytest.fixture
def pg_database_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's")
    return database_url


def test_the_applications_role_is_no_superuser_and_owns_nothing(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    with engine.connect() as conn:
        role = conn.execute(text("SELECT current_user")).scalar_one()
        assert role == "coldtrace"
        flags = conn.execute(
            text("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = :r"),
            {"r": role},
        ).one()
        assert tuple(flags) == (False, False, False)
        owned = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
                " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
                " + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
                " + (SELECT count(*) FROM pg_type WHERE typowner = r.oid)"
                " + (SELECT count(*) FROM pg_database WHERE datdba = r.oid)"
                " FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).scalar_one()
        assert owned == 0
        for statement in (
            "SET session_replication_role = replica",  # would skip the triggers
            "SET LOCAL session_replication_role = replica",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_append_only_row ON audit_log",
            "DROP TABLE audit_log",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
                conn.execute(text(statement))
            conn.rollback()
        # the rest of the store is the application's to write
        conn.execute(text("INSERT INTO customer (id, name, created_ms) VALUES ('a', 'A', 0)"))
        conn.execute(text("UPDATE customer SET name = 'B'"))
        conn.execute(text("DELETE FROM customer"))
        conn.rollback()
    engine.dispose()


def test_migrations_run_as_the_owner_not_as_the_application(postgres: Settings) -> None:
    name = "t" + uuid.uuid4().hex[:12]
    admin = pg_url(postgres, "postgres", "libpq", PG_SUPERUSER)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} OWNER {PG_OWNER}")
    app, owner = pg_url(postgres, name), pg_url(postgres, name, role=PG_OWNER)
    try:
        with pytest.raises(ConfigError, match="coldtrace db upgrade"):
            upgrade(app)  # an empty database: the application's role may not create tables
        done = run_coldtrace(
            "db",
            "upgrade",
            COLDTRACE_DATABASE_URL=app,
            COLDTRACE_MIGRATION_DATABASE_URL=owner,
            COLDTRACE_RUN_DIR=str(postgres.run_dir),
        )
        assert done.returncode == 0, done.stderr
        upgrade(app)  # at head: nothing for the application's role to do
        engine = make_engine(app)
        with Session(engine) as session:
            Store(session, "ops").create_customer("acme", "ACME")
            session.commit()
        engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")


@dataclass(frozen=True)
class Deployed:
    """A database made as docs/deploy.md says: its name, roles and URLs (``url(role)``)."""

    port: int
    db: str
    owner: str
    app: str

    def url(self, role: str) -> str:
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{self.db}"

    def upgrade(self, run_dir: Path) -> None:
        """`coldtrace db upgrade` as the owner, granting the application's role its rights."""
        done = run_coldtrace(
            "db",
            "upgrade",
            COLDTRACE_DATABASE_URL=self.url(self.app),
            COLDTRACE_MIGRATION_DATABASE_URL=self.url(self.owner),
            COLDTRACE_RUN_DIR=str(run_dir),
        )
        assert done.returncode == 0, done.stderr

    def superuser(self, program: str, *args: str, stdin: bytes | None = None) -> bytes:
        """A PostgreSQL client program run as the superuser; its output."""
        where = ("-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER)
        done = subprocess.run(
            [postgres_bin(program), *where, *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout


@pytest.fixture
def deployed(postgres: Settings) -> Iterator[Deployed]:
    """docs/deploy.md's path (and docker-compose's): roles.sh as the superuser, then the
    migrations as the owner."""
    tag = uuid.uuid4().hex[:8]
    d = Deployed(postgres.postgres_port, f"d{tag}", f"o{tag}", f"a{tag}")
    made = subprocess.run(
        ["sh", str(REPO / "deploy" / "postgresql" / "roles.sh")],
        env={
            "PATH": os.environ["PATH"],
            "PGHOST": "127.0.0.1",
            "PGPORT": str(d.port),
            "POSTGRES_USER": PG_SUPERUSER,
            "COLDTRACE_DB_OWNER_PASSWORD": "owner-pw",
            "COLDTRACE_DB_APP_PASSWORD": "app-pw",
            "COLDTRACE_DB_NAME": d.db,
            "COLDTRACE_DB_OWNER": d.owner,
            "COLDTRACE_DB_APP": d.app,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    try:
        d.upgrade(postgres.run_dir)
        yield d
    finally:
        with psycopg.connect(pg_url(postgres, "postgres", "libpq", PG_SUPERUSER)) as c:
            c.autocommit = True
            c.execute(f"DROP DATABASE IF EXISTS {d.db} WITH (FORCE)")
            c.execute(f"DROP ROLE {d.app}")
            c.execute(f"DROP ROLE {d.owner}")


def assert_kept_out(engine: Engine) -> None:
    """The application's role cannot switch the triggers off, rewrite the log or add tables."""
    with engine.connect() as conn:
        for statement in (
            "SET session_replication_role = replica",
            "DELETE FROM audit_log",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(DBAPIError, match=r"permission denied"):
                conn.execute(text(statement))
            conn.rollback()


def test_deploy_roles_script_then_migrate_as_owner(deployed: Deployed) -> None:
    """The application runs as its role, which cannot turn triggers off."""
    engine = make_engine(deployed.url(deployed.app))
    with Session(engine) as session:
        Store(session, "ops").create_customer("acme", "ACME")
        session.commit()
    assert_kept_out(engine)
    engine.dispose()


def test_deploy_backup_and_restore_keep_the_log_and_the_roles(
    deployed: Deployed, postgres: Settings
) -> None:
    """docs/deploy.md "Backing up and restoring": pg_dump as the superuser, the database made
    again empty as its owner's, pg_restore --no-owner --role=OWNER, the migrations: the rows
    and the audit log come back, owned by the owner role, its triggers hold for the owner,
    and the application's role may write as before and is kept out as before."""
    engine = make_engine(deployed.url(deployed.app))
    with Session(engine) as session:
        Store(session, "ops").create_customer("acme", "ACME")
        session.commit()
    with engine.connect() as conn:
        before = entries(conn)
    engine.dispose()
    dump = deployed.superuser("pg_dump", "-Fc", deployed.db)
    deployed.superuser("dropdb", deployed.db)
    deployed.superuser("createdb", "-O", deployed.owner, deployed.db)
    deployed.superuser(
        "pg_restore", "-d", deployed.db, "--no-owner", f"--role={deployed.owner}", stdin=dump
    )
    deployed.upgrade(postgres.run_dir)

    engine = make_engine(deployed.url(deployed.app))
    with Session(engine) as session:
        Store(session, "ops").create_customer("globex", "Globex")
        session.commit()
    with engine.connect() as conn:
        after = entries(conn)
        owners = conn.execute(
            text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        assert list(owners) == [deployed.owner]
    assert before == [(before[0][0], "ops", "customer.create")]
    assert after == [*before, (before[0][0] + 1, "ops", "customer.create")]
    assert_kept_out(engine)
    engine.dispose()
    owner = make_engine(deployed.url(deployed.owner))
    with owner.connect() as conn, pytest.raises(DBAPIError, match="audit_log is append-only"):
        conn.execute(text("DELETE FROM audit_log"))
    owner.dispose()


def test_the_triggers_refuse_rewrites_by_the_owner_role_too(pg_database_url: str) -> None:
    """Privileges keep the application out; the triggers hold for the owner as well (who
    would have to disable them first, a change the migrations never make)."""
    app = make_engine(pg_database_url)
    with Session(app) as session:
        Store(session, "ops").create_customer("acme", "ACME")
        session.commit()
    app.dispose()
    owner = make_engine(pg_database_url.replace("//coldtrace@", f"//{PG_OWNER}@"))
    with owner.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == PG_OWNER
        ((entry, _, _),) = entries(conn)
        for statement in rewrites("postgresql", entry):
            with pytest.raises(DBAPIError, match="audit_log is append-only"):
                conn.execute(text(statement))
            conn.rollback()
        assert entries(conn) == [(entry, "ops", "customer.create")]
    owner.dispose()
