"""GET …/snapshot from memory in one process: answered from the hall's hub and a snapshot
read once per change, it must be byte for byte what the database says, as the clock moves
too, and a change of the hall's setup must show at the next request."""

from __future__ import annotations

import gzip
import time
from typing import Any

import msgspec
import pytest
from litestar.serialization import encode_json
from litestar.testing import AsyncTestClient

from queue_server.clock import FixedClock
from queue_server.realtime import snapshots as memory
from queue_server.realtime.hub import Hubs
from queue_server.realtime.snapshots import HallSnapshots
from queue_server.service import views
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor, IssueTicket
from queue_server.settings import Settings
from tests.support import DemoSetup, build_hall, call_as, issue, remembering

WITHIN_S = 5.0


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return remembering(settings, request)


def board(hall: DemoSetup) -> dict[str, str]:
    return {"Authorization": f"Bearer {hall.board_token}"}


async def raw_snapshot(client: AsyncTestClient[Any], hall: DemoSetup) -> bytes:
    answer = await client.get(f"/api/halls/{hall.hall_id}/snapshot", headers=board(hall))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.content


async def snapshot(client: AsyncTestClient[Any], hall: DemoSetup) -> dict[str, Any]:
    return msgspec.json.decode(await raw_snapshot(client, hall))  # type: ignore[no-any-return]


async def until_snapshot(
    client: AsyncTestClient[Any], hall: DemoSetup, check: Any
) -> dict[str, Any]:
    """Read the snapshot again until ``check`` holds (a few milliseconds: the event's way
    through the relay and the hub), at most WITHIN_S."""
    deadline = time.monotonic() + WITHIN_S
    seqs = []
    while True:
        answer = await client.get(f"/api/halls/{hall.hall_id}/snapshot", headers=board(hall))
        body = answer.json()
        seqs.append(body["seq"])
        assert seqs == sorted(seqs), f"a later read went back in time: {seqs}"
        if check(body):
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"never came; last: {body}"


async def counter(
    client: AsyncTestClient[Any], hall: DemoSetup, number: int, action: str, **kw: Any
) -> Any:
    answer = await call_as(
        client, hall.clerks[0], "POST", f"/api/counters/{hall.counters[number]}/{action}", **kw
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def truth(bus: Bus, hall: DemoSetup) -> bytes:
    """What the database says now, encoded as any Litestar answer would be."""
    return encode_json(await bus.run(views.hall_snapshot, hall.hall_id))


def snapshots_of(client: AsyncTestClient[Any]) -> HallSnapshots:
    return client.app.state.snapshots  # type: ignore[no-any-return]


async def test_the_snapshot_is_the_database_s_own_as_the_clock_moves(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock
) -> None:
    hall = await build_hall(client, bus)
    await issue(client, hall, "A")
    clock.advance(seconds=25)
    await issue(client, hall, "A")
    clock.advance(seconds=40)
    await issue(client, hall, "B")
    assert await raw_snapshot(client, hall) == await truth(bus, hall)
    snapshots = snapshots_of(client)
    loads = snapshots.loads
    # Minutes turn at each matter's own second: 0:35 → A 1, B 0; 1:20 → A 2, B 1; ...
    for seconds in (35, 20, 25, 5, 60 * 47 + 13, 3600 * 3):
        clock.advance(seconds=seconds)
        assert await raw_snapshot(client, hall) == await truth(bus, hall), seconds
    assert snapshots.loads == loads, "the clock alone needs no database"
    clock.advance(hours=18)  # past midnight in Shanghai: a new business day, an empty hall
    fresh = await raw_snapshot(client, hall)
    assert fresh == await truth(bus, hall)
    assert snapshots.loads == loads + 1
    assert {w["waiting"] for w in msgspec.json.decode(fresh)["waiting"]} == {0}


async def test_a_call_shows_in_the_next_snapshots_and_readers_share_one_read(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    await issue(client, hall, "A")
    await counter(client, hall, 1, "open")
    first = await raw_snapshot(client, hall)
    before = msgspec.json.decode(first)
    assert before["recent_calls"] == []
    snapshots = snapshots_of(client)
    loads = snapshots.loads
    for _ in range(20):  # nothing happened: memory
        assert await raw_snapshot(client, hall) == first
    assert snapshots.loads == loads

    called = await counter(client, hall, 1, "call-next")
    number = called["ticket"]["number"]
    seen = await until_snapshot(
        client, hall, lambda s: s["recent_calls"] and s["recent_calls"][0]["number"] == number
    )
    assert seen["seq"] == before["seq"] + 1
    assert encode_json(seen) == await truth(bus, hall)
    assert seen["counters"][0]["ticket_number"] == number
    assert snapshots.loads == loads + 1, "one read for the new event"


async def test_events_a_snapshot_does_not_show_move_its_seq_without_a_read(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    ticket = await issue(client, hall, "A")
    await counter(client, hall, 1, "open")
    await counter(client, hall, 1, "call-next")
    await counter(client, hall, 1, "start")
    await counter(client, hall, 1, "finish", json={"outcome": "done"})
    done = await until_snapshot(client, hall, lambda s: s["counters"][0]["ticket_number"] is None)
    snapshots = snapshots_of(client)
    loads = snapshots.loads
    rated = await client.post(
        f"/api/follow/{ticket['follow_token']}/rating", json={"stars": 5}
    )  # ServiceRated: nothing a snapshot shows
    assert rated.status_code == 201, rated.text
    after = await until_snapshot(client, hall, lambda s: s["seq"] == done["seq"] + 1)
    assert encode_json(after) == await truth(bus, hall)
    assert snapshots.loads == loads


async def test_a_change_of_setup_shows_at_once(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus)
    await snapshot(client, hall)
    hubs: Hubs = client.app.state.hubs
    renamed = await call_as(
        client, hall.admin, "PATCH",
        f"/api/halls/{hall.hall_id}/counters/{hall.counters[2]}", json={"name": "新窗口 New"},
    )  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    names = {c["number"]: c["name"] for c in (await snapshot(client, hall))["counters"]}
    assert names[2] == "新窗口 New", "no event came, yet the next read shows it"
    added = await call_as(
        client, hall.admin, "POST", f"/api/halls/{hall.hall_id}/services",
        json={"name_zh": "新事项", "name_en": "New matter", "prefix": "D", "typical_minutes": 5},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    prefixes = [w["prefix"] for w in (await snapshot(client, hall))["waiting"]]
    assert prefixes == ["A", "B", "C", "D"]
    assert await raw_snapshot(client, hall) == await truth(bus, hall)
    # The hub's board (what screens get) was read again too.
    hub = await hubs.acquire(hall.hall_id)
    try:
        deadline = time.monotonic() + WITHIN_S
        while {c.name for c in hub.board.counters} != {"窗口 1", "新窗口 New"}:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await snapshot(client, hall)
    finally:
        await hubs.release(hall.hall_id)


async def test_since_gives_a_change_this_process_has_not_heard_of(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    await issue(client, hall, "A")
    first = await snapshot(client, hall)
    # Committed as another process would: the test's own bus wakes no relay here, so this
    # process hears of it only at its relay's next poll (5 s on SQLite).
    await bus.execute(IssueTicket(hall.hall_id, hall.services["A"], Actor()))
    known = first["seq"] + 1
    answer = await client.get(
        f"/api/halls/{hall.hall_id}/snapshot", params={"since": known}, headers=board(hall)
    )
    fresh = answer.json()
    assert fresh["seq"] == known
    assert fresh["waiting"][0]["waiting"] == first["waiting"][0]["waiting"] + 1
    assert answer.content == await truth(bus, hall)
    later = await until_snapshot(client, hall, lambda s: s["seq"] >= known)
    assert later["seq"] == known, "and it stays: no read goes back"


async def test_an_idle_hall_gives_its_hub_back(client: AsyncTestClient[Any], bus: Bus) -> None:
    hall = await build_hall(client, bus)
    await snapshot(client, hall)
    snapshots, hubs = snapshots_of(client), client.app.state.hubs
    assert (len(snapshots), len(hubs)) == (1, 1)
    await snapshots.release_idle()
    assert (len(snapshots), len(hubs)) == (1, 1), "read a moment ago"
    snapshots.idle = 0.0
    await snapshots.release_idle()
    assert (len(snapshots), len(hubs)) == (0, 0)
    await issue(client, hall, "C")
    assert await raw_snapshot(client, hall) == await truth(bus, hall)
    assert (len(snapshots), len(hubs)) == (1, 1)


async def test_an_unknown_hall_is_404_and_keeps_no_hub(
    client: AsyncTestClient[Any], bus: Bus
) -> None:
    hall = await build_hall(client, bus)
    missing = await call_as(client, hall.admin, "GET", "/api/halls/999/snapshot")
    assert missing.status_code == 404
    assert len(client.app.state.hubs) == 0


async def test_boards_taking_gzip_share_one_compression_per_change(
    client: AsyncTestClient[Any], bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A board (a browser) that takes gzip gets the snapshot gzipped, made once per change
    of the hall and sent to every such reader; one that does not gets it plain. Either way
    it is the database's own snapshot, and a change shows at once."""
    compressed: list[int] = []
    compress = gzip.compress

    def counting(data: bytes, compresslevel: int = 9, *, mtime: float | None = None) -> bytes:
        compressed.append(len(data))
        return compress(data, compresslevel, mtime=mtime)

    monkeypatch.setattr(gzip, "compress", counting)
    hall = await build_hall(client, bus)
    for _ in range(12):
        await issue(client, hall, "A")
    await counter(client, hall, 1, "open")
    for _ in range(6):  # the last calls make the snapshot long enough to be worth gzipping
        await counter(client, hall, 1, "call-next")
        await counter(client, hall, 1, "no-show")
    path = f"/api/halls/{hall.hall_id}/snapshot"

    async def read(accept: str) -> tuple[bytes, Any]:
        headers = {**board(hall), "Accept-Encoding": accept}
        answer = await client.get(path, headers=headers)
        assert answer.status_code == 200, answer.text
        assert "accept-encoding" in answer.headers["vary"].lower()
        return answer.content, answer.headers

    plain, headers = await read("identity")
    assert plain == await truth(bus, hall) and len(plain) >= memory.GZIP_MINIMUM
    assert "content-encoding" not in headers and int(headers["content-length"]) == len(plain)
    for accept in ("gzip", "br;q=1.0, GZIP;q=0.8", "*", "deflate, gzip", "gzip;q=x") * 2:
        body, headers = await read(accept)
        assert headers["content-encoding"] == "gzip", accept
        assert body == plain  # as the client decoded it
        assert int(headers["content-length"]) < len(plain) // 2
    assert compressed == [len(plain)], "one compression for every reader of one change"
    for accept in ("gzip;q=0, identity", "gzip;q=0.0, *", "*, gzip;q=0", "*;q=0", "br"):
        refused, headers = await read(accept)
        assert refused == plain and "content-encoding" not in headers, accept

    await issue(client, hall, "B")
    changed = await until_snapshot(
        client, hall, lambda s: s["seq"] > msgspec.json.decode(plain)["seq"]
    )
    body, headers = await read("gzip")
    assert headers["content-encoding"] == "gzip"
    assert body == encode_json(changed) == await truth(bus, hall)
    assert len(compressed) == 2
