"""The notification port: how a booking reminder reaches a visitor.

Adapters: ``LogNotifier`` (the default: the reminder is written to the log), and
``WebhookNotifier`` (POSTs the reminder as JSON to a URL the deployer runs, e.g. a bridge
to a message service). ``SmsNotifier`` is the shape an SMS gateway takes: a deployer
subclasses it and fills in ``send_sms`` for their provider; OneDoor ships none, as every
provider's API and contract differ.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

import httpx

from .domain.contact import mask_phone

log = logging.getLogger("onedoor.notify")


@dataclass(frozen=True)
class Reminder:
    """One booking's reminder, in the words a visitor reads (zh and en)."""

    code: str
    phone: str
    name: str
    hall_zh: str
    hall_en: str
    matter_zh: str
    matter_en: str
    local_date: str
    local_time: str
    manage_url: str
    cancelled_because: str | None = None
    """Set when the hall cancelled the booking (a day closed, hours changed): the message
    says so and why, and ``manage_url`` leads to booking again."""

    @property
    def kind(self) -> str:
        return "booking_cancelled_by_hall" if self.cancelled_because else "booking_reminder"

    @property
    def text_zh(self) -> str:
        if self.cancelled_because:
            return (
                f"{self.name}您好：很抱歉，您在{self.hall_zh}预约的“{self.matter_zh}”"
                f"（{self.local_date} {self.local_time}，预约码 {self.code}）已被大厅取消，"
                f"原因：{self.cancelled_because}。请重新预约：{self.manage_url}"
            )
        return (
            f"{self.name}您好：您预约的{self.hall_zh}“{self.matter_zh}”在 {self.local_date} "
            f"{self.local_time}，预约码 {self.code}。到厅后请在取号机签到。"
        )

    @property
    def text_en(self) -> str:
        if self.cancelled_because:
            return (
                f"Dear {self.name}, we are sorry: your booking for {self.matter_en} at "
                f"{self.hall_en} on {self.local_date} at {self.local_time} (code {self.code}) "
                f"was cancelled by the hall: {self.cancelled_because}. Please book again: "
                f"{self.manage_url}"
            )
        return (
            f"Dear {self.name}, your booking for {self.matter_en} at {self.hall_en} is on "
            f"{self.local_date} at {self.local_time}, code {self.code}. Check in at the kiosk "
            "when you arrive."
        )


class Notifier(Protocol):
    async def send(self, reminder: Reminder) -> None:
        """Deliver ``reminder`` or raise; a failed one is tried again on the next run."""
        ...


class LogNotifier:
    """Writes the reminder to the log, the phone number masked (138****8000): logs are
    read and kept by more people, and for longer, than a booking."""

    async def send(self, reminder: Reminder) -> None:
        log.info("reminder for booking %s to %s: %s", reminder.code,
                 mask_phone(reminder.phone), reminder.text_en)  # fmt: skip


class WebhookNotifier:
    """POSTs ``{"type": "booking_reminder", …, "text_zh", "text_en"}`` to ``url``."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    async def send(self, reminder: Reminder) -> None:
        body = {
            "type": reminder.kind,
            **asdict(reminder),
            "text_zh": reminder.text_zh,
            "text_en": reminder.text_en,
        }
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            answer = await client.post(self.url, json=body)
        answer.raise_for_status()


class SmsNotifier(abc.ABC):
    """Base for an SMS gateway adapter: subclass it and implement ``send_sms``."""

    async def send(self, reminder: Reminder) -> None:
        await self.send_sms(reminder.phone, f"{reminder.text_zh}\n{reminder.text_en}")

    @abc.abstractmethod
    async def send_sms(self, phone: str, text: str) -> None:
        """Send ``text`` to the mainland mobile number ``phone`` (11 digits) or raise."""


def make_notifier(kind: str, webhook_url: str) -> Notifier:
    """The adapter the settings name: ``log`` or ``webhook`` (which needs its URL)."""
    if kind == "webhook":
        if not webhook_url:
            raise ValueError("ONEDOOR_NOTIFY=webhook needs ONEDOOR_NOTIFY_WEBHOOK_URL")
        return WebhookNotifier(webhook_url)
    if kind == "log":
        return LogNotifier()
    raise ValueError(f"ONEDOOR_NOTIFY={kind!r}: use log or webhook")
