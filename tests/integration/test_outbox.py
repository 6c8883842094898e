"""The outbox relay publishes exactly the committed events, in order, once — on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from sqlalchemy import func, select

from queue_server.db.tables import HallEventRow
from queue_server.domain.events import HallNoticeChanged
from queue_server.realtime.relay import Relay
from queue_server.service import commands
from queue_server.service.bus import Bus
from queue_server.service.unit_of_work import UnitOfWork
from tests.support import hall_with_matter


@pytest.fixture
async def channels() -> AsyncIterator[ChannelsPlugin]:
    plugin = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    async with plugin:
        yield plugin


async def received(subscriber: Any, count: int) -> list[dict[str, Any]]:
    out = []
    async with asyncio.timeout(5):
        async for payload in subscriber.iter_events():
            out.append(json.loads(payload))
            if len(out) == count:
                return out
    return out


async def stopped(relay: asyncio.Task[None]) -> None:
    """Cancel a running relay and wait until it has ended (rolled back a round it was in)
    while its database is still there."""
    relay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay


async def test_rolled_back_changes_are_never_published(bus: Bus, channels: ChannelsPlugin) -> None:
    hall_id, matter_id = await hall_with_matter(bus)
    relay = Relay(bus.sessions, channels, poll_interval=0.05)
    bus.on_events = lambda events: relay.wake()
    subscriber = await channels.subscribe(f"onedoor:hall:{hall_id}")
    running = asyncio.create_task(relay.run())
    try:

        async def change_then_fail(uow: UnitOfWork) -> None:
            uow.collect([HallNoticeChanged(hall_id, uow.clock.now(), "closing early")])
            await uow.repo.record_events(uow.events, uow.clock.now())
            await uow.session.flush()
            raise RuntimeError("the change failed after writing its event")

        with pytest.raises(RuntimeError):
            await bus.run(change_then_fail)
        await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor(user_id=None)))
        events = await received(subscriber, 1)
        assert [(e["seq"], e["name"]) for e in events] == [(1, "TicketIssued")]
        with pytest.raises(TimeoutError):  # and nothing else comes
            async with asyncio.timeout(0.5):
                async for _ in subscriber.iter_events():
                    break
    finally:
        await stopped(running)

    async def logged(uow: UnitOfWork) -> list[str]:
        rows = await uow.session.execute(select(HallEventRow.name).order_by(HallEventRow.seq))
        return list(rows.scalars())

    assert await bus.run(logged) == ["TicketIssued"]


async def test_a_quiet_relay_sends_at_once_and_a_rush_goes_out_together(
    bus: Bus, channels: ChannelsPlugin
) -> None:
    """A relay that was quiet publishes each commit at once, up to its burst; past it, the
    commits of a rush, each waking the relay, wait for its next round and go out together:
    all of them, in order."""
    hall_id, matter_id = await hall_with_matter(bus)
    subscriber = await channels.subscribe(f"onedoor:hall:{hall_id}")
    issue = commands.IssueTicket(hall_id, matter_id, commands.Actor())

    patient = Relay(bus.sessions, channels, poll_interval=60, gap=60, burst=3)
    bus.on_events = lambda events: patient.wake()
    running = asyncio.create_task(patient.run())
    try:
        for seq in (1, 2, 3):
            await bus.execute(issue)
            # Within 5 s, so not after the 60 s gap: a burst goes out at once.
            assert [e["seq"] for e in await received(subscriber, 1)] == [seq]
        await bus.execute(issue)
        with pytest.raises(TimeoutError):  # the fourth waits for the gap
            async with asyncio.timeout(0.5):
                async for _ in subscriber.iter_events():
                    break
    finally:
        await stopped(running)

    gap = 1.0
    relay = Relay(bus.sessions, channels, poll_interval=60, gap=gap, burst=1)
    bus.on_events = lambda events: relay.wake()
    running = asyncio.create_task(relay.run())
    try:
        started = time.monotonic()
        for _ in range(20):
            await bus.execute(issue)
        took = time.monotonic() - started
        # The fourth, left by the patient relay, goes out first, with the rush.
        events = await received(subscriber, 21)
        assert [e["seq"] for e in events] == list(range(4, 25))
        # One round at once, then one per gap while the commits came, and the last one.
        # Without the gap: 19-20 rounds on PostgreSQL, 4-8 on SQLite.
        assert relay.rounds <= 2 + int(took / gap), (relay.rounds, took)
    finally:
        await stopped(running)


async def test_events_committed_while_no_relay_ran_go_out_later_in_order(
    bus: Bus, channels: ChannelsPlugin
) -> None:
    hall_id, matter_id = await hall_with_matter(bus)
    # As if the process died right after these commits, before publishing anything.
    for _ in range(5):
        await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor()))
    subscriber = await channels.subscribe(f"onedoor:hall:{hall_id}")
    relay = Relay(bus.sessions, channels, poll_interval=0.05)
    assert await relay.relay_once() == 5
    events = await received(subscriber, 5)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["data"]["number"] for e in events} == {"A001", "A002", "A003", "A004", "A005"}
    assert await relay.relay_once() == 0, "published events are not sent again"


@pytest.mark.postgres
async def test_two_relays_publish_each_event_once(pg_url: str) -> None:
    from queue_server.clock import SystemClock
    from queue_server.db.engine import create_engine, session_factory

    engine = create_engine(pg_url)
    try:
        bus = Bus(session_factory(engine), SystemClock())
        hall_id, matter_id = await hall_with_matter(bus)
        for _ in range(300):
            await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor()))
        plugin = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
        async with plugin:
            subscriber = await plugin.subscribe(f"onedoor:hall:{hall_id}")
            relays = [Relay(bus.sessions, plugin, 0.05) for _ in range(2)]

            async def drain(relay: Relay) -> None:
                while await relay.relay_once():
                    pass

            await asyncio.gather(*(drain(r) for r in relays))
            events = await received(subscriber, 300)
            assert sorted(e["seq"] for e in events) == list(range(1, 301))
            assert sum(r.published for r in relays) == 300

        async def unpublished(uow: UnitOfWork) -> int:
            return int(
                await uow.session.scalar(
                    select(func.count()).where(HallEventRow.published_at.is_(None))
                )
                or 0
            )

        assert await bus.run(unpublished) == 0
    finally:
        await engine.dispose()


@pytest.mark.redis
async def test_redis_backend_reads_every_channel_subscribed_at_once(redis_url: str) -> None:
    """Halls whose first boards connect at the same moment all get live events."""
    from queue_server.realtime.channels import RedisPubSubBackend

    plugin = ChannelsPlugin(backend=RedisPubSubBackend(redis_url), arbitrary_channels_allowed=True)
    async with plugin:
        names = [f"onedoor:test-concurrent:{i}" for i in range(6)]
        subscribers = await asyncio.gather(*(plugin.subscribe(name) for name in names))
        await asyncio.sleep(0.2)
        for name in names:
            await plugin.wait_published(name.encode(), name)
        for name, subscriber in zip(names, subscribers, strict=True):
            async with asyncio.timeout(3):
                async for payload in subscriber.iter_events():
                    assert payload == name.encode()
                    break


@pytest.mark.redis
async def test_through_redis_a_relay_publishes_each_batch_in_one_go_in_order(
    bus: Bus, redis_url: str
) -> None:
    """With Redis, the relay sends a batch of events through ``publish_batch`` (one
    pipeline): every committed event of two halls reaches each hall's subscriber, in its
    hall's order, once; and a Redis that is away leaves them unpublished for the next
    pass."""
    from queue_server.realtime.channels import REDIS_ERRORS, RedisPubSubBackend

    first, first_matter = await hall_with_matter(bus)
    second, second_matter = await hall_with_matter(bus)
    for n in range(60):
        hall, matter = (first, first_matter) if n % 3 else (second, second_matter)
        await bus.execute(commands.IssueTicket(hall, matter, commands.Actor()))
    backend = RedisPubSubBackend(redis_url)
    plugin = ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True)
    async with plugin:
        nowhere = RedisPubSubBackend("redis://127.0.0.1:1")  # nothing listens there
        await nowhere.on_startup()
        try:
            with pytest.raises(REDIS_ERRORS):
                await Relay(bus.sessions, plugin, 0.05, nowhere.publish_batch).relay_once()
        finally:
            await nowhere.on_shutdown()
        channels = [f"onedoor:hall:{h}" for h in (first, second)]
        subscribers = [await plugin.subscribe(channel) for channel in channels]
        async with aioredis.from_url(redis_url) as admin, asyncio.timeout(5):
            while [n for _, n in await admin.pubsub_numsub(*channels)] != [1, 1]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # until Redis has both subscriptions
        relay = Relay(bus.sessions, plugin, 0.05, backend.publish_batch)
        assert await relay.relay_once() == 60
        heard = [await received(s, n) for s, n in zip(subscribers, (40, 20), strict=True)]
        assert [e["seq"] for e in heard[0]] == list(range(1, 41))
        assert [e["seq"] for e in heard[1]] == list(range(1, 21))
        assert {e["hall_id"] for e in heard[0]} == {first}
        assert {e["hall_id"] for e in heard[1]} == {second}
        assert await relay.relay_once() == 0, "published events are not sent again"


async def test_concurrent_commits_of_several_events_number_them_gaplessly_in_order(
    bus: Bus,
) -> None:
    """Each commit's events get consecutive numbers in the order recorded, whatever the
    commits race (PostgreSQL numbers and writes them in one statement)."""
    hall_id, _ = await hall_with_matter(bus)
    other_hall, _ = await hall_with_matter(bus)

    async def commit(uow: UnitOfWork, writer: int) -> None:
        now = uow.clock.now()
        uow.collect([HallNoticeChanged(hall_id, now, f"{writer}-{i} 通知") for i in range(3)])
        uow.collect([HallNoticeChanged(other_hall, now, f"{writer}-x")])
        await uow.commit()

    await asyncio.gather(*(bus.run(commit, writer) for writer in range(20)))

    async def log(uow: UnitOfWork) -> list[tuple[int, int, dict[str, Any]]]:
        rows = await uow.session.execute(
            select(HallEventRow.hall_id, HallEventRow.seq, HallEventRow.payload).order_by(
                HallEventRow.hall_id, HallEventRow.seq
            )
        )
        return [(h, s, p) for h, s, p in rows]

    stored = await bus.run(log)
    mine = [(seq, payload["notice"]) for h, seq, payload in stored if h == hall_id]
    assert [seq for seq, _ in mine] == list(range(1, 61))
    # Each writer's three events sit together, in the order it recorded them.
    for start in range(0, 60, 3):
        writer = mine[start][1].split("-")[0]
        assert [n for _, n in mine[start : start + 3]] == [f"{writer}-{i} 通知" for i in range(3)]
    assert sorted(n for _, n in mine) == sorted(
        f"{w}-{i} 通知" for w in range(20) for i in range(3)
    )
    theirs = [seq for h, seq, _ in stored if h == other_hall]
    assert theirs == list(range(1, 21))


@pytest.mark.postgres
async def test_a_change_written_but_not_committed_holds_up_no_other_change_of_its_hall(
    pg_url: str, channels: ChannelsPlugin
) -> None:
    """On PostgreSQL a clerk's events are numbered as the transaction commits: one whose
    events are written but not yet committed (its server busy elsewhere) does not hold up
    a kiosk's ticket in the same hall. The numbers follow commit order, and the relay
    publishes them in that order, though the clerk's event was written first."""
    from queue_server.clock import SystemClock
    from queue_server.db.engine import create_engine, session_factory

    engine = create_engine(pg_url)
    try:
        bus = Bus(session_factory(engine), SystemClock())
        hall_id, matter_id = await hall_with_matter(bus)
        written, issued = asyncio.Event(), asyncio.Event()

        async def written_then_slow(uow: UnitOfWork) -> None:
            notice = HallNoticeChanged(hall_id, uow.clock.now(), "窗口 3 暂停 / counter 3 paused")
            await uow.repo.record_events([notice], uow.clock.now())
            written.set()
            await issued.wait()
            await uow.commit()

        slow = asyncio.create_task(bus.run(written_then_slow))
        try:
            await written.wait()
            # Before, this waited for the slow commit's lock on the hall row: for ever here.
            async with asyncio.timeout(10):
                await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor()))
        finally:
            issued.set()
            await slow

        async def log(uow: UnitOfWork) -> list[tuple[int, str]]:
            rows = await uow.session.execute(
                select(HallEventRow.seq, HallEventRow.name).order_by(HallEventRow.id)
            )
            return [(seq, name) for seq, name in rows]

        # In the order written (by id), the numbers are those of the commits.
        assert await bus.run(log) == [(2, "HallNoticeChanged"), (1, "TicketIssued")]
        subscriber = await channels.subscribe(f"onedoor:hall:{hall_id}")
        assert await Relay(bus.sessions, channels, poll_interval=0.05).relay_once() == 2
        events = await received(subscriber, 2)
        assert [(e["seq"], e["name"]) for e in events] == [
            (1, "TicketIssued"),
            (2, "HallNoticeChanged"),
        ]
    finally:
        await engine.dispose()


async def test_a_reader_never_sees_a_hole_in_the_hall_log_while_changes_race(bus: Bus) -> None:
    """Tickets issued (numbered in their statement) and clerks' changes (numbered as they
    commit, on PostgreSQL) race in one hall while a reader reads the log: whatever it
    reads is the events 1 to n, with no number missing and none still a placeholder. A
    feed that has event n has everything before it (the hub waits for a gap to close)."""
    hall_id, matter_id = await hall_with_matter(bus)
    writing = True

    async def noticed(uow: UnitOfWork, writer: int) -> None:
        now = uow.clock.now()
        uow.collect([HallNoticeChanged(hall_id, now, f"{writer}-{i}") for i in range(2)])
        await uow.commit()

    async def write(writer: int) -> None:
        for _ in range(5):
            if writer % 2:
                await bus.execute(commands.IssueTicket(hall_id, matter_id, commands.Actor()))
            else:
                await bus.run(noticed, writer)

    async def seen(uow: UnitOfWork) -> tuple[int, int | None, int | None]:
        row = (
            await uow.session.execute(
                select(func.count(), func.min(HallEventRow.seq), func.max(HallEventRow.seq)).where(
                    HallEventRow.hall_id == hall_id
                )
            )
        ).one()
        return int(row[0]), row[1], row[2]

    reads: list[tuple[int, int | None, int | None]] = []

    async def read() -> None:
        while writing:
            reads.append(await bus.read(seen))

    reader = asyncio.create_task(read())
    try:
        await asyncio.gather(*(write(w) for w in range(16)))
    finally:
        writing = False
        await reader
    reads.append(await bus.read(seen))
    assert len(reads) > 5, "the reader read while the writers wrote"
    for count, low, high in reads:
        assert count == 0 or (low, high) == (1, count), (count, low, high)
    # 8 writers issued 5 tickets (one event each, no printer); 8 wrote 5 × 2 notices.
    assert reads[-1] == (120, 1, 120)
