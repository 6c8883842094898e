"""the hall floor for estimates, and kept simulation results

counters.state_since: when a counter last opened, paused or closed (a paused counter is
expected back after a usual break). simulation_runs: the last simulations of a hall, shown
on its manager pages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state_since", sa.DateTime(timezone=True), nullable=True))
    # Counters open or paused now: as of the upgrade (a paused one is expected back).
    op.execute(
        sa.text("UPDATE counters SET state_since = CURRENT_TIMESTAMP WHERE state <> 'closed'")
    )
    op.create_table(
        "simulation_runs",
        sa.Column("id", Id, nullable=False),
        sa.Column("hall_id", Id, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scenario", sa.String(length=200), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hall_id"],
            ["halls.id"],
            name=op.f("fk_simulation_runs_hall_id_halls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulation_runs")),
    )
    with op.batch_alter_table("simulation_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_simulation_runs_hall_created", ["hall_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("simulation_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_simulation_runs_hall_created")
    op.drop_table("simulation_runs")
    with op.batch_alter_table("counters", schema=None) as batch_op:
        batch_op.drop_column("state_since")
