"""Webhooks against a real local receiver, on both databases: the hall's events arrive
signed, in order, only those asked for; a receiver that fails is retried with backoff
(the same bytes each time) until it answers 2xx or the delivery is failed; the log shows
each delivery's attempts and a failed one can be replayed; two runs at once post each
delivery once; a request never waits for any of it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from queue_server.clock import FixedClock
from queue_server.service import webhooks
from queue_server.service.bus import Bus
from tests.e2e.test_desk_flow import at_counter, issue, serve
from tests.support import DemoSetup, build_hall, call_as


class Receiver:
    """A manager's endpoint: records each request and answers the next scripted status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.default = 200
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                receiver.arrived.set()
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/onedoor"

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    thread = threading.Thread(target=made.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()


async def hook(
    client: AsyncTestClient[Any], hall: DemoSetup, url: str, events: list[str]
) -> dict[str, Any]:
    made = await call_as(
        client, hall.manager, "POST", f"/api/halls/{hall.hall_id}/webhooks",
        json={"url": url, "events": events},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def log_of(client: AsyncTestClient[Any], hall: DemoSetup, hook_id: int) -> list[dict]:
    answer = await call_as(
        client, hall.manager, "GET", f"/api/halls/{hall.hall_id}/webhooks/{hook_id}/deliveries"
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_signed_events_retried_with_backoff_until_delivered(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock, receiver: Receiver
) -> None:
    hall = await build_hall(client, bus)
    base = f"/api/halls/{hall.hall_id}/webhooks"
    for body, field in [
        ({"url": "ftp://example.org/x"}, "url"),
        ({"url": "https://example.org/x", "events": ["ticket issued"]}, "events"),
    ]:
        refused = await call_as(client, hall.manager, "POST", base, json=body)
        assert refused.status_code == 400 and refused.json()["extra"]["field"] == field
    assert (await call_as(client, hall.clerks[0], "GET", base)).status_code == 403

    made = await hook(client, hall, receiver.url, ["TicketIssued", "ServiceFinished"])
    secret = made["secret"]
    assert len(secret) == 64

    receiver.statuses = [500, 503]
    ticket = await issue(client, hall, "A")  # answered at once: nothing was posted yet
    assert receiver.requests == []
    assert await webhooks.deliver(bus) == {
        "collected": 1, "delivered": 0, "retrying": 1, "failed": 0,
    }  # fmt: skip
    [entry] = await log_of(client, hall, made["id"])
    assert (entry["state"], entry["attempts"], entry["last_status"]) == ("pending", 1, 500)
    assert (await webhooks.deliver(bus))["retrying"] == 0  # not due again for 10 s
    assert len(receiver.requests) == 1
    clock.advance(seconds=10)
    await webhooks.deliver(bus)  # 503: the next try in 30 s
    clock.advance(seconds=29)
    await webhooks.deliver(bus)
    assert len(receiver.requests) == 2
    clock.advance(seconds=1)
    assert (await webhooks.deliver(bus))["delivered"] == 1
    [entry] = await log_of(client, hall, made["id"])
    assert (entry["state"], entry["attempts"], entry["last_status"]) == ("delivered", 3, 200)

    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same bytes at every attempt
    headers, body = receiver.requests[-1]
    assert webhooks.verify(secret, headers[webhooks.SIGNATURE_HEADER], body, time.time())
    assert not webhooks.verify("0" * 64, headers[webhooks.SIGNATURE_HEADER], body, time.time())
    assert not webhooks.verify(secret, headers[webhooks.SIGNATURE_HEADER], body + b" ", time.time())
    sent = json.loads(body)
    assert (sent["event"], sent["hall_id"], sent["data"]["number"]) == (
        "TicketIssued", hall.hall_id, "A001",
    )  # fmt: skip
    assert sent["data"]["ticket_id"] == ticket["id"]
    assert headers["X-OneDoor-Event"] == "TicketIssued"

    # Only the events asked for: the counter opening, the call and the start are not sent.
    await at_counter(client, hall, 0, 1, "open")
    await serve(client, hall, 0, 1)
    await at_counter(client, hall, 0, 1, "finish", json={"outcome": "visitor_left"})
    receiver.requests.clear()
    await webhooks.deliver(bus)
    assert receiver.events() == ["ServiceFinished"]
    assert json.loads(receiver.requests[0][1])["data"]["outcome"] == "visitor_left"


async def test_a_delivery_fails_after_its_last_retry_and_can_be_replayed(
    client: AsyncTestClient[Any], bus: Bus, clock: FixedClock, receiver: Receiver
) -> None:
    hall = await build_hall(client, bus)
    made = await hook(client, hall, receiver.url, ["*"])
    receiver.default = 500
    await issue(client, hall, "B")
    for _ in range(webhooks.MAX_ATTEMPTS):
        await webhooks.deliver(bus)
        clock.advance(seconds=1800)
    [entry] = await log_of(client, hall, made["id"])
    assert (entry["state"], entry["attempts"]) == ("failed", webhooks.MAX_ATTEMPTS)
    assert entry["last_error"] == "answered 500"
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    await webhooks.deliver(bus)
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS  # failed stays failed

    receiver.default = 204
    url = f"/api/halls/{hall.hall_id}/webhooks/{made['id']}/deliveries/{entry['id']}/replay"
    replayed = await call_as(client, hall.manager, "POST", url)
    assert replayed.status_code == 200 and replayed.json()["state"] == "pending"
    assert (await webhooks.deliver(bus))["delivered"] == 1
    [entry] = await log_of(client, hall, made["id"])
    assert (entry["state"], entry["last_status"]) == ("delivered", 204)

    # A paused webhook is sent nothing; a receiver that is gone is an error in the log.
    paused = await call_as(
        client, hall.manager, "PATCH", f"/api/halls/{hall.hall_id}/webhooks/{made['id']}",
        json={"active": False},
    )  # fmt: skip
    assert paused.status_code == 200 and paused.json()["active"] is False
    await issue(client, hall, "B")
    assert (await webhooks.deliver(bus))["collected"] == 0
    gone = await hook(client, hall, "http://127.0.0.1:9/nobody-listens", ["*"])
    await issue(client, hall, "B")
    await webhooks.deliver(bus)
    [entry] = await log_of(client, hall, gone["id"])
    assert entry["state"] == "pending" and entry["last_status"] is None
    assert "ConnectError" in entry["last_error"]


async def test_two_runs_at_once_post_each_delivery_once(
    client: AsyncTestClient[Any], bus: Bus, receiver: Receiver
) -> None:
    hall = await build_hall(client, bus)
    made = await hook(client, hall, receiver.url, ["TicketIssued"])
    for _ in range(12):
        await issue(client, hall, "A")
    await asyncio.gather(*(webhooks.deliver(bus) for _ in range(4)))
    await webhooks.deliver(bus)
    seqs = [json.loads(body)["seq"] for _, body in receiver.requests]
    assert len(seqs) == 12 and len(set(seqs)) == 12
    assert all(e["state"] == "delivered" for e in await log_of(client, hall, made["id"]))
