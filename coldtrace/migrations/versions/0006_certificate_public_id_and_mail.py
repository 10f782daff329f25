"""certificates: an unguessable public id per version, customers' contact addresses, and the
outbox of certificate e-mails

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=32), nullable=True))
    # Versions issued before this get one too (their signed bodies stay as they were), so
    # every version has a verification page.
    conn = op.get_bind()
    certificate = sa.table("certificate", sa.column("id", sa.Integer), sa.column("public_id"))
    for (row_id,) in conn.execute(sa.select(certificate.c.id)).all():
        conn.execute(
            certificate.update()
            .where(certificate.c.id == row_id)
            .values(public_id=secrets.token_urlsafe(16))
        )
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint("uq_certificate_public_id", ["public_id"])
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_emails", sa.JSON(), nullable=True))
    op.create_table(
        "certificate_mail",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("sending_ms", sa.BigInteger(), nullable=True),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("attachment", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificate.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("certificate_id", name="uq_certificate_mail_certificate"),
    )
    with op.batch_alter_table("certificate_mail", schema=None) as batch_op:
        batch_op.create_index("ix_certificate_mail_pending", ["sent_ms", "next_attempt_ms"])


def downgrade() -> None:
    with op.batch_alter_table("certificate_mail", schema=None) as batch_op:
        batch_op.drop_index("ix_certificate_mail_pending")
    op.drop_table("certificate_mail")
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_column("contact_emails")
    with op.batch_alter_table("certificate", schema=None) as batch_op:
        batch_op.drop_constraint("uq_certificate_public_id", type_="unique")
        batch_op.drop_column("public_id")
