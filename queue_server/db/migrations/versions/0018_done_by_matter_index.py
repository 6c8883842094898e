"""each matter's latest services, read by index: done tickets per matter by end

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The wait estimate and the policy's look-ahead read each matter's latest 50 services.
    # Ranked over the hall's four weeks of done tickets, that read and sorted all of them
    # (56,000 rows, 73 ms of PostgreSQL, at 2,000 tickets a day); by this index it reads
    # 50 entries per matter, newest first.
    op.create_index(
        "ix_tickets_done_by_matter",
        "tickets",
        ["service_id", "finished_at"],
        postgresql_where=sa.text("state = 'done'"),
        sqlite_where=sa.text("state = 'done'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_done_by_matter", table_name="tickets")
