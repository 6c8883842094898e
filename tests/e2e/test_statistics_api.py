"""A hall's statistics through the API on both databases, and every table downloaded as CSV
and XLSX, opened again and checked: the figures a manager would read off a known day."""

from __future__ import annotations

import csv
import io
from typing import Any

from litestar.testing import AsyncTestClient
from openpyxl import load_workbook

from queue_server.clock import FixedClock
from queue_server.service.bus import Bus
from tests.e2e.test_desk_flow import at_counter, desk_hall, hall_today, issue, serve
from tests.support import DemoSetup, build_hall, call_as


async def a_known_morning(client: AsyncTestClient[Any], bus: Bus, clock: FixedClock) -> DemoSetup:
    """10:00 four kiosk tickets (A001-A003, B001) and one a clerk takes for a visitor
    (C001, assisted, never called). Counter 1: A001 waits 4 min and takes 6, A002 is a
    no-show after 10, A003 waits 12 and leaves after 8. Counter 2: B001 waits 20, takes 3.
    A001's visitor gives 5 stars."""
    hall = await build_hall(client, bus)
    first = await issue(client, hall, "A")
    for prefix in ("A", "A", "B"):
        await issue(client, hall, prefix)
    assisted = await call_as(
        client, hall.clerks[1], "POST", f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services["C"]},
    )  # fmt: skip
    assert assisted.status_code == 201, assisted.text
    await at_counter(client, hall, 0, 1, "open")
    await at_counter(client, hall, 1, 2, "open")
    clock.advance(minutes=4)
    await serve(client, hall, 0, 1)
    clock.advance(minutes=6)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "done"})
    await at_counter(client, hall, 0, 1, "call-next")
    assert (await at_counter(client, hall, 0, 1, "no-show")).status_code == 200
    clock.advance(minutes=2)
    await serve(client, hall, 0, 1)
    clock.advance(minutes=8)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "visitor_left"})
    await serve(client, hall, 1, 2)
    clock.advance(minutes=3)
    await at_counter(client, hall, 1, 2, "finish", json={"outcome": "done"})
    rated = await client.post(f"/api/follow/{first['follow_token']}/rating", json={"stars": 5})
    assert rated.status_code == 201, rated.text
    hall.services["first_ticket"] = first["id"]  # A001's id, for the tests that need it
    return hall


async def stats(client: AsyncTestClient[Any], hall: DemoSetup, query: str = "") -> dict[str, Any]:
    answer = await call_as(
        client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/statistics?{query}"
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_statistics_by_matter_channel_counter_clerk_and_hour(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await a_known_morning(client, bus, clock)
    by_matter = await stats(client, hall)
    rows = {r["key"]: r for r in by_matter["rows"]}
    a = rows[str(hall.services["A"])]
    assert (a["label_en"], a["tickets"], a["served"], a["no_shows"]) == (
        "A Social insurance", 3, 2, 1,
    )  # fmt: skip
    assert (a["wait_p50"], a["wait_p90"]) == (10.0, 12.0)  # waits 4, 10, 12
    assert (a["service_p50"], a["service_p90"]) == (6.0, 8.0)  # services 6, 8
    assert a["outcomes"] == {"done": 1, "visitor_left": 1}
    assert (a["ratings"], a["rating_average"]) == (1, 5.0)
    b, c = rows[str(hall.services["B"])], rows[str(hall.services["C"])]
    assert (b["wait_p50"], b["service_p50"]) == (20.0, 3.0)
    assert (c["tickets"], c["served"], c["wait_p50"]) == (1, 0, None)
    total = by_matter["total"]
    assert not [k for k in total if k.startswith("_")]  # figures only, not what made them
    assert (total["tickets"], total["served"], total["no_shows"]) == (5, 3, 1)
    assert (total["wait_p50"], total["wait_p90"]) == (10.0, 20.0)  # 4, 10, 12, 20

    channels = {r["key"]: r["tickets"] for r in (await stats(client, hall, "by=channel"))["rows"]}
    assert channels == {"walk_in": 4, "assisted": 1}
    counters = await stats(client, hall, "by=counter")
    assert [(r["key"], r["tickets"]) for r in counters["rows"]] == [
        (str(hall.counters[1]), 3), (str(hall.counters[2]), 1), ("none", 1),
    ]  # fmt: skip
    clerks = {r["key"]: r["served"] for r in (await stats(client, hall, "by=clerk"))["rows"]}
    assert clerks == {str(hall.clerks[0].user_id): 2, str(hall.clerks[1].user_id): 1, "none": 0}
    hours = await stats(client, hall, "by=hour")
    assert [(r["key"], r["tickets"]) for r in hours["rows"]] == [("10", 5)]  # hall time
    only = await stats(client, hall, f"service_id={hall.services['A']}&channel=walk_in")
    assert only["total"]["tickets"] == 3

    for query, field in [
        ("by=week", "by"),
        ("channel=phone", "channel"),
        ("from=2026-13-01", "from"),
    ]:
        bad = await call_as(
            client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/statistics?{query}"
        )
        assert bad.status_code == 400, (query, bad.text)
        assert field in bad.text  # the answer names what to fix
    clerk = await call_as(client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/statistics")
    assert clerk.status_code == 403


async def test_statistics_download_as_csv_and_xlsx_opens_with_the_same_figures(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await a_known_morning(client, bus, clock)
    base = f"/api/halls/{hall.hall_id}/statistics/export"
    as_csv = await call_as(client, hall.manager, "GET", f"{base}?format=csv")
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    assert as_csv.content.startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese as UTF-8
    table = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert table[0][:4] == ["分组", "Group", "取号数", "办理数"]
    assert [row[0] for row in table[1:]] == ["A 社会保险", "B 税务", "C 综合咨询", "全部"]
    assert table[-1][2:5] == ["5", "3", "1"]  # tickets, served, no-shows

    as_xlsx = await call_as(client, hall.manager, "GET", f"{base}?format=xlsx&lang=en&by=channel")
    assert as_xlsx.status_code == 200
    book = load_workbook(io.BytesIO(as_xlsx.content))
    sheet = book["Statistics"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Group (zh)", "Group", "Tickets")
    assert [(r[1], r[2]) for r in rows[1:]] == [("Walk-in", 4), ("Assisted", 1), ("All", 5)]
    headings = list(rows[0])
    assert rows[-1][headings.index("Wait p50 (min)")] == 10.0
    assert rows[-1][headings.index("Visitor left")] == 1

    wrong = await call_as(client, hall.manager, "GET", f"{base}?format=pdf")
    assert wrong.status_code == 400


async def test_outcomes_and_cases_download_and_formulas_stay_text(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    setup = await desk_hall(client, bus)
    hall, base = setup.hall, f"/api/halls/{setup.id}"
    ticket = await issue(client, hall, "A")
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(
        client, hall, 0, 1, "finish",
        json={"outcome": "missing_documents", "missing_documents": ["身份证 ID card"]},
    )  # fmt: skip
    opened = await call_as(
        client, hall.clerks[0], "POST", f"{base}/cases",
        json={"ticket_id": ticket["id"], "summary": '=HYPERLINK("http://evil","click")',
              "promised_on": str(hall_today(clock))},
    )  # fmt: skip
    assert opened.status_code == 201, opened.text

    outcomes = await call_as(
        client, hall.manager, "GET", f"{base}/reports/outcomes/export?format=xlsx&lang=en"
    )
    assert outcomes.status_code == 200, outcomes.text
    book = load_workbook(io.BytesIO(outcomes.content))
    assert book.sheetnames == ["Outcomes", "Desk"]
    rows = list(book["Outcomes"].iter_rows(values_only=True))
    headings = list(rows[0])
    social = next(r for r in rows if r[0] == "Social insurance")
    assert social[headings.index("Services")] == 1
    assert social[headings.index("One-visit rate")] == 0
    assert social[headings.index("Missing documents")] == 1
    assert social[headings.index("Documents most often missing")] == "身份证 ID card (1)"
    desk_rows = dict(book["Desk"].iter_rows(min_row=2, values_only=True))
    assert desk_rows["Cases opened"] == 1

    cases = await call_as(client, hall.manager, "GET", f"{base}/cases/export?format=csv")
    assert cases.status_code == 200
    table = list(csv.reader(io.StringIO(cases.content.decode("utf-8-sig"))))
    assert table[0][0] == "编号"
    summary = table[1][table[0].index("诉求内容")]
    assert summary == '\'=HYPERLINK("http://evil","click")'  # text, never a formula
    as_xlsx = await call_as(client, hall.manager, "GET", f"{base}/cases/export?format=xlsx")
    cell = load_workbook(io.BytesIO(as_xlsx.content)).active.cell(row=2, column=9)
    assert cell.data_type == "s" and str(cell.value).startswith("'=")


async def test_the_day_close_keeps_the_days_report_for_the_manager_to_download(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock, database_url: str
) -> None:
    from tests.integration.test_scheduler import scheduler_for

    hall = await a_known_morning(client, bus, clock)
    base = f"/api/halls/{hall.hall_id}/reports/daily"
    day = hall_today(clock)
    missing = await call_as(client, hall.manager, "GET", f"{base}/{day}")
    assert missing.status_code == 404 and "day-close job writes it" in missing.json()["detail"]

    scheduler = scheduler_for(bus, database_url)
    clock.advance(hours=13, minutes=30)  # 23:30 in the hall: the close job's time
    await scheduler.close(hall.hall_id)
    listed = await call_as(client, hall.manager, "GET", base)
    assert [r["day"] for r in listed.json()] == [str(day)]

    # Corrections afterwards do not change the day's report: it is the day as closed.
    corrected = await call_as(
        client, hall.manager, "POST",
        f"/api/halls/{hall.hall_id}/tickets/{hall.services['first_ticket']}/outcome",
        json={"outcome": "visitor_left", "reason": "found out later"},
    )  # fmt: skip
    assert corrected.status_code == 200, corrected.text
    kept = await call_as(client, hall.manager, "GET", f"{base}/{day}?lang=en")
    assert kept.status_code == 200
    assert kept.headers["content-disposition"].endswith(f'daily-hall{hall.hall_id}-{day}.xlsx"')
    book = load_workbook(io.BytesIO(kept.content))
    assert book.sheetnames == ["Statistics", "Outcomes", "Desk"]
    stats = list(book["Statistics"].iter_rows(values_only=True))
    assert stats[-1][1:5] == ("All", 5, 3, 1)  # tickets, served, no-shows
    outcomes = list(book["Outcomes"].iter_rows(values_only=True))
    headings = list(outcomes[0])
    assert outcomes[-1][0] == "All matters" and outcomes[-1][1] == 3
    assert outcomes[-1][headings.index("Done")] == 2  # as closed: A001 and B001 done
    assert outcomes[-1][headings.index("Visitor left")] == 1
    as_csv = await call_as(client, hall.manager, "GET", f"{base}/{day}?format=csv")
    assert as_csv.content.decode("utf-8-sig").splitlines()[0].startswith("分组,Group,取号数")
