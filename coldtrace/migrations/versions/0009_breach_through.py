"""breaches: the device time of the newest reading an open breach's figures include

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Breaches stored before this have none (null) until the stage next changes them.
    with op.batch_alter_table("breach", schema=None) as batch_op:
        batch_op.add_column(sa.Column("through_ts", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("breach", schema=None) as batch_op:
        batch_op.drop_column("through_ts")
