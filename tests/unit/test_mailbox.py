"""A board feed's mailbox: what the screen is sent next, bounded."""

from __future__ import annotations

import asyncio

from queue_server.realtime.hub import Mailbox


async def test_a_waiting_feed_wakes_when_a_message_comes_and_takes_them_in_order() -> None:
    box = Mailbox(3)
    waiting = asyncio.ensure_future(box.wait())
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing to send yet
    box.put(b"1")
    box.put(b"2")
    await asyncio.wait_for(waiting, 1)
    assert box.take() == [b"1", b"2"]
    assert box.take() == [] and not box.overflowed


async def test_a_message_already_there_needs_no_wait() -> None:
    box = Mailbox(3)
    box.put(b"1")
    await asyncio.wait_for(box.wait(), 1)
    assert box.take() == [b"1"]


async def test_a_full_mailbox_drops_the_oldest_and_asks_for_a_resync() -> None:
    """A screen that fell behind keeps the newest messages and is due a snapshot, which
    then replaces whatever was queued."""
    box = Mailbox(3)
    for message in (b"1", b"2", b"3", b"4"):
        box.put(message)
    assert box.overflowed
    assert box.messages == [b"2", b"3", b"4"]
    box.replace(b"snapshot")
    assert not box.overflowed
    assert box.take() == [b"snapshot"]


async def test_a_wait_given_up_leaves_the_mailbox_usable() -> None:
    """The feed's wait times out now and then (it pings instead): the next wait works."""
    box = Mailbox(3)
    try:
        async with asyncio.timeout(0.01):
            await box.wait()
    except TimeoutError:
        pass
    box.put(b"1")  # no waiter to wake: nothing breaks
    await asyncio.wait_for(box.wait(), 1)
    assert box.take() == [b"1"]
