"""Structured logs: one JSON object per line (``ONEDOOR_LOG_FORMAT=json``), for log
collectors; the default stays plain text for people reading a terminal.

Phone numbers never reach a log in clear (booking.notify masks them); this formatter adds
nothing that was not in the message.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}``, plus ``exception`` when there is one and
    the request line's parts for uvicorn's access log."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (
            record.name == "uvicorn.access"
            and isinstance(record.args, tuple)
            and len(record.args) == 5
        ):
            client, method, path, version, status = record.args
            entry.update(client=client, method=method, path=path, http=version, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def uvicorn_log_config(log_format: str) -> dict[str, Any] | None:
    """uvicorn's own logging config with JSON formatters, or None for its default."""
    if log_format != "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name in config["formatters"]:
        config["formatters"][name] = {"()": "queue_server.logs.JsonFormatter"}
    return config


def litestar_formatters(log_format: str) -> dict[str, dict[str, Any]] | None:
    """The app's formatter when logs are JSON (its handlers use ``standard``)."""
    if log_format != "json":
        return None
    return {"standard": {"()": "queue_server.logs.JsonFormatter"}}
