"""alerts: breaches and notification outbox

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A store whose rules ran before migrations existed created these itself: adopt them.
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "breach" not in tables:
        op.create_table(
            "breach",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("device", sa.String(length=64), nullable=False),
            sa.Column("probe", sa.String(length=32), nullable=False),
            sa.Column("rule", sa.String(length=32), nullable=False),
            sa.Column("profile", sa.String(length=32), nullable=False),
            sa.Column("start_ts", sa.BigInteger(), nullable=False),
            sa.Column("end_ts", sa.BigInteger(), nullable=True),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("severity", sa.String(length=16), nullable=False),
            sa.Column("peak", sa.Float(), nullable=True),
            sa.Column("degree_minutes", sa.Float(), nullable=False),
            sa.Column("limit_c", sa.Float(), nullable=True),
            sa.Column("suppressed", sa.Boolean(), nullable=False),
            sa.Column("detected_late", sa.Boolean(), nullable=False),
            sa.Column("detected_at", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("device", "probe", "rule", "start_ts", name="uq_breach_key"),
        )
        with op.batch_alter_table("breach", schema=None) as batch_op:
            batch_op.create_index(
                "ix_breach_device_time", ["device", "start_ts", "end_ts"], unique=False
            )
    if "notification_outbox" not in tables:
        op.create_table(
            "notification_outbox",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("breach_id", sa.Integer(), nullable=False),
            sa.Column("transition", sa.String(length=16), nullable=False),
            sa.Column("channel", sa.String(length=16), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
            sa.Column("sent_at", sa.BigInteger(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.ForeignKeyConstraint(
                ["breach_id"],
                ["breach.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("breach_id", "transition", "channel", name="uq_notification_key"),
        )
        with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
            batch_op.create_index(
                "ix_notification_pending", ["sent_at", "next_attempt_at"], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_pending")

    op.drop_table("notification_outbox")
    with op.batch_alter_table("breach", schema=None) as batch_op:
        batch_op.drop_index("ix_breach_device_time")

    op.drop_table("breach")
