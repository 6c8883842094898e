"""Structured logs: with ONEDOOR_LOG_FORMAT=json every line is one JSON object (uvicorn's
access lines with their request parts); anything else is refused at start."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from queue_server.logs import JsonFormatter, Outage, uvicorn_log_config
from queue_server.settings import SettingsError, load_settings


def test_a_record_is_one_json_line_with_its_exception() -> None:
    try:
        raise ValueError("bad input 工作")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("onedoor.x", logging.WARNING, __file__, 1, "hall %d: %s", (3, "关"),
                               info)  # fmt: skip
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert (data["level"], data["logger"], data["message"]) == (
        "WARNING",
        "onedoor.x",
        "hall 3: 关",
    )
    assert "ValueError: bad input 工作" in data["exception"]
    assert data["time"].endswith("+00:00")


def test_access_lines_carry_the_request() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/readyz", "1.1", 200), None)  # fmt: skip
    data = json.loads(JsonFormatter().format(record))
    assert (data["method"], data["path"], data["status"]) == ("GET", "/readyz", 200)


def test_uvicorn_gets_json_formatters_only_when_asked() -> None:
    assert uvicorn_log_config("text") is None
    config = uvicorn_log_config("json")
    assert config is not None
    assert {f["()"] for f in config["formatters"].values()} == {"queue_server.logs.JsonFormatter"}
    assert load_settings({"ONEDOOR_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="use text or json"):
        load_settings({"ONEDOOR_LOG_FORMAT": "xml"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_when_it_starts_summarised_while_it_lasts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage(logging.getLogger("onedoor.test"), "relay", every=60, clock=clock)
    caplog.set_level(logging.INFO, "onedoor.test")
    outage.recovered()  # nothing ongoing: nothing to say
    assert caplog.records == []
    for _ in range(120):  # the database away for 59.5 s, a retry every half second
        outage.failed("could not publish (connection refused)")
        clock.now += 0.5
    assert [r.getMessage() for r in caplog.records] == [
        "relay: could not publish (connection refused) (while this lasts, a summary every 60 s)"
    ]
    outage.failed("could not publish (connection refused)")  # 60 s after the first
    outage.failed("could not publish (connection refused)")
    clock.now += 10
    outage.recovered()
    outage.recovered()  # already over
    assert [r.getMessage() for r in caplog.records][1:] == [
        "relay: still failing after 60 s (121 failures, 120 since the last message); "
        "the last: could not publish (connection refused)",
        "relay: working again after 70.0 s and 122 failures",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}
    caplog.clear()
    outage.failed("timeout")  # a new outage is told as new
    clock.now += 1
    outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "relay: timeout (while this lasts, a summary every 60 s)",
        "relay: working again after 1.0 s and 1 failure",
    ]


def test_an_outage_nothing_tries_any_more_is_ended_without_claiming_it_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage(logging.getLogger("onedoor.test"), "boards' watcher", clock=clock)
    caplog.set_level(logging.INFO, "onedoor.test")
    outage.abandon("no boards left to watch")  # nothing ongoing
    outage.failed("refused")
    clock.now += 2.5
    outage.failed("refused")
    outage.abandon("no boards left to watch")
    outage.recovered()  # nothing ongoing any more: no end to tell
    clock.now += 3600
    outage.failed("refused")  # an hour later: a new outage, told as new
    assert [r.getMessage() for r in caplog.records] == [
        "boards' watcher: refused (while this lasts, a summary every 60 s)",
        "boards' watcher: no longer tried (no boards left to watch) after 2.5 s and 2 failures",
        "boards' watcher: refused (while this lasts, a summary every 60 s)",
    ]


def test_an_outage_line_names_the_module_that_met_the_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("onedoor.test"), "relay", every=0)
    caplog.set_level(logging.INFO, "onedoor.test")
    outage.failed("refused")
    outage.failed("refused")  # a summary at once (every=0)
    outage.recovered()
    assert [(r.module, r.funcName) for r in caplog.records] == [
        ("test_logs", "test_an_outage_line_names_the_module_that_met_the_failure")
    ] * 3
