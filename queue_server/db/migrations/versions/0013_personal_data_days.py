"""a hall's personal data retention: names, phone numbers, ID tails and hashes are erased
after this many days

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("halls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("personal_data_days", sa.Integer(), server_default="180", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("halls", schema=None) as batch_op:
        batch_op.drop_column("personal_data_days")
