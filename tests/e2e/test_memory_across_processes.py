"""What one process keeps in memory, another process's change reaches at once: two real
servers sharing PostgreSQL and a Redis of the test's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, two_servers_own_redis

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def two_processes(tmp_path: Path, pg_url: str) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    """The demo hall served by two processes; their own Redis, so no other test's servers
    hear (or answer) their invalidations."""
    with two_servers_own_redis(tmp_path / "var", pg_url) as (a, b, creds, logs):
        yield a, b, creds
    for output in logs:
        assert "Traceback" not in output, output
        assert "acknowledged an invalidation" not in output, output


def sign_in(base: str, username: str, password: str) -> tuple[dict[str, str], int]:
    """Headers carrying a fresh session (cookie and CSRF token), and the user's id."""
    answer = httpx.post(f"{base}/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
    headers = {"Cookie": cookie, "X-CSRF-Token": answer.json()["csrf_token"]}
    return headers, answer.json()["user"]["user_id"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(base: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=headers, timeout=10)


async def test_deactivation_and_revocation_bite_at_once_in_the_other_process(
    two_processes: tuple[Server, Server, dict[str, str]],
) -> None:
    a, b, creds = two_processes
    clerk, clerk_id = sign_in(a.base, "clerk", creds["clerk"])
    manager, _ = sign_in(a.base, "manager", creds["manager"])
    # Both processes have the clerk and the board in their caches now.
    for server in (a, b):
        for _ in range(3):
            assert get(server.base, "/api/auth/me", clerk).status_code == 200
            assert (
                get(server.base, "/api/halls/1/snapshot", bearer(creds["board"])).status_code == 200
            )

    gone = httpx.patch(
        f"{a.base}/api/halls/1/staff/{clerk_id}", json={"active": False}, headers=manager
    )
    assert gone.status_code == 200, gone.text
    # No waiting: once the manager has the answer, neither process knows the clerk.
    assert get(b.base, "/api/auth/me", clerk).status_code == 401
    assert get(a.base, "/api/auth/me", clerk).status_code == 401

    devices = get(a.base, "/api/halls/1/devices", manager).json()
    board_id = next(d["id"] for d in devices if d["kind"] == "board")
    revoked = httpx.delete(f"{a.base}/api/halls/1/devices/{board_id}", headers=manager)
    assert revoked.status_code == 200, revoked.text
    refused = get(b.base, "/api/halls/1/snapshot", bearer(creds["board"]))
    assert refused.status_code == 401
    assert "unknown or revoked" in refused.json()["detail"]
    assert get(a.base, "/api/halls/1/snapshot", bearer(creds["board"])).status_code == 401


async def test_a_call_through_one_process_shows_in_the_other_s_snapshot(
    two_processes: tuple[Server, Server, dict[str, str]],
) -> None:
    a, b, creds = two_processes
    clerk, _ = sign_in(a.base, "clerk", creds["clerk"])
    board = bearer(creds["board"])
    issued = httpx.post(
        f"{a.base}/api/halls/1/tickets", json={"service_id": 1}, headers=bearer(creds["kiosk"])
    )
    assert issued.status_code == 201, issued.text
    opened = httpx.post(f"{a.base}/api/counters/1/open", headers=clerk)
    assert opened.status_code == 200, opened.text
    first = get(b.base, "/api/halls/1/snapshot", board).json()
    assert first["recent_calls"] == []

    called = httpx.post(f"{a.base}/api/counters/1/call-next", headers=clerk)
    assert called.status_code == 200, called.text
    number = called.json()["ticket"]["number"]
    clicked = time.monotonic()
    # A caller that knows the call's seq (say, from A's board feed) gets it from B at once.
    at_once = get(b.base, f"/api/halls/1/snapshot?since={first['seq'] + 1}", board).json()
    assert at_once["seq"] >= first["seq"] + 1
    assert at_once["recent_calls"][0]["number"] == number
    seen: dict[str, Any] = {}
    for server in (b, a):
        seqs = []
        while True:
            seen = get(server.base, "/api/halls/1/snapshot", board).json()
            seqs.append(seen["seq"])
            assert seqs == sorted(seqs), f"a later read went back: {seqs}"
            if seen["recent_calls"] and seen["recent_calls"][0]["number"] == number:
                break
            assert time.monotonic() - clicked < 2.0, f"never showed on {server.base}: {seen}"
    assert seen["seq"] == first["seq"] + 1
    assert seen["counters"][0]["ticket_number"] == number
    assert seen["waiting"][0]["waiting"] == first["waiting"][0]["waiting"] - 1
