"""The turn at sending a hall's issuing statement (``service/issue_batches.py``), without a
database: it passes over issues whose requests hung up, and ends when nobody waits."""

from __future__ import annotations

import asyncio
from typing import cast

from queue_server.db.repository import NewVisit
from queue_server.service import issue_batches


def test_the_turn_passes_over_issues_that_hung_up() -> None:
    """Told to send and gone before it could: the next waiting issue sends instead."""

    async def scene() -> None:
        hall = issue_batches._Hall(out=True)
        nobody = cast(NewVisit, None)  # the turn never reads the visit
        first, second, third = (issue_batches._Issue(nobody, "") for _ in range(3))
        hall.waiting.extend([first, second, third])
        second.told.cancel()  # gone, not yet out of the queue
        issue_batches._hand_on(hall)
        assert first.told.result() == issue_batches._LEAD
        issue_batches._gone(hall, first)
        assert list(hall.waiting) == [third]
        assert third.told.result() == issue_batches._LEAD and hall.out
        hall.waiting.popleft()
        issue_batches._hand_on(hall)
        assert not hall.out

    asyncio.run(scene())
