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
