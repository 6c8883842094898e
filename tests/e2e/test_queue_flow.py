"""A day at the counter through the API: issue, call, serve, finish, transfer — on both databases."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from queue_server.clock import FixedClock
from queue_server.service import estimates
from queue_server.service.bus import Bus
from tests.support import DemoSetup, build_hall, call_as


async def issue(
    client: AsyncTestClient[Any], hall: DemoSetup, prefix: str, **body: Any
) -> dict[str, Any]:
    answer = await client.post(
        f"/api/halls/{hall.hall_id}/tickets",
        json={"service_id": hall.services[prefix], **body},
        headers=hall.kiosk,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def open_counter(
    client: AsyncTestClient[Any], hall: DemoSetup, clerk: int, number: int
) -> None:
    answer = await call_as(
        client, hall.clerks[clerk], "POST", f"/api/counters/{hall.counters[number]}/open"
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["counter"]["state"] == "open"


async def act(
    client: AsyncTestClient[Any], hall: DemoSetup, clerk: int, number: int, action: str, **kw: Any
) -> Any:
    return await call_as(
        client, hall.clerks[clerk], "POST", f"/api/counters/{hall.counters[number]}/{action}", **kw
    )


async def test_issue_call_start_finish(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    first = await issue(client, hall, "A")
    second = await issue(client, hall, "A")
    assert (first["number"], second["number"]) == ("A001", "A002")
    assert first["service"]["name_zh"] == "社会保险"
    assert first["state"] == "waiting"
    assert (first["people_ahead"], second["people_ahead"]) == (0, 1)
    # No counter serving A is open yet: nobody can promise minutes.
    assert second["estimate_minutes"] is None
    assert second["follow_url"] == f"https://hall.example.org/t/{second['follow_token']}"

    await open_counter(client, hall, 0, 1)
    status = (await client.get(f"/api/follow/{second['follow_token']}")).json()
    # One person ahead, the matter's typical 10 minutes, one counter: about 10, told as a
    # range that holds the wait for nine visitors in ten.
    assert status["estimate_minutes"] == 10
    assert (status["estimate_low"], status["estimate_high"]) == (3, 25)
    assert status["people_ahead"] == 1

    clock.advance(minutes=3)
    called = await act(client, hall, 0, 1, "call-next")
    assert called.status_code == 200
    assert called.json()["ticket"]["number"] == "A001"
    assert called.json()["reason"] == "longest wait 3 min"
    assert called.json()["ticket"]["counter_number"] == 1

    follower = (await client.get(f"/api/follow/{first['follow_token']}")).json()
    assert (follower["state"], follower["counter_number"]) == ("called", 1)

    started = await act(client, hall, 0, 1, "start")
    assert started.json()["state"] == "serving"
    clock.advance(minutes=7)
    # Matter A lists no documents: which ones were missing is said in the note.
    unnamed = await act(client, hall, 0, 1, "finish", json={"outcome": "missing_documents"})
    assert unnamed.status_code == 400, unnamed.text
    assert "say in the note which ones were missing" in unnamed.json()["detail"]
    finished = await act(
        client, hall, 0, 1, "finish",
        json={"outcome": "missing_documents", "note": "no proof of address"},
    )  # fmt: skip
    assert finished.status_code == 200
    assert (finished.json()["state"], finished.json()["outcome"]) == ("done", "missing_documents")

    snapshot = (await client.get(f"/api/halls/{hall.hall_id}/snapshot", headers=hall.kiosk)).json()
    waiting = {w["prefix"]: w["waiting"] for w in snapshot["waiting"]}
    assert waiting == {"A": 1, "B": 0, "C": 0}
    assert snapshot["recent_calls"][0]["number"] == "A001"
    assert snapshot["recent_calls"][0]["counter_number"] == 1
    # issued x2, opened, called, started, finished: six events, numbered 1..6
    assert snapshot["seq"] == 6


async def test_transfer_keeps_number_and_goes_first(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    visitor = await issue(client, hall, "A")
    waiting_b = [await issue(client, hall, "B") for _ in range(3)]
    await open_counter(client, hall, 0, 1)
    await open_counter(client, hall, 1, 2)
    await act(client, hall, 0, 1, "call-next")
    await act(client, hall, 0, 1, "start")
    clock.advance(minutes=5)
    moved = await act(
        client, hall, 0, 1, "transfer", json={"service_id": hall.services["B"], "note": "tax part"}
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["transferred"]["state"] == "transferred"
    assert body["new_ticket"]["number"] == visitor["number"] == "A001"
    assert body["new_ticket"]["kind"] == "transfer"
    assert body["new_ticket"]["service"]["id"] == hall.services["B"]
    # The follow link now shows the visit's new ticket.
    follow = (await client.get(f"/api/follow/{visitor['follow_token']}")).json()
    assert (follow["service"]["name_en"], follow["state"]) == ("Tax", "waiting")
    assert follow["people_ahead"] == 0

    # B001..B003 waited longer, but the continuing visit goes first at the tax counter.
    call = (await act(client, hall, 1, 2, "call-next")).json()
    assert call["ticket"]["number"] == "A001"
    assert call["reason"].startswith("continues visit")
    assert waiting_b[0]["number"] == "B001"


async def test_priority_recall_return_no_show(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    await issue(client, hall, "A")
    clock.advance(minutes=5)
    elderly = await issue(client, hall, "A", priority="elderly")
    await open_counter(client, hall, 0, 1)
    call = (await act(client, hall, 0, 1, "call-next")).json()
    assert call["ticket"]["number"] == elderly["number"] == "A002"
    assert call["reason"] == "priority: elderly (waiting 0 min)"

    recalled = (await act(client, hall, 0, 1, "recall")).json()
    assert recalled["state"] == "called"
    returned = (await act(client, hall, 0, 1, "return")).json()
    assert (returned["state"], returned["counter_number"]) == ("waiting", None)
    # Back in the queue at its old place: still ahead of A001 by its boost.
    again = (await act(client, hall, 0, 1, "call-next")).json()
    assert again["ticket"]["number"] == "A002"
    gone = (await act(client, hall, 0, 1, "no-show")).json()
    assert gone["state"] == "no_show"
    last = (await act(client, hall, 0, 1, "call-next")).json()
    assert last["ticket"]["number"] == "A001"
    await act(client, hall, 0, 1, "no-show")
    empty = await act(client, hall, 0, 1, "call-next")
    assert empty.status_code == 200
    assert empty.json() == {
        "ticket": None,
        "reason": "nobody is waiting for this counter's matters",
    }


async def test_clerk_errors_are_clear(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus)
    closed = await act(client, hall, 0, 1, "call-next")
    assert closed.status_code == 409
    assert "counter 1" in closed.json()["detail"] and "closed" in closed.json()["detail"]

    await issue(client, hall, "A")
    await issue(client, hall, "A")
    await open_counter(client, hall, 0, 1)
    # Someone else's counter: refused.
    other = await act(client, hall, 1, 1, "call-next")
    assert other.status_code == 403
    assert "another clerk" in other.json()["detail"]

    no_current = await act(client, hall, 0, 1, "start")
    assert no_current.status_code == 409
    assert no_current.json()["detail"] == "counter 1 has no current ticket; call one first"

    await act(client, hall, 0, 1, "call-next")
    busy = await act(client, hall, 0, 1, "call-next")
    assert busy.status_code == 409
    assert "busy with A001 (called)" in busy.json()["detail"]

    finish_early = await act(client, hall, 0, 1, "finish", json={"outcome": "done"})
    assert finish_early.status_code == 409
    assert finish_early.json()["detail"] == "cannot finish ticket A001: it is called"

    await act(client, hall, 0, 1, "start")
    bad_outcome = await act(client, hall, 0, 1, "finish", json={"outcome": "great"})
    assert bad_outcome.status_code == 400
    assert bad_outcome.json()["extra"][0]["key"] == "outcome"
    no_note = await act(client, hall, 0, 1, "finish", json={"outcome": "other"})
    assert no_note.status_code == 400
    assert "needs a note" in no_note.json()["detail"]
    assert no_note.json()["extra"]["field"] == "note"
    wrong_matter = await act(client, hall, 0, 1, "transfer", json={"service_id": 99999})
    assert wrong_matter.status_code == 404
    same_matter = await act(client, hall, 0, 1, "transfer", json={"service_id": hall.services["A"]})
    assert same_matter.status_code == 409

    cannot_close = await act(client, hall, 0, 1, "close")
    assert cannot_close.status_code == 409
    assert "finish or return it first" in cannot_close.json()["detail"]
    # Nothing above half-happened: the ticket is still being served.
    current = (
        await call_as(client, hall.clerks[0], "GET", f"/api/counters/{hall.counters[1]}")
    ).json()
    assert current["current"]["state"] == "serving"
    assert current["current"]["number"] == "A001"


async def test_kiosk_input_errors(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    url = f"/api/halls/{hall.hall_id}/tickets"
    not_int = await client.post(url, json={"service_id": "one"}, headers=hall.kiosk)
    assert not_int.status_code == 400
    assert not_int.json()["extra"][0]["key"] == "service_id"
    missing = await client.post(url, json={}, headers=hall.kiosk)
    assert missing.status_code == 400
    assert "service_id" in str(missing.json())
    not_json = await client.post(
        url, content=b"{nope", headers={**hall.kiosk, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    unknown_matter = await client.post(url, json={"service_id": 4242}, headers=hall.kiosk)
    assert unknown_matter.status_code == 404
    assert "no matter with id 4242" in unknown_matter.json()["detail"]
    bad_priority = await client.post(
        url, json={"service_id": hall.services["A"], "priority": "vip"}, headers=hall.kiosk
    )
    assert bad_priority.status_code == 400
    assert "elderly" in bad_priority.json()["detail"]
    other_hall = await client.post(
        "/api/halls/999/tickets", json={"service_id": hall.services["A"]}, headers=hall.kiosk
    )
    assert other_hall.status_code == 403

    # Nothing was issued by the refused requests: the next number is A001.
    ok = await client.post(url, json={"service_id": hall.services["A"]}, headers=hall.kiosk)
    assert ok.json()["number"] == "A001"

    # Outside opening hours: a clear 409 that says when the hall opens.
    patched = await call_as(
        client,
        hall.manager,
        "PATCH",
        f"/api/halls/{hall.hall_id}",
        json={"opening_hours": {"mon": [["08:30", "12:00"]], "tue": [["08:30", "12:00"]]}},
    )
    assert patched.status_code == 200, patched.text
    clock.advance(hours=5)  # 15:00 in Shanghai on Monday
    closed = await client.post(url, json={"service_id": hall.services["A"]}, headers=hall.kiosk)
    assert closed.status_code == 409
    assert closed.json()["detail"] == (
        "the hall is closed now (15:00 Asia/Shanghai); it opens Tue 2026-03-03 08:30"
    )


async def test_double_tap_yields_one_ticket(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus)
    url = f"/api/halls/{hall.hall_id}/tickets"
    headers = {**hall.kiosk, "Idempotency-Key": "tap-7f3a"}
    first = await client.post(url, json={"service_id": hall.services["A"]}, headers=headers)
    second = await client.post(url, json={"service_id": hall.services["A"]}, headers=headers)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["number"] == "A001"
    third = await client.post(url, json={"service_id": hall.services["A"]}, headers=hall.kiosk)
    assert third.json()["number"] == "A002"
    # The same key for a different request is refused, not answered with A001.
    misuse = await client.post(url, json={"service_id": hall.services["B"]}, headers=headers)
    assert misuse.status_code == 409
    assert "already used for a different request" in misuse.json()["detail"]


async def test_follow_link(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus)
    ticket = await issue(client, hall, "C")
    # The printed link opens the follower page, in the hall's language unless asked.
    link = await client.get(f"/t/{ticket['follow_token']}")
    assert link.status_code == 200
    assert link.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in link.text
    english = await client.get(f"/t/{ticket['follow_token']}?lang=en")
    assert '<html lang="en">' in english.text
    assert english.cookies.get("onedoor_lang") == "en"
    unknown = await client.get("/api/follow/not-a-token")
    assert unknown.status_code == 404
    assert "copied whole" in unknown.json()["detail"]


async def test_waiting_list_shows_policy_order(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    await issue(client, hall, "C")  # secondary at counter 1
    clock.advance(minutes=1)
    await issue(client, hall, "A")
    await open_counter(client, hall, 0, 1)
    answer = await call_as(
        client, hall.clerks[0], "GET", f"/api/counters/{hall.counters[1]}/waiting"
    )
    order = [(w["number"], w["reason"]) for w in answer.json()]
    assert order == [
        ("A001", "longest wait 0 min"),
        ("C001", "longest wait 1 min (secondary matter here)"),
    ]
    # A matter the counter serves at secondary level goes first once it has waited the
    # hall's 20 minutes longer than the counter's own: C001 did, against a new A002 only.
    clock.advance(minutes=21)
    await issue(client, hall, "A")
    answer = await call_as(
        client, hall.clerks[0], "GET", f"/api/counters/{hall.counters[1]}/waiting"
    )
    assert [(w["number"], w["reason"]) for w in answer.json()] == [
        ("A001", "longest wait 21 min"),
        ("C001", "longest wait 22 min (secondary matter here)"),
        ("A002", "longest wait 0 min"),
    ]


async def test_the_waiting_list_shows_the_first_fifty_and_counts_everyone(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    """A long queue: the counter's list holds the first 50 in the order call-next takes
    them, and its console counts everyone waiting for its matters (not the list's length)."""
    hall = await build_hall(client, bus)
    for _ in range(53):
        await issue(client, hall, "A")
        clock.advance(seconds=20)
    await issue(client, hall, "C")  # secondary at counter 1: counted too
    await issue(client, hall, "B")  # counter 2's only: not counted at counter 1
    await open_counter(client, hall, 0, 1)
    counter = f"/api/counters/{hall.counters[1]}"
    listed = (await call_as(client, hall.clerks[0], "GET", f"{counter}/waiting")).json()
    assert len(listed) == 50
    assert [w["number"] for w in listed] == [f"A{n:03d}" for n in range(1, 51)]
    console = await call_as(client, hall.clerks[0], "GET", counter)
    assert console.json()["waiting_total"] == 54
    called = (await act(client, hall, 0, 1, "call-next")).json()
    assert called["ticket"]["number"] == listed[0]["number"]
    console = await call_as(client, hall.clerks[0], "GET", counter)
    assert console.json()["waiting_total"] == 53


async def test_a_finished_service_is_rated_once_and_the_manager_sees_it(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    ticket = await issue(client, hall, "A")
    token = ticket["follow_token"]
    early = await client.post(f"/api/follow/{token}/rating", json={"stars": 5})
    assert early.status_code == 409
    assert "once its service is finished" in early.json()["detail"]
    await open_counter(client, hall, 0, 1)
    for action, body in [("call-next", None), ("start", None), ("finish", {"outcome": "done"})]:
        assert (await act(client, hall, 0, 1, action, json=body)).status_code == 200
    bad = await client.post(f"/api/follow/{token}/rating", json={"stars": 6})
    assert bad.status_code == 400
    rated = await client.post(
        f"/api/follow/{token}/rating", json={"stars": 4, "comment": "  快，但  要排队 "}
    )
    assert rated.status_code == 201, rated.text
    again = await client.post(f"/api/follow/{token}/rating", json={"stars": 1})
    assert again.status_code == 409
    assert "rated already" in again.json()["detail"]
    assert (await client.get(f"/api/follow/{token}")).json()["rating"] == 4
    seen = await call_as(client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/ratings")
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert (body["count"], body["average"]) == (1, 4.0)
    assert body["ratings"][0] == {
        **body["ratings"][0], "number": "A001", "stars": 4, "comment": "快，但 要排队",
        "counter_number": 1,
    }  # fmt: skip
    clerk = await call_as(client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/ratings")
    assert clerk.status_code == 403


async def test_the_kiosk_answer_says_what_the_ticket_reads(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    """The kiosk's answer is made from the issuing statement itself (PostgreSQL) or read
    back (SQLite), its estimate from the last projection's floor extended by the walk-ins
    since: either way it says what reading the ticket afresh says — number, matter, people
    ahead, estimate and range, follow link — and how its print job stands."""
    hall = await build_hall(client, bus)
    await open_counter(client, hall, 0, 1)
    devices = await call_as(client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/devices")
    assert devices.status_code == 200, devices.text
    kiosk_id = next(d["id"] for d in devices.json() if d["kind"] == "kiosk")
    answers = []
    for prefix, priority in [("A", "none"), ("B", "none"), ("A", "elderly"), ("A", "none")]:
        answers.append(await issue(client, hall, prefix, priority=priority))
        estimates.forget()  # the reading below projects a floor read whole
        read = await call_as(
            client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/tickets/{answers[-1]['id']}"
        )
        assert read.status_code == 200, read.text
        assert {**answers[-1], "printing": None} == read.json()
        assert answers[-1]["printing"] == {"state": "no_printer", "job_id": None, "detail": None}
    assert [a["people_ahead"] for a in answers] == [0, 0, 0, 2]
    assert answers[0]["estimate_minutes"] is not None
    # A call moves the floor: the next answer is projected from a floor read whole.
    assert (await act(client, hall, 0, 1, "call-next")).status_code == 200
    after_call = await issue(client, hall, "A")
    estimates.forget()
    read = await call_as(
        client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/tickets/{after_call['id']}"
    )
    assert {**after_call, "printing": None} == read.json()
    assert after_call["people_ahead"] == 2  # the elderly visitor was called first

    # With a printer whose agent has never connected, the job waits and the answer says why.
    printer = await call_as(
        client, hall.manager, "POST", f"/api/halls/{hall.hall_id}/devices",
        json={"kind": "printer", "name": "Kiosk printer", "kiosk_id": kiosk_id},
    )  # fmt: skip
    assert printer.status_code == 201, printer.text
    printed = await issue(client, hall, "C")
    assert printed["printing"]["state"] == "pending"
    assert printed["printing"]["detail"] == "print agent offline"
    assert isinstance(printed["printing"]["job_id"], int)
    estimates.forget()
    read = await call_as(
        client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/tickets/{printed['id']}"
    )
    assert {**printed, "printing": None} == read.json()


async def test_a_ticket_issued_just_after_midnight_is_told_from_the_new_day_only(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    """The hall is open around the clock: the last ticket of one business day still waits
    when the next day's first is issued seconds later. The new ticket's answer counts only
    the new day's queue, as a fresh reading does (the projection kept from seconds before
    midnight is not extended across the day)."""
    from datetime import UTC, datetime

    clock.set(datetime(2026, 3, 2, 15, 59, 58, tzinfo=UTC))  # 23:59:58 in Shanghai
    hall = await build_hall(client, bus)
    await open_counter(client, hall, 0, 1)
    late = await issue(client, hall, "A")
    assert late["people_ahead"] == 0
    clock.set(datetime(2026, 3, 2, 16, 0, 1, tzinfo=UTC))  # 00:00:01, the next day
    early = await issue(client, hall, "A")
    assert early["number"] == "A001"  # numbers start again
    assert early["people_ahead"] == 0
    estimates.forget()
    read = await call_as(
        client, hall.clerks[0], "GET", f"/api/halls/{hall.hall_id}/tickets/{early['id']}"
    )
    assert {**early, "printing": None} == read.json()
