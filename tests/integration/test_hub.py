"""The hub puts slightly reordered events back in order, and resyncs on a real gap."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from queue_server.realtime.hub import REORDER_WAIT, HallHub
from tests.unit.test_board import SNAPSHOT


async def test_reordered_events_are_applied_in_order_and_gaps_resync() -> None:
    loads: list[int] = []

    async def load(hall_id: int) -> dict[str, Any]:
        loads.append(hall_id)
        return SNAPSHOT

    async with ChannelsPlugin(
        backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True
    ) as plugin:
        hub = HallHub(1, plugin, load)
        await hub.start()
        assert loads == [1] and hub.seq == 10
        issued = {"ticket_id": 99, "number": "A009", "service_id": 1}
        await hub.receive(12, "TicketIssued", issued)
        assert hub.seq == 10, "12 waits for 11"
        await hub.receive(11, "TicketIssued", issued)
        assert hub.seq == 12
        assert [m.waiting for m in hub.board.matters] == [4, 0]  # type: ignore[union-attr]
        await asyncio.sleep(REORDER_WAIT + 0.1)
        assert loads == [1], "no snapshot was needed"

        await hub.receive(14, "TicketIssued", issued)  # 13 never comes
        await asyncio.sleep(REORDER_WAIT + 0.2)
        assert loads == [1, 1], "the gap brought a snapshot"
        await hub.stop()


class Recorder:
    """A listener that keeps what it was sent: ("event", seq) and ("snapshot", seq)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int]] = []

    def event(self, seq: int, name: str, data: Any, message: bytes) -> None:
        self.got.append(("event", seq))

    def snapshot(self, board: Any, message: bytes) -> None:
        self.got.append(("snapshot", board.seq))


async def test_events_nobody_heard_are_not_replayed_a_resuming_listener_gets_a_snapshot() -> None:
    async def load(hall_id: int) -> dict[str, Any]:
        return SNAPSHOT

    issued = {"ticket_id": 99, "number": "A009", "service_id": 1}
    async with ChannelsPlugin(
        backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True
    ) as plugin:
        hub = HallHub(1, plugin, load)
        await hub.start()
        keeper = Recorder()
        hub.attach(keeper, since=10)
        await hub.receive(11, "TicketIssued", issued)
        await hub.receive(12, "TicketIssued", issued)
        resumed = Recorder()
        hub.attach(resumed, since=11)
        assert resumed.got == [("event", 12)], "heard while a listener was there: replayed"
        hub.detach(keeper)
        hub.detach(resumed)

        await hub.receive(13, "TicketIssued", issued)  # nobody listens
        late = Recorder()
        hub.attach(late, since=12)
        assert late.got == [("snapshot", 13)]
        await hub.receive(14, "TicketIssued", issued)
        assert late.got[-1] == ("event", 14)
        again = Recorder()
        hub.attach(again, since=13)
        assert again.got == [("event", 14)]
        await hub.stop()
