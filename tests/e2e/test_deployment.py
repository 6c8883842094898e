"""The production layout of docs/deployment.md, followed on this machine without a container
engine: PostgreSQL and Redis, the schema migrated once, ``onedoor check`` passing, two
OneDoor hosts behind nginx running deploy/nginx.conf (only the upstream addresses and the
port changed). Through the proxy: ready, a board's websocket gets a call made through the
other host, the client address is the one nginx forwards, /metrics stays internal."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.servers import (
    ONEDOOR,
    PrivateRedis,
    Server,
    free_port,
    load_demo_without_printer,
    server_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
DEPLOY = Path(__file__).parents[2] / "deploy"


def nginx_conf(folder: Path, port: int, hosts: list[Server]) -> Path:
    """deploy/nginx.conf with this machine's upstreams and port, inside a main config."""
    site = (DEPLOY / "nginx.conf").read_text()
    site = site.replace("onedoor-1:8000", f"127.0.0.1:{hosts[0].port}")
    site = site.replace("onedoor-2:8000", f"127.0.0.1:{hosts[1].port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (folder / "site.conf").write_text(site)
    main = folder / "nginx.conf"
    main.write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy;\n"
        # The hosts trust only the proxy's address: nginx connects from 127.0.0.2, the
        # test's client is 127.0.0.1 (in a hall, the proxy and the visitors differ too).
        f"  proxy_bind 127.0.0.2;\n  include {folder}/site.conf;\n}}\n"
    )
    return main


@pytest.fixture
def behind_nginx(tmp_path: Path, pg_url: str) -> Iterator[tuple[str, list[Server], dict[str, str]]]:
    exe = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if exe is None:
        pytest.skip("nginx is needed (Debian: nginx-light); .ci/run installs it")
    broker = PrivateRedis().start()
    env = server_env(tmp_path / "var", pg_url, broker.url)
    env["ONEDOOR_TRUSTED_PROXIES"] = "127.0.0.2"
    creds = load_demo_without_printer(env)
    check = subprocess.run(
        [*ONEDOOR, "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    hosts = [Server(env).start(), Server(env).start()]
    port = free_port()
    conf = nginx_conf(tmp_path, port, hosts)
    proxy = subprocess.Popen([exe, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proxy.poll() is None, proxy.stderr.read() if proxy.stderr else "nginx died"
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}", hosts, creds
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        logs = [host.stop() for host in hosts]
        broker.stop()
    for output in logs:
        assert "Traceback" not in output, output


async def test_two_hosts_behind_nginx_serve_one_hall(
    behind_nginx: tuple[str, list[Server], dict[str, str]],
) -> None:
    address, hosts, creds = behind_nginx
    base = f"http://{address}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        # A board's live feed through the proxy (websocket upgrade).
        board = await websockets.connect(
            f"ws://{address}/ws/halls/1/board?token={creds['board']}", proxy=None, open_timeout=5
        )
        first: Any = json.loads(await asyncio.wait_for(board.recv(), 5))
        assert first["type"] == "snapshot"
        issued = await http.post("/api/halls/1/tickets", json={"service_id": 1},
                                 headers={"Authorization": f"Bearer {creds['kiosk']}"})  # fmt: skip
        assert issued.status_code == 201, issued.text
        login = await http.post(
            "/api/auth/login", json={"username": "clerk", "password": creds["clerk"]},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )  # fmt: skip
        assert login.status_code == 200, login.text
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        assert (await http.post("/api/counters/1/open", headers=csrf)).status_code == 200
        called = await http.post("/api/counters/1/call-next", headers=csrf)
        assert called.status_code == 200, called.text
        number = called.json()["ticket"]["number"]
        # The board hears the call, whichever host took it (Redis fans out).
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await board.recv())
                calls = (message.get("board") or {}).get("recent_calls") or []
                if calls and calls[0]["number"] == number:
                    break
        await board.close()
        # nginx appends the client it saw to X-Forwarded-For; the hosts trust nginx only, so
        # the address the client wrote itself (203.0.113.9) is not taken.
        sessions = (await http.get("/api/auth/sessions")).json()
        assert next(s for s in sessions if s["current"])["address"] == "127.0.0.1"
        assert (await http.get("/metrics")).status_code == 403, "internal only at the proxy"
    direct = httpx.get(f"{hosts[0].base}/metrics", timeout=10)
    assert direct.status_code == 200 and "onedoor_http_requests_total" in direct.text
