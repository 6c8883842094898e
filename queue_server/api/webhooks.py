"""A hall's webhooks: addresses sent its events, and their delivery log with replay."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from queue_server.service import webhooks
from queue_server.service.bus import Bus
from queue_server.service.webhooks import DeliveryOut, WebhookOut

from .auth import MANAGERS, roles
from .schemas import WebhookIn, WebhookPatch, given


class WebhookController(Controller):
    path = "/api/halls/{hall_id:int}/webhooks"
    tags = ["webhooks"]
    opt = roles(*MANAGERS)

    @get("/")
    async def list_webhooks(
        self, hall_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> list[WebhookOut]:
        return await bus.run(webhooks.list_webhooks, hall_id)

    @post("/")
    async def create_webhook(
        self, hall_id: FromPath[int], data: JSONBody[WebhookIn], bus: NamedDependency[Bus]
    ) -> WebhookOut:
        """Send the hall's events (``events``: names, or ``["*"]``) to ``url`` from now on,
        each signed with the answer's ``secret`` (docs/outcomes.md, Webhooks)."""
        return await bus.run(webhooks.create_webhook, hall_id, data.url, list(data.events))

    @patch("/{webhook_id:int}")
    async def update_webhook(
        self,
        hall_id: FromPath[int],
        webhook_id: FromPath[int],
        data: JSONBody[WebhookPatch],
        bus: NamedDependency[Bus],
    ) -> WebhookOut:
        return await bus.run(webhooks.update_webhook, hall_id, webhook_id, given(data))

    @delete("/{webhook_id:int}")
    async def delete_webhook(
        self, hall_id: FromPath[int], webhook_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> None:
        await bus.run(webhooks.delete_webhook, hall_id, webhook_id)

    @get("/{webhook_id:int}/deliveries")
    async def deliveries(
        self,
        hall_id: FromPath[int],
        webhook_id: FromPath[int],
        bus: NamedDependency[Bus],
        only: Annotated[
            Literal["pending", "delivered", "failed"] | None,
            QueryParameter(name="state", description="only deliveries in this state"),
        ] = None,
    ) -> list[DeliveryOut]:
        """The delivery log, newest first: attempts, the receiver's last answer or error."""
        return await bus.run(webhooks.list_deliveries, hall_id, webhook_id, only)

    @post("/{webhook_id:int}/deliveries/{delivery_id:int}/replay", status_code=200)
    async def replay(
        self,
        hall_id: FromPath[int],
        webhook_id: FromPath[int],
        delivery_id: FromPath[int],
        bus: NamedDependency[Bus],
    ) -> DeliveryOut:
        """Send a delivery again (within seconds)."""
        return await bus.run(webhooks.replay, hall_id, webhook_id, delivery_id)
