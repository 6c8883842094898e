"""A reminder written to the log shows the booking's code and the text, never the whole
mobile number."""

from __future__ import annotations

import logging

import pytest

from booking.notify import LogNotifier, Reminder


async def test_the_log_notifier_masks_the_phone(caplog: pytest.LogCaptureFixture) -> None:
    reminder = Reminder(
        code="K7Q2M9", phone="13800138000", name="王小明", hall_zh="示范大厅",
        hall_en="Demo hall", matter_zh="社会保险", matter_en="Social insurance",
        local_date="2026-12-05", local_time="09:30", manage_url="https://hall.example/b/K7Q2M9",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="onedoor.notify"):
        await LogNotifier().send(reminder)
    text = caplog.text
    assert "K7Q2M9" in text and "138****8000" in text
    assert "13800138000" not in text
