"""visit outcomes and the can't-get-it-done desk

tickets.missing_documents (which of the matter's documents were missing) and
origin_ticket_id (an escalation's not-done ticket); outcome_changes (corrections, audited);
services.desk (the hall's desk matter); desk_cases and case_notes; visits.visitor_hash and
halls.visitor_salt / repeat_window_days (the one-visit rate). Existing halls get a random
salt.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "desk_cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hall_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("visit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "origin_ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "service_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("opened_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promised_on", sa.Date(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_since", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["hall_id"], ["halls.id"], name=op.f("fk_desk_cases_hall_id_halls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["opened_by"],
            ["users.id"],
            name=op.f("fk_desk_cases_opened_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["origin_ticket_id"],
            ["tickets.id"],
            name=op.f("fk_desk_cases_origin_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_desk_cases_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_desk_cases_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_desk_cases_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_desk_cases_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_cases")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_desk_cases_ticket_id")),
    )
    with op.batch_alter_table("desk_cases", schema=None) as batch_op:
        batch_op.create_index("ix_desk_cases_hall_status", ["hall_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_cases_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "outcome_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hall_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hall_id"],
            ["halls.id"],
            name=op.f("fk_outcome_changes_hall_id_halls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_outcome_changes_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_outcome_changes_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_changes")),
    )
    with op.batch_alter_table("outcome_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outcome_changes_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "case_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["desk_cases.id"],
            name=op.f("fk_case_notes_case_id_desk_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_case_notes_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_notes")),
    )
    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_notes_case_id"), ["case_id"], unique=False)

    with op.batch_alter_table("halls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("repeat_window_days", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.add_column(
            sa.Column("visitor_salt", sa.String(length=64), server_default="", nullable=False)
        )
    halls = sa.table(
        "halls", sa.column("id", sa.BigInteger()), sa.column("visitor_salt", sa.String())
    )
    bind = op.get_bind()
    for (hall_id,) in bind.execute(sa.select(halls.c.id)).all():
        bind.execute(
            halls.update().where(halls.c.id == hall_id).values(visitor_salt=secrets.token_hex(32))
        )

    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("desk", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            "uq_services_hall_desk",
            ["hall_id"],
            unique=True,
            postgresql_where=sa.text("desk"),
            sqlite_where=sa.text("desk"),
        )

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("missing_documents", sa.JSON(none_as_null=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "origin_ticket_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_tickets_origin_ticket_id_tickets"),
            "tickets",
            ["origin_ticket_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(
            batch_op.f("ix_tickets_origin_ticket_id"), ["origin_ticket_id"], unique=False
        )

    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visitor_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_visits_hall_visitor", ["hall_id", "visitor_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_hall_visitor")
        batch_op.drop_column("visitor_hash")

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_origin_ticket_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_tickets_origin_ticket_id_tickets"), type_="foreignkey"
        )
        batch_op.drop_column("origin_ticket_id")
        batch_op.drop_column("missing_documents")

    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index("uq_services_hall_desk")
        batch_op.drop_column("desk")

    with op.batch_alter_table("halls", schema=None) as batch_op:
        batch_op.drop_column("visitor_salt")
        batch_op.drop_column("repeat_window_days")

    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_notes_case_id"))

    op.drop_table("case_notes")
    with op.batch_alter_table("outcome_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outcome_changes_ticket_id"))

    op.drop_table("outcome_changes")
    with op.batch_alter_table("desk_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_cases_visit_id"))
        batch_op.drop_index("ix_desk_cases_hall_status")

    op.drop_table("desk_cases")
