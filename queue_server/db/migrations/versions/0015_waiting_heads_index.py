"""a counter's next candidates read by index: waiting tickets per matter, kind and
priority in arrival order

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tickets_waiting_heads",
        "tickets",
        ["hall_id", "business_day", "service_id", "kind", "priority", "queued_at", "id"],
        postgresql_where=sa.text("state = 'waiting'"),
        sqlite_where=sa.text("state = 'waiting'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_waiting_heads", table_name="tickets")
