"""``onedoor serve --workers 2`` as real processes on PostgreSQL: each worker listens on a
``SO_REUSEPORT`` socket of its own, so keep-alive connections spread over both (uvicorn's
shared socket once put all 16 connections of a load run on one worker); a worker killed
with -9 is replaced while the port keeps answering; SIGTERM stops every worker.

Which worker holds a connection is read from /proc: the server side of each connection is a
socket, and exactly one worker process has it open."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import pytest

from queue_server import serving
from tests.servers import HEALTHY_WITHIN_S, ONEDOOR, free_port, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT balances on Linux only"
)]  # fmt: skip
T = TypeVar("T")
CONNECTIONS = 64
FAIR_SHARE = 0.25
"""Each of two workers holds at least this share of the connections. The kernel hashes each
connection to a worker: with 64 connections the chance that one gets fewer than 16 is about
one in 20,000; with the shared socket one worker took them all."""


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_sockets(port: int) -> list[tuple[str, int, str]]:
    """Sockets on local ``port``: (state as hex, remote port, inode)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port:
                found.append((state, int(remote.rsplit(":", 1)[1], 16), inode))
    return found


def listening_workers(parent: int, port: int) -> list[int]:
    """The parent's children that hold a listening socket on ``port``."""
    listening = {inode for state, _, inode in tcp_sockets(port) if state == "0A"}
    return sorted(pid for pid in children(parent) if socket_inodes(pid) & listening)


def owners(parent: int, port: int, client_ports: list[int]) -> list[int | None]:
    """For each client port, the worker whose socket is the server's end of it."""
    inode_of = {remote: inode for state, remote, inode in tcp_sockets(port) if state == "01"}
    by_inode = {inode: pid for pid in children(parent) for inode in socket_inodes(pid)}
    return [by_inode.get(inode_of.get(client, "")) for client in client_ports]


def wait_for(what: str, probe: Callable[[], T | None], seconds: float = HEALTHY_WITHIN_S) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def get_healthz(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    return response.status


def spread(parent: int, port: int, count: int) -> Counter[int | None]:
    """Open ``count`` keep-alive connections at once, ask /healthz twice on each, and count
    them by the worker holding them."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(count)]
    try:
        # All connect at once, as a load balancer's or a load test's pool does: on a shared
        # socket the first worker to wake accepts them all.
        for conn in conns:
            conn.connect()
        for conn in conns:
            assert get_healthz(conn) == 200
        for conn in conns:
            assert get_healthz(conn) == 200  # the same connection, kept alive
        clients = [conn.sock.getsockname()[1] for conn in conns]
        return Counter(owners(parent, port, clients))
    finally:
        for conn in conns:
            conn.close()


class Served:
    """``onedoor serve --workers N`` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.workers = workers
        self.log = Path(env["ONEDOOR_VAR_DIR"]) / f"serve-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*ONEDOOR, "serve", "--workers", str(workers), "--port", str(self.port)],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def serving_workers(self) -> list[int]:
        """Wait until all the workers listen; their pids."""

        def all_listen() -> list[int] | None:
            assert self.process.poll() is None, f"server exited: {self.output()}"
            pids = listening_workers(self.pid, self.port)
            return pids if len(pids) == self.workers else None

        return wait_for(f"{self.workers} workers listen", all_listen)

    def stop(self) -> None:
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def served(tmp_path: Path, pg_url: str) -> Iterator[Served]:
    server = Served(server_env(tmp_path / "var", pg_url), workers=2)
    try:
        yield server
    finally:
        server.stop()


def test_keep_alive_connections_spread_over_the_workers_and_a_killed_one_comes_back(
    served: Served,
) -> None:
    workers = served.serving_workers()
    assert len(set(workers)) == 2
    # Neither listened before both had loaded the app.
    output = served.output()
    gate = output.index("all 2 workers have loaded the app; they listen now")
    assert all(output.index(f"[pid {pid}] serving on") > gate for pid in workers), output

    by_worker = spread(served.pid, served.port, CONNECTIONS)
    assert set(by_worker) == set(workers), by_worker
    for pid in workers:
        assert by_worker[pid] >= FAIR_SHARE * CONNECTIONS, f"unbalanced: {by_worker}"

    # kill -9 one worker: once its socket is closed the other answers every new connection.
    # (A connection that reaches a dying worker's socket before it is closed is reset, unless
    # net.ipv4.tcp_migrate_req=1.) Its files vanish from /proc before the kernel closes its
    # socket: wait for the socket itself to leave the table.
    killed, survivor = workers
    os.kill(killed, signal.SIGKILL)
    wait_for("the killed worker's socket is closed",
             lambda: sum(state == "0A" for state, _, _ in tcp_sockets(served.port)) == 1,
             10)  # fmt: skip
    assert listening_workers(served.pid, served.port) == [survivor]
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        assert get_healthz(conn) == 200
        conn.close()
    # ...and the parent starts a new worker, which takes its share again.
    replaced = served.serving_workers()
    assert survivor in replaced and killed not in replaced
    [new] = [pid for pid in replaced if pid != survivor]
    by_worker = spread(served.pid, served.port, CONNECTIONS)
    assert by_worker[new] >= FAIR_SHARE * CONNECTIONS, f"unbalanced: {by_worker}"
    output = served.output()
    assert re.search(rf"worker \d of 2 \[pid {killed}\] died \(killed by SIGKILL\)", output)
    assert f"restarted [pid {new}, was {killed}]" in output, output

    # SIGTERM to the parent alone: it stops both workers, gracefully, and exits 0.
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=40) == 0, served.output()
    for pid in replaced:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the server"
    output = served.output()
    assert output.count("Application shutdown complete.") == 2, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_to_the_process_group_stops_everything_gracefully(
    served: Served, stop: signal.Signals
) -> None:
    """As the benchmarks, process managers and a terminal's Ctrl-C stop a server: every
    process gets the signal at once. The parent must not take its workers' exit for a crash,
    nor its own forwarded signal make them drop connections (uvicorn's second SIGINT does)."""
    workers = served.serving_workers()
    os.killpg(served.pid, stop)
    assert served.process.wait(timeout=40) == 0, served.output()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the server"
    output = served.output()
    assert "restart" not in output, output
    assert "Traceback" not in output, output
    assert output.count("Application shutdown complete.") == 2, output
    assert "all workers stopped" in output


def test_a_taken_port_is_refused_before_any_worker_starts(tmp_path: Path, pg_url: str) -> None:
    env = server_env(tmp_path / "var", pg_url)
    with serving.reuseport_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*ONEDOOR, "serve", "--workers", "2", "--port", str(port), "--no-migrate"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "started" not in done.stderr


def fail_at_start(slot: int, *args: object) -> None:
    """A worker whose app cannot start (what uvicorn does then: exit code 3)."""
    sys.exit(3)


def test_workers_that_keep_failing_at_start_stop_the_server() -> None:
    supervisor = serving.Supervisor("127.0.0.1", free_port(), 2, "warning", fail_at_start)
    started = time.monotonic()
    assert supervisor.run() == 1
    assert supervisor.failure is not None
    assert "failed to start 3 times in a row (exit code 3)" in supervisor.failure
    # Two pauses (1 s, 2 s) between the tries, not a hot loop, and no endless one either.
    assert 3 <= time.monotonic() - started < 60
    assert all(slot.process is None for slot in supervisor.slots)
