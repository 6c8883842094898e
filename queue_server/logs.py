"""Structured logs: one JSON object per line (``ONEDOOR_LOG_FORMAT=json``), for log
collectors; the default stays plain text for people reading a terminal.

Phone numbers never reach a log in clear (booking.notify masks them); this formatter adds
nothing that was not in the message.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
OUTAGE_SUMMARY_EVERY = 60.0
"""While a failure repeats, how often ``Outage`` logs how long it has lasted (seconds)."""


class Outage:
    """One story per outage instead of a line per retry.

    A loop that retries while the database or Redis is away (the relay, the boards'
    watcher, the pub/sub listener) fails again and again, some every half second. The
    first failure is logged at once, the ones after it are counted and summarised at most
    every ``every`` seconds, and the first success after them logs how long the outage
    lasted and how many failures it took, all at WARNING so that a log read at that level
    shows where each outage began and ended; each line names the caller's module and
    function (``stacklevel``). One event loop's use: not thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        every: float = OUTAGE_SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.what = what
        self.every = every
        self._clock = clock
        self.since: float | None = None
        """When the ongoing outage's first failure came (``clock``); None: none ongoing."""
        self.failures = 0
        """Failures of the ongoing outage."""
        self._summarised_at = 0.0
        self._unsummarised = 0

    def failed(self, detail: object) -> None:
        """Another failure: logged when it starts an outage or a summary is due."""
        now = self._clock()
        self.failures += 1
        if self.since is None:
            self.since, self._summarised_at, self._unsummarised = now, now, 0
            self._log.warning("%s: %s (while this lasts, a summary every %.0f s)",
                              self.what, detail, self.every, stacklevel=2)  # fmt: skip
            return
        self._unsummarised += 1
        if now - self._summarised_at >= self.every:
            self._log.warning(
                "%s: still failing after %.0f s (%d failures, %d since the last message); "
                "the last: %s",
                self.what, now - self.since, self.failures, self._unsummarised, detail,
                stacklevel=2,
            )  # fmt: skip
            self._summarised_at, self._unsummarised = now, 0

    def recovered(self) -> None:
        """A success: ends the outage, if one is ongoing, with its length and failures."""
        if self.since is None:
            return
        self._log.warning("%s: working again after %.1f s and %d failure%s",
                          self.what, self._clock() - self.since, self.failures,
                          "" if self.failures == 1 else "s", stacklevel=2)  # fmt: skip
        self.since, self.failures = None, 0

    def abandon(self, reason: str) -> None:
        """Nothing is tried any more (``reason``): ends the outage, if one is ongoing,
        without claiming it is over, so that the next failure is told as a new one."""
        if self.since is None:
            return
        self._log.warning("%s: no longer tried (%s) after %.1f s and %d failure%s",
                          self.what, reason, self._clock() - self.since, self.failures,
                          "" if self.failures == 1 else "s", stacklevel=2)  # fmt: skip
        self.since, self.failures = None, 0


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
