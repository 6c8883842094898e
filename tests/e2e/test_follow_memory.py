"""GET /api/follow/{token} from memory: a follower's ticket is read from the database
once, then kept while no event changes it; what the visitor is told must be what the
database says — as the queue moves, when their own ticket is called or rated (at once when
the change was made through this process), and when the hall's setup changes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from queue_server.domain.model import Outcome
from queue_server.realtime.follows import FollowReads
from queue_server.service import views
from queue_server.service.bus import Bus
from queue_server.service.commands import CallNext, FinishService, StartService
from queue_server.settings import Settings
from tests.support import DemoSetup, build_hall, call_as, issue, remembering

WITHIN_S = 5.0
TOLD = ("number", "state", "people_ahead", "estimate_minutes", "estimate_low",
        "estimate_high", "estimate_basis", "counter_number", "rating", "service")  # fmt: skip
"""What a visitor reads on their follow page."""


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return remembering(settings, request)


def follows_of(client: AsyncTestClient[Any]) -> FollowReads:
    return client.app.state.follows  # type: ignore[no-any-return]


async def act(
    client: AsyncTestClient[Any], hall: DemoSetup, number: int, action: str, **body: Any
) -> dict[str, Any]:
    answer = await call_as(
        client, hall.clerks[0], "POST", f"/api/counters/{hall.counters[number]}/{action}",
        json=body or None,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def follow(client: AsyncTestClient[Any], token: str) -> dict[str, Any]:
    answer = await client.get(f"/api/follow/{token}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def truth(bus: Bus, token: str) -> dict[str, Any]:
    """What the database says the visitor is told now."""
    view = dataclasses.asdict(await bus.run(views.ticket_by_follow_token, token))
    return {key: view[key] for key in TOLD}


def told(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: answer[key] for key in TOLD}


async def kept(client: AsyncTestClient[Any], token: str) -> dict[str, Any]:
    """Read until this process keeps the view (the hall's first follower read starts
    listening to it; the read after that is kept)."""
    follows = follows_of(client)
    deadline = time.monotonic() + WITHIN_S
    while True:
        answer = await follow(client, token)
        if token in follows.kept:
            return answer
        assert time.monotonic() < deadline, "the view was never kept"


async def until_told(client: AsyncTestClient[Any], token: str, check: Any) -> dict[str, Any]:
    """Read again until ``check`` holds (the event's way through the relay and the hub: a
    few milliseconds), at most WITHIN_S."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        answer = await follow(client, token)
        if check(answer):
            return answer
        assert time.monotonic() < deadline, f"never came; last: {answer}"


async def test_a_waiting_ticket_is_read_once_and_told_again_as_the_queue_moves(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    await act(client, hall, 1, "open")
    for _ in range(3):
        await issue(client, hall, "A")
    token = (await issue(client, hall, "A"))["follow_token"]
    first = await kept(client, token)
    assert told(first) == await truth(bus, token)
    assert (first["state"], first["people_ahead"]) == ("waiting", 3)
    follows = follows_of(client)
    reads = follows.reads
    for _ in range(10):
        assert told(await follow(client, token)) == told(first)
    assert follows.reads == reads, "nothing changed: no read"

    # The queue moves: the first in line is called, someone joins behind.
    await act(client, hall, 1, "call-next")
    await issue(client, hall, "A")
    moved = await until_told(client, token, lambda t: t["people_ahead"] == 2)
    assert told(moved) == await truth(bus, token)
    assert follows.reads == reads, "told again from the projection, not read"


async def test_the_visitor_s_own_ticket_changing_here_shows_at_once(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    """A clerk's call and the visitor's rating, both through this process: the very next
    read shows them (no waiting for the event to come round)."""
    hall = await build_hall(client, bus)
    await act(client, hall, 1, "open")
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    await act(client, hall, 1, "call-next")
    called = await follow(client, token)
    assert (called["state"], called["counter_number"]) == ("called", 1)
    await kept(client, token)
    await act(client, hall, 1, "start")
    await act(client, hall, 1, "finish", outcome="done")
    done = await follow(client, token)
    assert done["state"] == "done"
    await kept(client, token)
    rated = await client.post(f"/api/follow/{token}/rating", json={"stars": 4})
    assert rated.status_code == 201, rated.text
    assert (await follow(client, token))["rating"] == 4
    assert told(await follow(client, token)) == await truth(bus, token)


async def test_a_change_made_through_another_process_shows_when_its_event_comes(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    await act(client, hall, 1, "open")
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    follows = follows_of(client)
    reads = follows.reads
    # Called through the test's own bus, as another process would: this process hears of
    # it only by the event (its relay publishes it; Redis would bring another's).
    await bus.execute(CallNext(hall.counters[1], hall.clerks[0].user_id))
    client.app.state.relay.wake()
    called = await until_told(client, token, lambda t: t["state"] == "called")
    assert told(called) == await truth(bus, token)
    assert follows.reads == reads + 1, "read again once, for the event about the ticket"
    # A called ticket is kept as it was read until an event about it comes.
    await kept(client, token)
    clerk = (hall.counters[1], hall.clerks[0].user_id)
    await bus.execute(StartService(*clerk))
    await bus.execute(FinishService(*clerk, outcome=Outcome.DONE))
    client.app.state.relay.wake()
    done = await until_told(client, token, lambda t: t["state"] == "done")
    assert told(done) == await truth(bus, token)


async def test_a_renamed_matter_shows_at_the_next_read(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    renamed = await call_as(
        client, hall.admin, "PATCH", f"/api/halls/{hall.hall_id}/services/{hall.services['A']}",
        json={"name_en": "Passports (renamed)"},
    )  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    answer = await follow(client, token)
    assert answer["service"]["name_en"] == "Passports (renamed)"
    assert told(answer) == await truth(bus, token)


async def test_a_matter_made_the_halls_desk_shows_at_the_next_read(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    token = (await issue(client, hall, "A"))["follow_token"]
    assert (await kept(client, token))["desk"] is False
    made = await call_as(
        client, hall.admin, "PATCH", f"/api/halls/{hall.hall_id}/services/{hall.services['A']}",
        json={"desk": True},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    assert (await follow(client, token))["desk"] is True


async def test_an_unknown_link_is_404_and_an_idle_hall_gives_its_hub_back(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    missing = await client.get("/api/follow/not-a-token")
    assert missing.status_code == 404
    assert "check it was copied whole" in missing.json()["detail"]
    assert len(client.app.state.hubs) == 0, "no hall is listened to for an unknown link"
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    follows, hubs = follows_of(client), client.app.state.hubs
    assert len(hubs) == 1
    idle, follows.idle = follows.idle, 0.0
    await follows.release_idle()
    follows.idle = idle
    assert (len(hubs), len(follows.kept)) == (0, 0)
    assert told(await follow(client, token)) == await truth(bus, token)


async def test_a_hub_that_read_the_hall_again_reads_its_followers_again(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    """A hub that may have missed events (it resynchronised) cannot vouch for what was
    kept: the views are read again."""
    hall = await build_hall(client, bus)
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    # What a hub's resync does to every listener (realtime/hub.py ``resync``), here to the
    # hall's followers (the app's loop owns the hub's database work).
    followers = follows_of(client)._halls[hall.hall_id]
    assert followers.hub.board is not None
    followers.snapshot(followers.hub.board, b"")
    assert token not in follows_of(client).kept
    reads = follows_of(client).reads
    assert told(await follow(client, token)) == await truth(bus, token)
    assert follows_of(client).reads == reads + 1


async def waiting_and_about_to_be_read(
    client: AsyncTestClient[Any], bus: Bus
) -> tuple[DemoSetup, str, FollowReads]:
    """A hall with counter 1 open and one walk-in waiting, whose view this process knows
    the hall of but does not keep: the next read goes to the database."""
    hall = await build_hall(client, bus)
    await act(client, hall, 1, "open")
    token = (await issue(client, hall, "A"))["follow_token"]
    await kept(client, token)
    follows = follows_of(client)
    follows.drop(token)
    return hall, token, follows


class ChangedJustAfterTheRead:
    """The app's bus, but a follower's read of a waiting ticket is followed at once by
    ``change(found)``: the race between reading a view and keeping it."""

    def __init__(self, app_bus: Bus, change: Callable[[Any], Awaitable[None]]) -> None:
        self.app_bus, self.change = app_bus, change

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app_bus, name)

    async def read(self, work: Any, *args: Any) -> Any:
        found = await self.app_bus.read(work, *args)
        if work is views.followed and found.view.state == "waiting":
            await self.change(found)
        return found


async def test_a_view_read_while_its_ticket_changed_is_not_kept(
    client: AsyncTestClient[Any], bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read races a change: the ticket is called (through this process) after the
    database was read but before the view is kept. It must not be kept, or the visitor
    would be told "waiting" until the view aged out."""
    hall, token, follows = await waiting_and_about_to_be_read(client, bus)
    app_bus = follows.bus

    async def call(found: Any) -> None:
        # A clerk's call, committed in this process before the view is kept.
        await app_bus.execute(CallNext(hall.counters[1], hall.clerks[0].user_id))

    monkeypatch.setattr(follows, "bus", ChangedJustAfterTheRead(app_bus, call))
    stale = await follow(client, token)
    assert stale["state"] == "waiting"  # what was read: the call came after
    assert token not in follows.kept
    monkeypatch.undo()
    assert (await follow(client, token))["state"] == "called"


async def test_a_view_read_while_another_process_changed_its_ticket_is_not_kept(
    client: AsyncTestClient[Any], bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the call comes from another process: this one hears of it only by its
    event, which reaches the hall's hub while the view is still being read."""
    hall, token, follows = await waiting_and_about_to_be_read(client, bus)
    app_bus, relay = follows.bus, client.app.state.relay
    hub = follows._halls[hall.hall_id].hub

    async def call_elsewhere(found: Any) -> None:
        committed = app_bus.on_events
        app_bus.on_events = lambda events: relay.wake()  # only the event tells
        try:
            await app_bus.execute(CallNext(hall.counters[1], hall.clerks[0].user_id))
        finally:
            app_bus.on_events = committed
        deadline = time.monotonic() + WITHIN_S
        while hub.seq <= found.seq:  # the hub has heard the call
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    monkeypatch.setattr(follows, "bus", ChangedJustAfterTheRead(app_bus, call_elsewhere))
    assert (await follow(client, token))["state"] == "waiting"  # as read
    assert token not in follows.kept
    monkeypatch.undo()
    assert (await follow(client, token))["state"] == "called"
