"""the ticket a counter is busy with, read by index: called and served tickets per counter

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every call and every action on a ticket asks which ticket its counter is busy with.
    # ix_tickets_counter_id holds every ticket a counter ever handled (hundreds a day,
    # tens of thousands a year), each read and dropped by the state filter; this one
    # holds the few called or being served.
    op.create_index(
        "ix_tickets_active_at_counter",
        "tickets",
        ["counter_id"],
        postgresql_where=sa.text("state IN ('called', 'serving')"),
        sqlite_where=sa.text("state IN ('called', 'serving')"),
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_active_at_counter", table_name="tickets")
