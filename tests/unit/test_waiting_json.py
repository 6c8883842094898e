"""A hall's waiting tickets as PostgreSQL hands them over (``statements.PG_WAITING_JSON``),
made into candidates (``repository.candidates_from_json``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from queue_server.db.repository import candidates_from_json
from queue_server.domain.floor import Candidate
from queue_server.domain.model import TicketKind

AT = datetime(2026, 3, 2, 2, 0, 0, 1, tzinfo=UTC)


def test_each_tickets_fields_in_order_make_its_candidate() -> None:
    text = (
        '[[7,"A007",3,"walk_in","elderly","2026-03-02T02:00:00.000001+00:00",null],'
        '[8,"B001",4,"appointment","none","2026-03-02T10:00:00.000001+08:00",'
        '"2026-03-02T02:30:00+00:00"]]'
    )
    walk_in, booked = candidates_from_json(text, ())
    assert walk_in == Candidate(7, "A007", 3, TicketKind.WALK_IN, "elderly", AT)
    due = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    assert booked == Candidate(8, "B001", 4, TicketKind.APPOINTMENT, "none", AT, due)
    assert booked.queued_at - AT == timedelta(0), "the same moment, told in another zone"
    assert candidates_from_json(None, ()) == [], "nobody waiting: NULL"


def test_one_still_as_it_was_keeps_its_candidate() -> None:
    known = Candidate(7, "A007", 3, TicketKind.WALK_IN, "elderly", AT)
    stale = Candidate(8, "A008", 3, TicketKind.WALK_IN, "none", AT)
    text = (
        '[[7,"A007",3,"walk_in","elderly","2026-03-02T02:00:00.000001Z",null],'
        '[8,"A008",3,"walk_in","elderly","2026-03-02T02:00:00.000001Z",null]]'
    )
    same, changed = candidates_from_json(text, [known, stale])
    assert same is known
    assert changed is not stale and changed.priority == "elderly"


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ('[1,"A001",2,"walk_in","none","2026-03-02T02:00:00",null]', "$[0][5]"),
        ('[1,"A001",2,"nobody","none","2026-03-02T02:00:00Z",null]', "$[0][3]"),
    ],
    ids=["a time without its zone", "an unknown kind"],
)
def test_a_value_no_candidate_can_hold_is_refused_where_it_is(row: str, where: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `{where}`")):
        candidates_from_json(f"[{row}]", ())
