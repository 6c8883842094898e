"""PostgreSQL: a clerk's events are numbered as their transaction commits, so the hall row
is locked for the commit only

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

``Repository.record_events`` writes a transaction's events with a placeholder number (the
negative of a ``hall_event_placeholders`` value, unique, so ``uq_hall_events_seq`` holds
meanwhile). A deferred constraint trigger runs as the transaction commits, once per event
in the order they were written: it bumps the hall row's ``event_seq`` and gives the event
that number. The hall row's lock, which every change of the hall queues on, is then taken
at the commit and held for it only, instead of from the events' statement across a round
trip to the server and back (docs/performance.md, 2026-12-05). Numbers stay consecutive
per hall and follow commit order, as before. SQLite (one writer at a time) numbers them in
the statement, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION hall_events_number_at_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    numbered bigint;
BEGIN
    UPDATE halls SET event_seq = event_seq + 1 WHERE id = NEW.hall_id
    RETURNING event_seq INTO numbered;
    -- A hall deleted by this transaction took its events with it: nothing to number.
    UPDATE hall_events SET seq = numbered WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""

_TRIGGER = """
CREATE CONSTRAINT TRIGGER hall_events_numbered_at_commit
AFTER INSERT ON hall_events
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.seq < 0)
EXECUTE FUNCTION hall_events_number_at_commit()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE hall_event_placeholders")
    op.execute(_FUNCTION)
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER hall_events_numbered_at_commit ON hall_events")
    op.execute("DROP FUNCTION hall_events_number_at_commit()")
    op.execute("DROP SEQUENCE hall_event_placeholders")
