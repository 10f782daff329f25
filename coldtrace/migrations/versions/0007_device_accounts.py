"""device accounts: a device's broker account may be disabled; a gateway's carries boxes

Revision ID: 0007
Revises: 0006

``coldtrace devices disable`` refuses the device's login and keeps its row (and so its
assignments and history): ``disabled_ms`` says since when. A gateway account
(``coldtrace devices add GW --carries box1,box2``) publishes for the boxes in ``carries``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("disabled_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("carries", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device") as batch:
        batch.drop_column("carries")
        batch.drop_column("disabled_ms")
