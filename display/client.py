"""``onedoor board-client``: a terminal board on the hall's feed, for LED boards and tests.

It prints one line per call, reconnects with growing, jittered back-off when the server
or the network goes away, and resumes from the last sequence number it saw.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

MAX_BACKOFF_S = 10.0


def feed_url(server: str, hall_id: int, token: str, since: int | None) -> str:
    """The board feed's websocket URL for a server given as http(s):// or ws(s)://."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = {"token": token} | ({"since": str(since)} if since is not None else {})
    path = f"{parts.path.rstrip('/')}/ws/halls/{hall_id}/board"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def call_line(message: dict[str, Any]) -> str | None:
    """The line to print for a feed message: a call or recall, else None."""
    if message.get("type") != "event":
        return None
    event = message["event"]
    if event["name"] not in ("TicketCalled", "TicketRecalled"):
        return None
    board = message["board"]
    counter = next((c for c in board["counters"] if c["counter_id"] == event["counter_id"]), None)
    number = counter["number"] if counter else "?"
    again = " (again)" if event["name"] == "TicketRecalled" else ""
    announcement = board["announcements"][-1] if board["announcements"] else None
    zh = f"  {announcement['text_zh']}" if announcement else ""
    return f"{event['number']} → counter {number}{again}{zh}"


async def run(
    server: str,
    hall_id: int,
    token: str,
    out: TextIO = sys.stdout,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Follow the hall's board until ``stop()`` says so (checked between messages)."""
    since: int | None = None
    backoff = 0.5
    while not stop():
        try:
            # proxy=None: a hall's LAN server is never reached through an HTTP proxy.
            async with websockets.connect(
                feed_url(server, hall_id, token, since), proxy=None, open_timeout=10
            ) as ws:
                backoff = 0.5
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "snapshot" and since is None:
                        board = message["board"]
                        print(f"{board['name_zh']} / {board['name_en']}: following", file=out)
                    since = message.get("seq", since)
                    line = call_line(message)
                    if line:
                        print(line, file=out, flush=True)
                    if stop():
                        return
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403, 404):
                print(f"refused by the server ({status}): check the hall id and token", file=out)
                raise SystemExit(2) from None
            print(f"server answered {status}; retrying in {backoff:.1f} s", file=out, flush=True)
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            print(f"connection lost ({exc.__class__.__name__}); retrying in {backoff:.1f} s",
                  file=out, flush=True)  # fmt: skip
        except InvalidURI as exc:
            print(f"not a server URL: {exc}", file=out)
            raise SystemExit(2) from None
        await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto
        backoff = min(backoff * 2, MAX_BACKOFF_S)
