"""printing: print jobs, printers serving kiosks, printer status

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("kiosk_id", Id, nullable=True))
        batch.add_column(sa.Column("status", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("connected", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_foreign_key(
            "fk_devices_kiosk_id_devices", "devices", ["kiosk_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "print_jobs",
        sa.Column("id", Id, nullable=False),
        sa.Column("hall_id", Id, nullable=False),
        sa.Column("ticket_id", Id, nullable=False),
        sa.Column("printer_id", Id, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["hall_id"], ["halls.id"], name=op.f("fk_print_jobs_hall_id_halls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_print_jobs_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["printer_id"],
            ["devices.id"],
            name=op.f("fk_print_jobs_printer_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_print_jobs")),
    )
    op.create_index("ix_print_jobs_printer_state", "print_jobs", ["printer_id", "state"])
    op.create_index(op.f("ix_print_jobs_ticket_id"), "print_jobs", ["ticket_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_print_jobs_ticket_id"), table_name="print_jobs")
    op.drop_index("ix_print_jobs_printer_state", table_name="print_jobs")
    op.drop_table("print_jobs")
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("fk_devices_kiosk_id_devices", type_="foreignkey")
        batch.drop_column("connected")
        batch.drop_column("status")
        batch.drop_column("kiosk_id")
