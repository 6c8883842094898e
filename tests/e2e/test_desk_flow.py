"""Come at most once, through the API on both databases: a service ends with its outcome and
the missing documents named, the visit goes on to the "can't get it done" desk keeping its
number, the desk opens a case, answers and closes it, the visitor follows it all with their
link, outcomes are corrected on the record, and the one-visit report counts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from booking.checkin import CheckIn, check_in
from booking.service import BookSlot, book_slot
from queue_server.clock import FixedClock
from queue_server.db.tables import HallEventRow, HallRow, VisitRow
from queue_server.service import commands, desk, hall_config, visitors
from queue_server.service.bus import Bus
from queue_server.service.errors import Invalid
from queue_server.service.unit_of_work import UnitOfWork
from queue_server.settings import Settings
from tests.support import DemoSetup, bookable_matter, build_hall, call_as, issue

ID_CARD = "身份证 ID card"
REGISTER = "社保卡 social security card"
DESK_COUNTER = 3


@dataclass
class DeskHall:
    hall: DemoSetup
    desk_id: int

    @property
    def id(self) -> int:
        return self.hall.hall_id


async def desk_hall(client: AsyncTestClient[Any], bus: Bus) -> DeskHall:
    """The test hall (A at counter 1, B at counter 2) with A's documents listed and a desk
    matter (G) served by counter 3, three clerks."""
    hall = await build_hall(
        client,
        bus,
        clerks=3,
        counters=[(1, {"A": "primary"}), (2, {"B": "primary"})],
    )
    base = f"/api/halls/{hall.hall_id}"
    listed = await call_as(
        client, hall.admin, "PATCH", f"{base}/services/{hall.services['A']}",
        json={"documents": [ID_CARD, REGISTER]},
    )  # fmt: skip
    assert listed.status_code == 200, listed.text
    made = await call_as(
        client, hall.admin, "POST", f"{base}/services",
        json={"name_zh": "办不成事反映", "name_en": "Can't get it done", "prefix": "G",
              "typical_minutes": 15, "desk": True},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["desk"] is True
    desk_id = made.json()["id"]
    hall.services["G"] = desk_id
    second = await call_as(
        client, hall.admin, "POST", f"{base}/services",
        json={"name_zh": "第二个", "name_en": "Second desk", "prefix": "H",
              "typical_minutes": 15, "desk": True},
    )  # fmt: skip
    assert second.status_code == 400
    assert f"matter {desk_id} is this hall's desk already" in second.json()["detail"]
    counter = await call_as(
        client, hall.admin, "POST", f"{base}/counters",
        json={"number": DESK_COUNTER, "name": "办不成事反映窗口",
              "profile": [{"service_id": desk_id, "level": "primary"}]},
    )  # fmt: skip
    assert counter.status_code == 201, counter.text
    hall.counters[DESK_COUNTER] = counter.json()["id"]
    return DeskHall(hall, desk_id)


def hall_today(clock: FixedClock) -> date:
    return clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()


async def at_counter(
    client: AsyncTestClient[Any], hall: DemoSetup, clerk: int, number: int, action: str, **kw: Any
) -> Any:
    return await call_as(
        client, hall.clerks[clerk], "POST", f"/api/counters/{hall.counters[number]}/{action}", **kw
    )


async def serve(client: AsyncTestClient[Any], hall: DemoSetup, clerk: int, number: int) -> dict:
    """Call the counter's next visitor and start serving them; their ticket."""
    called = await at_counter(client, hall, clerk, number, "call-next")
    assert called.status_code == 200 and called.json()["ticket"], called.text
    started = await at_counter(client, hall, clerk, number, "start")
    assert started.status_code == 200, started.text
    return called.json()  # type: ignore[no-any-return]


async def follow(client: AsyncTestClient[Any], token: str) -> dict[str, Any]:
    answer = await client.get(f"/api/follow/{token}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_not_done_goes_to_the_desk_keeping_its_number_and_the_case_is_followed(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    visitor = await issue(client, hall, "A")
    earlier_at_desk = await issue(client, hall, "G")  # came straight to the desk, earlier
    for clerk, number in ((0, 1), (1, DESK_COUNTER)):
        opened = await at_counter(client, hall, clerk, number, "open")
        assert opened.status_code == 200, opened.text
    await serve(client, hall, 0, 1)
    clock.advance(minutes=6)

    # Bad input is refused, saying what to fix, and nothing is recorded.
    for body, field, words in [
        ({"outcome": "missing_documents"}, "missing_documents", f"list: {ID_CARD}; {REGISTER}"),
        ({"outcome": "missing_documents", "missing_documents": ["passport"]},
         "missing_documents", "'passport' is not in the matter's list"),
        ({"outcome": "done", "missing_documents": [ID_CARD]}, "missing_documents", "only with"),
        ({"outcome": "other_department", "visitor": {"phone": "12345"}}, "visitor_phone",
         "mobile"),
    ]:  # fmt: skip
        refused = await at_counter(client, hall, 0, 1, "finish", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["extra"]["field"] == field
        assert words in refused.json()["detail"]
    day_closed = await at_counter(client, hall, 0, 1, "finish", json={"outcome": "day_closed"})
    assert day_closed.status_code == 400  # not a clerk's outcome (the schema says which are)
    still = await follow(client, visitor["follow_token"])
    assert (still["state"], still["outcome"]) == ("serving", None)

    finished = await at_counter(
        client, hall, 0, 1, "finish",
        json={"outcome": "missing_documents", "missing_documents": [REGISTER, REGISTER],
              "note": "card expired", "escalate": True, "visitor": {"phone": "138 0013 8000"}},
    )  # fmt: skip
    assert finished.status_code == 200, finished.text
    done = finished.json()
    assert (done["state"], done["outcome"]) == ("done", "missing_documents")
    assert done["missing_documents"] == [REGISTER]
    assert done["note"] == "card expired"  # staff see the note
    assert done["escalated_to"] is not None

    # The visitor's link now shows the desk ticket: same number, first in the desk's queue
    # (ahead of the desk's earlier walk-in), and what to bring next time — not the note.
    seen = await follow(client, visitor["follow_token"])
    assert seen["id"] == done["escalated_to"]
    assert (seen["number"], seen["kind"], seen["state"]) == ("A001", "escalation", "waiting")
    assert seen["desk"] is True and seen["people_ahead"] == 0
    assert seen["origin"]["number"] == "A001"
    assert seen["origin"]["outcome"] == "missing_documents"
    assert seen["origin"]["missing_documents"] == [REGISTER]
    assert seen["note"] is None

    called = await at_counter(client, hall, 1, DESK_COUNTER, "call-next")
    assert called.json()["ticket"]["number"] == "A001"
    assert called.json()["reason"].startswith("continues visit (escalated")
    await at_counter(client, hall, 1, DESK_COUNTER, "start")

    # The desk opens a case for the visit: owner, summary, promised answer date.
    desk_clerk = hall.clerks[1]
    today = hall_today(clock)
    past = await call_as(
        client, desk_clerk, "POST", f"{base}/cases",
        json={"ticket_id": seen["id"], "summary": "card expired", "promised_on": str(today - timedelta(days=1))},
    )  # fmt: skip
    assert past.status_code == 400 and past.json()["extra"]["field"] == "promised_on"
    opened = await call_as(
        client, desk_clerk, "POST", f"{base}/cases",
        json={"ticket_id": seen["id"], "summary": "Social security card expired; renewal "
              "office to confirm a temporary certificate", "promised_on": str(today + timedelta(days=2))},
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert (case["status"], case["overdue"], case["owner_id"]) == (
        "open",
        False,
        desk_clerk.user_id,
    )
    assert case["service_id"] == hall.services["A"]  # the matter not done, not the desk's
    assert case["origin"]["missing_documents"] == [REGISTER]
    assert case["origin"]["clerk_name"] is not None
    again = await call_as(
        client, desk_clerk, "POST", f"{base}/cases",
        json={"ticket_id": visitor["id"], "summary": "again", "promised_on": str(today)},
    )  # fmt: skip
    assert again.status_code == 409 and f"case {case['id']} open already" in again.json()["detail"]

    seen = await follow(client, visitor["follow_token"])
    assert seen["case"] == {
        "id": case["id"], "status": "open", "promised_on": str(today + timedelta(days=2)),
        "answer": None, "resolution": None, "overdue": False,
    }  # fmt: skip

    noted = await call_as(
        client, desk_clerk, "POST", f"{base}/cases/{case['id']}/notes",
        json={"text": "phoned the renewal office"},
    )  # fmt: skip
    assert (
        noted.status_code == 201 and noted.json()["notes"][0]["text"] == "phoned the renewal office"
    )
    finish_desk = await at_counter(
        client, hall, 1, DESK_COUNTER, "finish", json={"outcome": "done"}
    )
    assert finish_desk.status_code == 200

    answered = await call_as(
        client, desk_clerk, "POST", f"{base}/cases/{case['id']}/answer",
        json={"answer": "Bring the temporary certificate; counter 1 will serve you first."},
    )  # fmt: skip
    assert answered.status_code == 200 and answered.json()["status"] == "answered"
    seen = await follow(client, visitor["follow_token"])
    assert seen["case"]["answer"].startswith("Bring the temporary certificate")
    assert "phoned" not in str(seen)  # staff notes stay with staff

    closed = await call_as(
        client, desk_clerk, "POST", f"{base}/cases/{case['id']}/close",
        json={"resolution": "resolved"},
    )  # fmt: skip
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["resolution"]) == ("closed", "resolved")
    twice = await call_as(
        client, desk_clerk, "POST", f"{base}/cases/{case['id']}/close",
        json={"resolution": "unresolved"},
    )  # fmt: skip
    assert twice.status_code == 409
    seen = await follow(client, visitor["follow_token"])
    assert (seen["case"]["status"], seen["case"]["resolution"]) == ("closed", "resolved")
    assert earlier_at_desk["number"] == "G001"

    # Every step reached the hall's log, for boards, followers and webhooks later.
    async def names(uow: UnitOfWork) -> list[str]:
        rows = await uow.session.execute(
            select(HallEventRow.name).where(HallEventRow.hall_id == setup.id)
        )
        return [r for (r,) in rows]

    logged = await bus.run(names)
    assert "TicketEscalated" in logged
    assert [n for n in logged if n == "CaseChanged"] == ["CaseChanged"] * 4


async def test_escalation_refusals_and_concurrent_escalations_make_one_desk_ticket(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    done_one, left_one = await issue(client, hall, "A"), await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "done"})
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "visitor_left"})

    refused = await call_as(
        client, hall.clerks[0], "POST", f"{base}/tickets/{done_one['id']}/escalate"
    )
    assert refused.status_code == 409
    assert "only a service finished with an outcome other than done" in refused.json()["detail"]
    no_case = await call_as(
        client, hall.clerks[0], "POST", f"{base}/cases",
        json={"ticket_id": done_one["id"], "summary": "x", "promised_on": "2031-01-01"},
    )  # fmt: skip
    assert no_case.status_code == 409

    # Eight desks press "escalate" for the visitor who left at once: one desk ticket.
    tries = await asyncio.gather(
        *[
            call_as(client, hall.clerks[i % 3], "POST", f"{base}/tickets/{left_one['id']}/escalate")
            for i in range(8)
        ]
    )
    assert sorted(t.status_code for t in tries) == [201] + [409] * 7
    made = next(t.json() for t in tries if t.status_code == 201)
    assert (made["number"], made["kind"], made["desk"]) == ("A002", "escalation", True)
    snapshot = (await client.get(f"{base}/snapshot", headers=hall.kiosk)).json()
    assert {w["prefix"]: w["waiting"] for w in snapshot["waiting"]}["G"] == 1

    # Eight desks open a case for it at once: one case.
    today = hall_today(clock)
    opens = await asyncio.gather(
        *[
            call_as(
                client,
                hall.clerks[i % 3],
                "POST",
                f"{base}/cases",
                json={
                    "ticket_id": (made if i % 2 else left_one)["id"],
                    "summary": f"try {i}",
                    "promised_on": str(today + timedelta(days=3)),
                },
            )
            for i in range(8)
        ]
    )
    assert sorted(o.status_code for o in opens) == [201] + [409] * 7
    listed = await call_as(client, hall.manager, "GET", f"{base}/cases")
    assert len(listed.json()) == 1


async def test_outcome_corrections_are_kept_and_limited_to_the_clerk_or_a_manager(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    ticket = await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "done"})
    url = f"{base}/tickets/{ticket['id']}/outcome"

    other = await call_as(
        client, hall.clerks[2], "POST", url, json={"outcome": "visitor_left", "reason": "?"}
    )
    assert other.status_code == 403 and "served by another clerk" in other.json()["detail"]
    no_reason = await call_as(client, hall.clerks[0], "POST", url, json={"outcome": "other"})
    assert no_reason.status_code == 400
    fixed = await call_as(
        client, hall.clerks[0], "POST", url,
        json={"outcome": "missing_documents", "missing_documents": [ID_CARD],
              "reason": "pressed done by mistake"},
    )  # fmt: skip
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["outcome"], fixed.json()["missing_documents"]) == (
        "missing_documents", [ID_CARD],
    )  # fmt: skip
    managed = await call_as(
        client, hall.manager, "POST", url,
        json={"outcome": "system_problem", "note": "social security system down",
              "reason": "the clerk told me the system was down"},
    )  # fmt: skip
    assert managed.status_code == 200 and managed.json()["missing_documents"] == []
    same = await call_as(
        client, hall.manager, "POST", url,
        json={"outcome": "system_problem", "note": "social security system down",
              "reason": "again"},
    )  # fmt: skip
    assert same.status_code == 409

    history = (
        await call_as(client, hall.manager, "GET", f"{url[: -len('outcome')]}outcome-changes")
    ).json()
    assert [(h["before"]["outcome"], h["after"]["outcome"], h["reason"]) for h in history] == [
        ("done", "missing_documents", "pressed done by mistake"),
        ("missing_documents", "system_problem", "the clerk told me the system was down"),
    ]
    assert history[0]["user_id"] == hall.clerks[0].user_id
    assert history[1]["user_id"] == hall.manager.user_id

    # A visit sent on to the desk stays "not done" at its first counter.
    sent = await call_as(client, hall.clerks[0], "POST", f"{base}/tickets/{ticket['id']}/escalate")
    assert sent.status_code == 201, sent.text
    undone = await call_as(
        client, hall.manager, "POST", url, json={"outcome": "done", "reason": "it was fine"}
    )
    assert undone.status_code == 409 and "close its case" in undone.json()["detail"]


async def test_a_manager_finds_a_days_finished_services_to_correct_them(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    first, second = await issue(client, hall, "A"), await issue(client, hall, "B")
    await at_counter(client, hall, 0, 1, "open")
    await at_counter(client, hall, 1, 2, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "done"})
    await serve(client, hall, 1, 2)
    finished = await at_counter(client, hall, 1, 2, "finish", json={"outcome": "visitor_left"})
    assert finished.status_code == 200, finished.text
    waiting = await issue(client, hall, "A")  # not finished: not listed

    listed = await call_as(client, hall.manager, "GET", f"{base}/finished")
    assert listed.status_code == 200, listed.text
    rows = {r["number"]: r for r in listed.json()}
    assert set(rows) == {first["number"], second["number"]}
    assert waiting["number"] not in rows
    a = rows[first["number"]]
    assert (a["outcome"], a["counter_number"], a["corrections"], a["sent_to_desk"]) == (
        "done", 1, 0, False,
    )  # fmt: skip
    assert a["documents"] == [ID_CARD, REGISTER]
    assert a["clerk_id"] == hall.clerks[0].user_id

    # The manager corrects the other clerk's service; the list shows the correction.
    fixed = await call_as(
        client, hall.manager, "POST", f"{base}/tickets/{a['ticket_id']}/outcome",
        json={"outcome": "missing_documents", "missing_documents": [REGISTER],
              "reason": "the visitor phoned: the register was missing"},
    )  # fmt: skip
    assert fixed.status_code == 200, fixed.text
    only = await call_as(client, hall.manager, "GET", f"{base}/finished?outcome=missing_documents")
    assert [(r["number"], r["missing_documents"], r["corrections"]) for r in only.json()] == [
        (first["number"], [REGISTER], 1)
    ]
    by_number = await call_as(
        client, hall.manager, "GET", f"{base}/finished?number={second['number'].lower()}"
    )
    assert [r["number"] for r in by_number.json()] == [second["number"]]
    day = hall_today(clock)
    earlier = await call_as(
        client, hall.manager, "GET", f"{base}/finished?day={day - timedelta(days=1)}"
    )
    assert earlier.status_code == 200 and earlier.json() == []

    clerk = await call_as(client, hall.clerks[0], "GET", f"{base}/finished")
    assert clerk.status_code == 403
    for query in ["outcome=great", "day=2026-13-01", "day=0000-01-01", f"number={'9' * 17}"]:
        bad = await call_as(client, hall.manager, "GET", f"{base}/finished?{query}")
        assert bad.status_code == 400, (query, bad.status_code, bad.text)
        assert bad.json()["detail"]


async def test_one_visit_rate_counts_repeat_visits_by_phone_and_booking(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    phone = {"phone": "13800138000"}
    await at_counter(client, hall, 0, 1, "open")

    async def visit(outcome: str, visitor: dict[str, str] | None, **extra: Any) -> dict:
        ticket = await issue(client, hall, "A")
        await serve(client, hall, 0, 1)
        body: dict[str, Any] = {"outcome": outcome, **extra}
        if visitor:
            body["visitor"] = visitor
        answer = await at_counter(client, hall, 0, 1, "finish", json=body)
        assert answer.status_code == 200, answer.text
        return ticket

    # Day 1: the visitor is turned away (ID card missing); another visitor is done; one
    # more, identified by ID tail and name, is done too.
    await visit("missing_documents", phone, missing_documents=[ID_CARD])
    await visit("done", None)
    await visit("done", {"id_tail": "12345x", "name": "李 四"})
    # Day 3: the first visitor comes back and gets it done: a repeat visit.
    clock.advance(days=2)
    await visit("done", {"phone": "+86 138-0013-8000"})
    # Day 40: the one identified by ID comes again: outside the 30-day window, a first visit.
    clock.advance(days=37)
    await visit("other_department", {"id_tail": "2345X", "name": "李四"})

    report = await call_as(
        client, hall.manager, "GET", f"{base}/reports/outcomes?from=2020-01-01&to=2020-12-31"
    )
    assert report.status_code == 200  # an empty year long ago
    assert report.json()["total"]["served"] == 0
    start = (clock.now() - timedelta(days=60)).date()
    answer = await call_as(
        client, hall.manager, "GET", f"{base}/reports/outcomes?from={start}&to={hall_today(clock)}"
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    a = next(m for m in body["matters"] if m["service_id"] == hall.services["A"])
    assert (a["served"], a["done"], a["identified"]) == (5, 3, 4)
    assert (a["repeat_visits"], a["first_visits"], a["one_visit_done"]) == (1, 4, 2)
    assert a["one_visit_rate"] == 0.5
    assert a["by_outcome"] == {"missing_documents": 1, "done": 3, "other_department": 1}
    assert a["missing_documents"] == [[ID_CARD, 1]]
    assert body["total"]["one_visit_rate"] == 0.5
    assert body["top_reasons"] == [["missing_documents", 1], ["other_department", 1]]
    assert body["repeat_window_days"] == 30

    # A 90-day window makes the day-40 visit a repeat too.
    longer = await call_as(client, hall.admin, "PATCH", base, json={"repeat_window_days": 90})
    assert longer.status_code == 200 and longer.json()["repeat_window_days"] == 90
    body = (
        await call_as(
            client,
            hall.manager,
            "GET",
            f"{base}/reports/outcomes?from={start}&to={hall_today(clock)}",
        )
    ).json()
    a = next(m for m in body["matters"] if m["service_id"] == hall.services["A"])
    assert (a["repeat_visits"], a["first_visits"], a["one_visit_done"]) == (2, 3, 2)

    clerk_asks = await call_as(client, hall.clerks[0], "GET", f"{base}/reports/outcomes")
    assert clerk_asks.status_code == 403
    backwards = await call_as(
        client, hall.manager, "GET", f"{base}/reports/outcomes?from=2026-02-01&to=2026-01-01"
    )
    assert backwards.status_code == 400 and "after it ends" in backwards.json()["detail"]


async def test_a_checked_in_booking_links_the_visit_to_the_booker(
    bus: Bus, clock: FixedClock
) -> None:
    hall_id, matter_id = await bookable_matter(bus, capacity=4)
    start = clock.now().replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    made = await bus.run(book_slot, BookSlot(hall_id, matter_id, start, "王小明", "13900139000"))
    clock.set(start - timedelta(minutes=10))
    ticket_id = await bus.run(
        check_in, CheckIn(hall_id, commands.Actor(user_id=None), code=made.code)
    )

    async def hashes(uow: UnitOfWork) -> list[str | None]:
        rows = await uow.session.execute(select(VisitRow.visitor_hash).order_by(VisitRow.id))
        return [h for (h,) in rows]

    async def salt(uow: UnitOfWork) -> str:
        return str(await uow.session.scalar(select(HallRow.visitor_salt)))

    linked = await bus.run(hashes)
    assert ticket_id and len(linked) == 1
    # The hash a clerk's "139 0013 9000" at the counter gives: a later visit is a repeat.
    asked = visitors.identity_key(visitors.VisitorId(phone="139 0013 9000"))
    assert asked is not None
    assert linked[0] == visitors.visitor_hash(await bus.run(salt), asked)
    assert "13900139000" not in str(linked)


async def test_the_reminder_job_flags_cases_past_their_date_once(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    ticket = await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "system_problem"})
    today = hall_today(clock)
    for days, summary in ((1, "due tomorrow"),):
        answer = await call_as(
            client, hall.clerks[0], "POST", f"{base}/cases",
            json={"ticket_id": ticket["id"], "summary": summary,
                  "promised_on": str(today + timedelta(days=days))},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
    case_id = answer.json()["id"]

    assert await bus.run(desk.flag_overdue) == 0  # not due yet
    clock.advance(days=3)
    assert await bus.run(desk.flag_overdue) == 1
    assert await bus.run(desk.flag_overdue) == 0  # flagged once
    listed = (await call_as(client, hall.manager, "GET", f"{base}/cases?overdue=true")).json()
    assert [(c["id"], c["overdue"]) for c in listed] == [(case_id, True)]
    assert listed[0]["overdue_since"] is not None
    seen = await follow(client, ticket["follow_token"])
    assert seen["case"]["overdue"] is True

    # A new promised date clears the flag; answering takes the case off the overdue list.
    moved = await call_as(
        client, hall.manager, "PATCH", f"{base}/cases/{case_id}",
        json={"promised_on": str(hall_today(clock) + timedelta(days=1))},
    )  # fmt: skip
    assert moved.status_code == 200 and moved.json()["overdue"] is False
    assert moved.json()["overdue_since"] is None
    assert (await call_as(client, hall.manager, "GET", f"{base}/cases?overdue=true")).json() == []


async def test_out_of_range_input_is_refused_with_a_400(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    manager = hall.manager
    for method, url, body in [
        ("POST", f"{base}/cases", {"ticket_id": 2**63, "summary": "x", "promised_on": "2030-01-01"}),
        ("GET", f"{base}/cases/99999999999999999999", None),
        ("POST", f"{base}/tickets/99999999999999999999/escalate", None),
        ("GET", f"{base}/statistics?to=0001-01-03", None),
        ("GET", f"{base}/statistics?service_id={2**63}", None),
        ("GET", f"{base}/reports/outcomes?from=0001-01-01&to=0001-01-05", None),
        ("GET", f"{base}/reports/outcomes?to=9999-12-31", None),
        ("POST", f"{base}/webhooks", {"url": "http://[::1/x"}),
        ("POST", f"{base}/webhooks", {"url": "https://a:notaport/"}),
    ]:  # fmt: skip
        answer = await call_as(client, manager, method, url, json=body)
        assert answer.status_code == 400, (method, url, answer.status_code, answer.text)
        assert answer.json()["detail"]


async def test_a_ticket_of_an_earlier_day_is_not_queued_at_the_desk_but_can_have_a_case(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    ticket = await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "visitor_left"})
    clock.advance(days=1)
    late = await call_as(client, hall.clerks[0], "POST", f"{base}/tickets/{ticket['id']}/escalate")
    assert late.status_code == 409 and "open a case for it instead" in late.json()["detail"]
    # An admin (of no hall) may open it and owns it.
    opened = await call_as(
        client, hall.admin, "POST", f"{base}/cases",
        json={"ticket_id": ticket["id"], "summary": "left before the end",
              "promised_on": str(hall_today(clock))},
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    assert opened.json()["owner_id"] == hall.admin.user_id


async def test_a_visit_sent_to_the_desk_and_back_counts_once_for_its_matter(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await at_counter(client, hall, 1, DESK_COUNTER, "open")
    await serve(client, hall, 0, 1)
    await at_counter(
        client, hall, 0, 1, "finish",
        json={"outcome": "missing_documents", "missing_documents": [REGISTER], "escalate": True,
              "visitor": {"phone": "13700137000"}},
    )  # fmt: skip
    await serve(client, hall, 1, DESK_COUNTER)  # the desk sorts it out and sends them back
    back = await at_counter(
        client, hall, 1, DESK_COUNTER, "transfer", json={"service_id": hall.services["A"]}
    )
    assert back.status_code == 200, back.text
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "done"})

    report = await call_as(client, hall.manager, "GET", f"{base}/reports/outcomes")
    a = next(m for m in report.json()["matters"] if m["service_id"] == hall.services["A"])
    assert (a["served"], a["done"]) == (2, 1)  # two services of the matter
    assert (a["first_visits"], a["repeat_visits"], a["one_visit_done"]) == (1, 0, 1)
    assert a["one_visit_rate"] == 1.0  # one visit, and it ended done


@contextlib.asynccontextmanager
async def writes_held(url: str, table: str, writers: int) -> AsyncIterator[None]:
    """On PostgreSQL, hold writes to ``table`` (reads go on) until ``writers`` transactions
    wait to write it: each has made its checks, none has written, so they truly race.
    SQLite runs one writing transaction at a time (BEGIN IMMEDIATE): nothing to hold."""
    if not url.startswith("postgresql"):
        yield
        return
    engine = create_async_engine(url)
    try:
        async with engine.connect() as holder, engine.connect() as watcher:
            await holder.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
            yield
            waiting = text(
                "SELECT count(*) FROM pg_locks "
                "WHERE relation = CAST(:table AS regclass) AND NOT granted"
            )
            async with asyncio.timeout(30):
                # A state in another process: polled, as nothing here can signal it.
                while (await watcher.scalar(waiting, {"table": table})) < writers:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await holder.commit()
    finally:
        await engine.dispose()


async def test_two_managers_flagging_two_desks_at_once_leave_one_desk(
    client: AsyncTestClient[Any], bus: Bus, settings: Settings
) -> None:
    """The hall's one desk is kept by the database too: eight matters flagged (or created)
    as the desk in eight transactions at once leave exactly one; the others are refused and
    told which one it is, and nothing half-made is left."""
    hall = await build_hall(client, bus, clerks=1, counters=[(1, {"A": "primary"})])
    made = []
    for i in range(4):
        fields = {"name_zh": f"窗口{i}", "name_en": f"Desk {i}", "prefix": f"D{'ABCD'[i]}",
                  "typical_minutes": 10}  # fmt: skip
        made.append((await bus.run(hall_config.create_service, hall.hall_id, fields)).id)

    async def flag(service_id: int) -> hall_config.ServiceOut:
        return await bus.run(hall_config.update_service, hall.hall_id, service_id, {"desk": True})

    async def create(i: int) -> hall_config.ServiceOut:
        fields = {"name_zh": f"新{i}", "name_en": f"New {i}", "prefix": f"N{'ABCD'[i]}",
                  "typical_minutes": 10, "desk": True}  # fmt: skip
        return await bus.run(hall_config.create_service, hall.hall_id, fields)

    async with writes_held(settings.effective_database_url, "services", 8):
        tasks = [asyncio.create_task(flag(sid)) for sid in made]
        tasks += [asyncio.create_task(create(i)) for i in range(4)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    won = [r for r in results if isinstance(r, hall_config.ServiceOut)]
    lost = [r for r in results if not isinstance(r, hall_config.ServiceOut)]
    assert len(won) == 1, results
    desk_id = won[0].id
    for refusal in lost:
        assert isinstance(refusal, Invalid), refusal
        assert f"matter {desk_id} is this hall's desk already" in str(refusal)

    base = f"/api/halls/{hall.hall_id}"
    listed = (await call_as(client, hall.admin, "GET", f"{base}/services")).json()
    assert [s["id"] for s in listed if s["desk"]] == [desk_id]
    news = [s["name_en"] for s in listed if s["name_en"].startswith("New ")]
    assert news == ([won[0].name_en] if won[0].name_en.startswith("New ") else [])
