"""audit log: no INSERT OR REPLACE / upsert over an existing entry (SQLite)

Revision ID: 0005
Revises: 0004

SQLite's REPLACE conflict resolution deletes the existing row without firing its DELETE
triggers (unless PRAGMA recursive_triggers is on in that connection, which nothing enforces),
so the UPDATE and DELETE triggers of 0001 let ``INSERT OR REPLACE INTO audit_log (id, ...)``
with an existing id rewrite an entry. A BEFORE INSERT trigger refuses any insert naming an
existing id, whatever its conflict clause (OR REPLACE, ON CONFLICT DO UPDATE/NOTHING): it runs
before conflict resolution, on every connection. In a BEFORE INSERT trigger an id the database
is to assign reads as -1, so an explicit id below 1 is refused after the insert (where the
assigned id is known): a row with id -1 would otherwise make every later insert look like a
replacement. PostgreSQL needs none of this: ON CONFLICT DO UPDATE fires the UPDATE trigger,
and the application's role holds neither UPDATE, DELETE nor TRUNCATE on the table
(coldtrace.db.grant_app).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSE = "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
        f"WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) {REFUSE}"
    )
    op.execute(
        f"CREATE TRIGGER audit_log_positive_id AFTER INSERT ON audit_log WHEN NEW.id < 1 {REFUSE}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER audit_log_positive_id")
    op.execute("DROP TRIGGER audit_log_no_replace")
