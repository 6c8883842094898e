"""Webhooks: a hall's events sent to a manager's address, signed, retried, logged.

Every event the hall logs (tickets issued, called, finished with their outcome; bookings
made or cancelled; desk cases opened, answered, closed; …) can go to one or more URLs. A
request never waits for them: the scheduler's leader runs ``deliver`` every few seconds,
which turns the hall's new log entries into deliveries (one per webhook and event, in the
log's order, each at most once: the webhook's cursor and a unique key) and posts those due.

The body is JSON ``{"delivery", "hall_id", "seq", "event", "at", "data"}``; its bytes are
the same at every attempt. ``X-OneDoor-Signature: t=<unix time>,v1=<hex>`` where hex is
HMAC-SHA256 under the webhook's secret of ``"<t>." + body`` (``verify`` checks one, for
receivers written in Python; the docs show the same in a few lines of any language). A
2xx answer delivers it; anything else (or no whole answer within 5 s) is retried after 10 s,
30 s, 1, 2, 5, 10 and 30 minutes, then the delivery is failed. Failed ones can be
replayed; the delivery log keeps each one's attempts, last status and error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from queue_server.db.tables import HallEventRow, HallRow, WebhookDeliveryRow, WebhookRow

from .errors import Invalid, NotFound
from .unit_of_work import UnitOfWork

log = logging.getLogger("onedoor.webhooks")

SIGNATURE_HEADER = "X-OneDoor-Signature"
RETRY_AFTER = (10, 30, 60, 120, 300, 600, 1800)
"""Seconds before each retry; after the last, the delivery is failed."""
MAX_ATTEMPTS = len(RETRY_AFTER) + 1
TIMEOUT_SECONDS = 5.0
COLLECT_AT_MOST = 500
SEND_AT_MOST = 50
SENDING_AT_ONCE = 8
LEASE_SECONDS = 60
EVENT_NAME = re.compile(r"^[A-Z][A-Za-z]{2,63}$")


@dataclass(frozen=True)
class WebhookOut:
    id: int
    hall_id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime
    secret: str
    """The signing key: the receiver checks each request with it."""


@dataclass(frozen=True)
class DeliveryOut:
    id: int
    webhook_id: int
    event_seq: int
    event_name: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` and is at most ``tolerance``
    seconds old (a replayed capture is refused)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(
        sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}"
    )


def body_of(delivery: WebhookDeliveryRow) -> bytes:
    document = {
        "delivery": delivery.id, "hall_id": delivery.hall_id, "seq": delivery.event_seq,
        "event": delivery.event_name, "at": delivery.payload.get("at"), "data": delivery.payload,
    }  # fmt: skip
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _check(url: str | None, events: list[str] | None) -> None:
    if url is not None:
        bad_url = Invalid("url", "an http:// or https:// address, e.g. https://example.org/onedoor")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is no number raises here
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL):
            raise bad_url from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_url
    if events is not None:
        if not events:
            raise Invalid("events", 'name the events to send, or ["*"] for all of them')
        wrong = [e for e in events if e != "*" and not EVENT_NAME.match(e)]
        if wrong:
            raise Invalid("events", f"not event names: {', '.join(wrong)} (e.g. TicketCalled)")


def _out(row: WebhookRow) -> WebhookOut:
    return WebhookOut(
        row.id, row.hall_id, row.url, list(row.events), row.active, row.created_at, row.secret
    )


async def create_webhook(uow: UnitOfWork, hall_id: int, url: str, events: list[str]) -> WebhookOut:
    """A new webhook; it is sent the events logged from now on."""
    _check(url, events)
    hall = await uow.session.get(HallRow, hall_id)
    if hall is None:
        raise NotFound(f"no hall with id {hall_id}")
    row = WebhookRow(
        hall_id=hall_id, url=url, secret=secrets.token_hex(32), events=events, active=True,
        created_at=uow.clock.now(), cursor=hall.event_seq,
    )  # fmt: skip
    uow.session.add(row)
    await uow.commit()
    return _out(row)


async def _webhook(uow: UnitOfWork, hall_id: int, webhook_id: int) -> WebhookRow:
    row = await uow.session.get(WebhookRow, webhook_id)
    if row is None or row.hall_id != hall_id:
        raise NotFound(f"hall {hall_id} has no webhook with id {webhook_id}")
    return row


async def update_webhook(
    uow: UnitOfWork, hall_id: int, webhook_id: int, fields: dict[str, Any]
) -> WebhookOut:
    row = await _webhook(uow, hall_id, webhook_id)
    _check(fields.get("url"), fields.get("events"))
    for key in ("url", "events", "active"):
        if key in fields:
            setattr(row, key, fields[key])
    await uow.commit()
    return _out(row)


async def delete_webhook(uow: UnitOfWork, hall_id: int, webhook_id: int) -> None:
    await uow.session.delete(await _webhook(uow, hall_id, webhook_id))
    await uow.commit()


async def list_webhooks(uow: UnitOfWork, hall_id: int) -> list[WebhookOut]:
    rows = await uow.session.execute(
        select(WebhookRow).where(WebhookRow.hall_id == hall_id).order_by(WebhookRow.id)
    )
    return [_out(r) for r in rows.scalars()]


def _delivery_out(d: WebhookDeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        d.id, d.webhook_id, d.event_seq, d.event_name, d.state, d.attempts, d.next_attempt_at,
        d.last_status, d.last_error, d.created_at, d.delivered_at,
    )  # fmt: skip


async def list_deliveries(
    uow: UnitOfWork, hall_id: int, webhook_id: int, state: str | None = None, limit: int = 100
) -> list[DeliveryOut]:
    """The webhook's delivery log, newest first."""
    await _webhook(uow, hall_id, webhook_id)
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id)
    if state is not None:
        stmt = stmt.where(WebhookDeliveryRow.state == state)
    rows = await uow.session.execute(stmt.order_by(WebhookDeliveryRow.id.desc()).limit(limit))
    return [_delivery_out(d) for d in rows.scalars()]


async def replay(uow: UnitOfWork, hall_id: int, webhook_id: int, delivery_id: int) -> DeliveryOut:
    """Send a delivery again at the next run (a failed one, or one delivered, on request)."""
    await _webhook(uow, hall_id, webhook_id)
    row = await uow.session.get(WebhookDeliveryRow, delivery_id)
    if row is None or row.webhook_id != webhook_id:
        raise NotFound(f"webhook {webhook_id} has no delivery with id {delivery_id}")
    row.state = "pending"
    row.next_attempt_at = uow.clock.now()
    await uow.commit()
    return _delivery_out(row)


async def collect(uow: UnitOfWork) -> int:
    """Turn the hall events each active webhook has not looked at into its deliveries."""
    hooks = (
        await uow.session.execute(
            select(WebhookRow).where(WebhookRow.active.is_(True)).with_for_update(skip_locked=True)
        )
    ).scalars()
    insert = pg_insert if uow.repo.dialect == "postgresql" else sqlite_insert
    now = uow.clock.now()
    made = 0
    for hook in list(hooks):
        events = (
            await uow.session.execute(
                select(HallEventRow.seq, HallEventRow.name, HallEventRow.payload)
                .where(HallEventRow.hall_id == hook.hall_id, HallEventRow.seq > hook.cursor)
                .order_by(HallEventRow.seq)
                .limit(COLLECT_AT_MOST)
            )
        ).all()
        if not events:
            continue
        wanted = set(hook.events)
        rows = [
            {
                "webhook_id": hook.id,
                "hall_id": hook.hall_id,
                "event_seq": seq,
                "event_name": name,
                "payload": payload,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for seq, name, payload in events
            if "*" in wanted or name in wanted
        ]
        if rows:
            await uow.session.execute(
                insert(WebhookDeliveryRow).values(rows).on_conflict_do_nothing()
            )
            made += len(rows)
        hook.cursor = events[-1][0]
    await uow.commit()
    return made


@dataclass(frozen=True)
class Due:
    delivery_id: int
    url: str
    secret: str
    event: str
    body: bytes


async def due(uow: UnitOfWork, limit: int = SEND_AT_MOST) -> list[Due]:
    """Claim the deliveries due now: each is leased for ``LEASE_SECONDS`` (its next attempt
    moved past the post), so two runs at once never post one twice."""
    now = uow.clock.now()
    found = (
        await uow.session.execute(
            select(WebhookDeliveryRow, WebhookRow.url, WebhookRow.secret)
            .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
            .where(
                WebhookRow.active.is_(True),
                WebhookDeliveryRow.state == "pending",
                WebhookDeliveryRow.next_attempt_at <= now,
            )
            .order_by(WebhookDeliveryRow.id)
            .limit(limit)
            .with_for_update(of=WebhookDeliveryRow, skip_locked=True)
        )
    ).all()
    for delivery, _, _ in found:
        delivery.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
    items = [Due(d.id, url, secret, d.event_name, body_of(d)) for d, url, secret in found]
    await uow.commit()
    return items


async def record(uow: UnitOfWork, delivery_id: int, status: int | None, error: str | None) -> str:
    """What one attempt gave; the delivery's state after it."""
    row = await uow.session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
    if row is None:  # its webhook was removed meanwhile
        return "gone"
    now = uow.clock.now()
    row.attempts += 1
    row.last_status, row.last_error = status, (error or None) and error[:500]
    if status is not None and 200 <= status < 300:
        row.state, row.delivered_at, row.next_attempt_at = "delivered", now, None
    elif row.attempts >= MAX_ATTEMPTS:
        row.state, row.next_attempt_at = "failed", None
    else:
        row.next_attempt_at = now + timedelta(seconds=RETRY_AFTER[row.attempts - 1])
    state = row.state
    await uow.commit()
    return state


async def _post(client: httpx.AsyncClient, item: Due, now: float) -> tuple[int | None, str | None]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "OneDoor-Webhooks/1",
        "X-OneDoor-Event": item.event,
        "X-OneDoor-Delivery": str(item.delivery_id),
        SIGNATURE_HEADER: sign(item.secret, int(now), item.body),
    }
    try:
        # The whole exchange within the timeout: a receiver answering a byte at a time
        # would otherwise hold every hall's webhooks.
        async with asyncio.timeout(TIMEOUT_SECONDS):
            answer = await client.post(item.url, content=item.body, headers=headers)
    except TimeoutError:
        return None, f"no answer within {TIMEOUT_SECONDS:.0f} s"
    except Exception as exc:  # any failure of this one post is its delivery's, and logged
        return None, f"{type(exc).__name__}: {exc}"[:500]
    error = None if answer.is_success else f"answered {answer.status_code}"
    return answer.status_code, error


async def deliver(bus: Any, client: httpx.AsyncClient | None = None) -> dict[str, int]:
    """One run of the job: collect new events, post what is due; counts by outcome."""
    collected = await bus.run(collect)
    items = await bus.run(due)
    counts = {"collected": collected, "delivered": 0, "retrying": 0, "failed": 0}
    if not items:
        return counts
    own = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
    gate = asyncio.Semaphore(SENDING_AT_ONCE)

    async def one(item: Due) -> None:
        async with gate:
            status, error = await _post(http, item, time.time())
        state = await bus.run(record, item.delivery_id, status, error)
        key = {"delivered": "delivered", "failed": "failed"}.get(state, "retrying")
        counts[key] += 1
        if state == "failed":
            log.warning("webhook delivery %d failed for good: %s", item.delivery_id, error)

    try:
        for failed in await asyncio.gather(*(one(i) for i in items), return_exceptions=True):
            if isinstance(failed, BaseException):
                log.error("webhook delivery not recorded", exc_info=failed)
    finally:
        if own:
            await http.aclose()
    return counts
