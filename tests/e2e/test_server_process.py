"""The commands a hall's operator types: ``onedoor demo``, ``create-admin`` and ``serve``,
run as real processes, and the README's walk through the API against the served demo."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ONEDOOR = [sys.executable, "-m", "queue_server.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONEDOOR, *args], env=env, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ONEDOOR_VAR_DIR": str(tmp_path / "var")}


def test_demo_loads_once_and_prints_credentials(env: dict[str, str], tmp_path: Path) -> None:
    first = run(["demo"], env)
    assert first.returncode == 0, first.stderr
    assert "示范政务服务中心 / Demo Service Centre" in first.stdout
    assert re.search(r"clerk    login: clerk / \S{12,}", first.stdout)
    saved = tmp_path / "var" / "demo-credentials.txt"
    assert saved.stat().st_mode & 0o777 == 0o600
    again = run(["demo"], env)
    assert again.returncode == 0
    assert "already has a hall" in again.stdout
    assert (tmp_path / "var" / "onedoor.sqlite3").exists()


def test_create_admin_and_bad_settings(env: dict[str, str]) -> None:
    made = run(["create-admin", "--username", "chief"], env)
    assert made.returncode == 0, made.stderr
    assert "admin 'chief' created" in made.stdout
    assert re.search(r"password \(shown once\): \S{12,}", made.stdout)
    taken = run(["create-admin", "--username", "chief", "--password", "another-password"], env)
    assert taken.returncode == 1
    assert "username 'chief' is taken" in taken.stderr
    bad_port = run(["serve"], {**env, "ONEDOOR_PORT": "eighty"})
    assert bad_port.returncode == 2
    assert "ONEDOOR_PORT must be a whole number" in bad_port.stderr
    no_workers = run(["serve", "--workers", "0"], env)
    assert no_workers.returncode == 2
    assert "--workers (ONEDOOR_WORKERS) must be 1 or more" in no_workers.stderr


@pytest.fixture
def served_demo(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The demo hall served by a real ``onedoor serve`` process, and its credentials."""
    demo = run(["demo"], env)
    assert demo.returncode == 0, demo.stderr
    creds = dict(re.findall(r"^\s+(\w+)\s+(?:login|token): (?:\w+ / )?(\S+)$", demo.stdout, re.M))
    port = free_port()
    server = subprocess.Popen(
        [*ONEDOOR, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not become healthy in 10 s")
        yield base, creds
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
        assert "Traceback" not in output, output
    assert f"API docs:       http://127.0.0.1:{port}/schema/swagger" in output
    assert f"counter:        http://127.0.0.1:{port}/counter" in output


def test_readme_walkthrough_against_the_served_demo(
    served_demo: tuple[str, dict[str, str]],
) -> None:
    base, creds = served_demo
    docs = httpx.get(f"{base}/schema/swagger")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower(), "the API docs page must load nothing from a CDN"
    assert httpx.get(f"{base}/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200

    kiosk = {"Authorization": f"Bearer {creds['kiosk']}"}
    hall = httpx.get(f"{base}/api/public/halls/1").json()
    matters = {s["name_en"]: s["id"] for s in hall["services"]}
    assert len(matters) == 7 and hall["open_now"] is True
    assert [s["name_en"] for s in hall["services"] if s["desk"]] == ["Can't get it done"]

    ticket = httpx.post(
        f"{base}/api/halls/1/tickets",
        json={"service_id": matters["Social insurance"]},
        headers=kiosk,
    ).json()
    assert ticket["number"] == "A001"

    clerk = httpx.Client(base_url=base)
    login = clerk.post("/api/auth/login", json={"username": "clerk", "password": creds["clerk"]})
    assert login.status_code == 200
    clerk.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    assert clerk.post("/api/counters/1/open").json()["counter"]["state"] == "open"
    called = clerk.post("/api/counters/1/call-next").json()
    assert called["ticket"]["number"] == "A001"
    assert called["reason"].startswith("longest wait")
    assert clerk.post("/api/counters/1/start").json()["state"] == "serving"
    moved = clerk.post(
        "/api/counters/1/transfer", json={"service_id": matters["Medical insurance"]}
    )
    assert moved.json()["new_ticket"]["number"] == "A001"
    # Counter 2 serves medical insurance: the clerk moves there and finishes the visit.
    assert clerk.post("/api/counters/2/open").status_code == 200
    follow = clerk.post("/api/counters/2/call-next").json()
    assert follow["ticket"]["service"]["name_en"] == "Medical insurance"
    clerk.post("/api/counters/2/start")
    done = clerk.post("/api/counters/2/finish", json={"outcome": "done"}).json()
    assert (done["state"], done["outcome"]) == ("done", "done")
    status = httpx.get(f"{base}/api/follow/{ticket['follow_token']}").json()
    assert status["state"] == "done"
