"""live feeds: hall notice, index of unpublished events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
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
    with op.batch_alter_table("halls") as batch:
        batch.add_column(
            sa.Column("notice", sa.String(length=500), nullable=False, server_default="")
        )
    op.create_index(
        "ix_hall_events_unpublished",
        "hall_events",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_hall_events_unpublished", table_name="hall_events")
    with op.batch_alter_table("halls") as batch:
        batch.drop_column("notice")
