"""Printing end to end: kiosk API → print agent (a real process) → a fake network printer,
and the outcome back to the kiosk over its feed (``/ws/halls/{hall}/kiosk``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from printer.agent import MAYBE_PRINTED
from queue_server.service.accounts import token_digest
from tests.e2e.test_live_feeds import Clerk, Feed, feed
from tests.fakeprinter import FakePrinter, qr_payload, strip_escpos
from tests.printagent import AgentProcess
from tests.servers import HEALTHY_WITHIN_S, Server, load_demo, server_env

pytestmark = pytest.mark.slow


@pytest.fixture
def hall(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str], FakePrinter, AgentProcess]]:
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    # Only the reprint answer waits for the printer now. Were the kiosk's answer to wait,
    # it would wait this long: the tests that pause the agent would then time out.
    env["ONEDOOR_PRINT_WAIT_SECONDS"] = "60"
    creds = load_demo(env)
    printer = FakePrinter().start()
    server = Server(env).start()
    agent = AgentProcess(server.base, creds["printer"], printer, tmp_path, server.env).start()
    # A process starting on a busy machine: as long as a server may take (tests/servers.py).
    try:
        wait_until(lambda: "connected to the server" in agent.output(), HEALTHY_WITHIN_S)
    except AssertionError:
        agent.kill()
        printer.stop()
        raise AssertionError(
            f"the agent did not connect; it said:\n{agent.output()}\n"
            f"the server said:\n{server.stop()}"
        ) from None
    yield server, creds, printer, agent
    if agent.process and agent.process.poll() is None:
        agent.resume()  # a test that failed with the agent paused
    agent.kill()
    output = server.stop()
    printer.stop()
    assert "Traceback" not in output, output


def wait_until(check: Any, timeout: float = 60.0) -> None:
    """Until ``check()`` holds (at once when it does; the timeout only bounds a failure)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


async def issue(server: Server, creds: dict[str, str], service_id: int = 1) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base, timeout=15) as http:
        answer = await http.post(
            "/api/halls/1/tickets", json={"service_id": service_id},
            headers={"Authorization": f"Bearer {creds['kiosk']}"},
        )  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def kiosk_feed_url(server: Server, token: str, hall_id: int = 1) -> str:
    return f"{server.ws}/ws/halls/{hall_id}/kiosk?token={token}"


async def kiosk_feed(server: Server, creds: dict[str, str]) -> Feed:
    """The kiosk's feed, past its first snapshot."""
    kiosk = await feed(kiosk_feed_url(server, creds["kiosk"]))
    first = await kiosk.next(timeout=10)
    assert first["type"] == "snapshot", first
    return kiosk


async def outcome(kiosk: Feed, ticket: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """What the kiosk's feed says became of the ticket's print job."""
    job_id = ticket["printing"]["job_id"]
    return await kiosk.until(
        lambda m: m["type"] == "print" and m["job_id"] == job_id
        and m["state"] in ("printed", "failed"),
        timeout,
    )  # fmt: skip


def alerts(server: Server, creds: dict[str, str]) -> list[dict[str, Any]]:
    """The hall's device alerts, as a manager's or clerk's screen shows them."""
    answer = httpx.get(
        f"{server.base}/api/halls/1/alerts", headers={"Authorization": f"Bearer {creds['board']}"}
    )
    return answer.json()  # type: ignore[no-any-return]


def printed_numbers(printer: FakePrinter) -> list[str]:
    return [
        re.search(r"[A-F]\d{3}", strip_escpos(job).decode("gb18030")).group(0)
        for job in printer.jobs
    ]  # type: ignore[union-attr]


async def test_a_kiosk_ticket_prints_in_chinese_with_its_qr(hall: Any) -> None:
    server, creds, printer, _ = hall
    kiosk = await kiosk_feed(server, creds)
    ticket = await issue(server, creds)
    # Whatever the job's state when the answer was made, the outcome comes on the feed.
    said = await outcome(kiosk, ticket)
    assert (said["state"], said["ticket_id"], said["number"]) == ("printed", ticket["id"], "A001")
    wait_until(lambda: len(printer.jobs) == 1)
    job = printer.jobs[0]
    text = strip_escpos(job).decode("gb18030")
    assert "A001" in text
    assert "社会保险" in text and "Social insurance" in text
    assert "示范政务服务中心" in text
    assert "前面还有 0 人" in text
    assert job.startswith(b"\x1b@\x1c&"), "initialise, then Chinese mode"
    assert job.endswith(b"\x1dV\x00") or b"\x1dV" in job[-8:], "the ticket is cut"
    assert qr_payload(job) == ticket["follow_url"]
    await kiosk.ws.close()


async def test_the_answer_comes_at_once_while_a_slow_agent_still_prints(hall: Any) -> None:
    server, creds, printer, agent = hall
    kiosk = await kiosk_feed(server, creds)
    agent.pause()  # connected, but it will not print anything until it is resumed
    ticket = await issue(server, creds)  # it would time out, were the answer to wait
    assert ticket["printing"]["state"] in ("pending", "sent"), ticket["printing"]
    assert ticket["printing"]["job_id"] is not None
    assert ticket["printing"]["detail"] is None, "the agent is there, only slow"
    assert printer.jobs == []
    agent.resume()
    said = await outcome(kiosk, ticket)
    assert (said["state"], said["detail"]) == ("printed", None)
    wait_until(lambda: printed_numbers(printer) == ["A001"])

    # A kiosk that connects after its job finished (a reload, a dropped socket) finds the
    # outcome in the feed's first message.
    again = await feed(kiosk_feed_url(server, creds["kiosk"]))
    snapshot = await again.next(timeout=10)
    assert snapshot["type"] == "snapshot"
    [job] = [j for j in snapshot["jobs"] if j["job_id"] == ticket["printing"]["job_id"]]
    assert (job["state"], job["ticket_id"], job["number"]) == ("printed", ticket["id"], "A001")
    assert [p["problem"] for p in snapshot["printers"]] == [None]
    await again.ws.close()
    await kiosk.ws.close()


async def test_paper_out_fails_the_job_raises_an_alert_and_reprint_prints_once(hall: Any) -> None:
    server, creds, printer, _ = hall
    kiosk = await kiosk_feed(server, creds)
    printer.mode = "paper_out"
    ticket = await issue(server, creds)
    said = await outcome(kiosk, ticket)
    assert (said["state"], said["detail"]) == ("failed", "paper out")
    # The printer's own report came before the job's answer, on the same feed.
    problems = [m["problem"] for m in kiosk.messages if m["type"] == "printer" and m["problem"]]
    assert problems == ["paper out"], kiosk.messages
    assert printer.jobs == []
    found = alerts(server, creds)
    assert [a["problem"] for a in found] == ["paper out"]

    # The ticket is valid all the same: the clerk calls it.
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        called = await clerk.do(1, "call-next")
        assert called["ticket"]["number"] == ticket["number"]

        # Staff's reprint still waits to say whether it printed.
        printer.mode = "online"
        answer = await clerk.http.post(f"/api/halls/1/tickets/{ticket['id']}/reprint")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "printed"
    # The reprint is on the kiosk's printer: its feed hears of it too.
    reprinted = await kiosk.until(
        lambda m: m["type"] == "print" and m["job_id"] == answer.json()["job_id"], timeout=10
    )
    assert (reprinted["state"], reprinted["ticket_id"]) == ("printed", ticket["id"])
    wait_until(lambda: printed_numbers(printer) == ["A001"])
    await asyncio.sleep(0.5)
    assert printed_numbers(printer) == ["A001"], "printed once, not again"
    await kiosk.ws.close()


async def test_a_silent_printer_is_unknown_never_ok(hall: Any) -> None:
    server, creds, printer, _ = hall
    kiosk = await kiosk_feed(server, creds)
    printer.mode = "silent"
    ticket = await issue(server, creds)
    # The bytes went out, but nobody confirmed them: printed, with the doubt said.
    said = await outcome(kiosk, ticket)
    assert said["state"] == "printed"
    assert "did not answer" in said["detail"]
    assert [a["problem"] for a in alerts(server, creds)] == ["printer not answering"]
    await kiosk.ws.close()


async def test_agent_gone_flags_the_kiosk_and_nothing_is_lost(hall: Any, tmp_path: Path) -> None:
    server, creds, printer, agent = hall
    kiosk = await kiosk_feed(server, creds)
    agent.kill()
    wait_until(lambda: alerts(server, creds) != [])
    assert [a["problem"] for a in alerts(server, creds)] == ["print agent offline"]
    gone = await kiosk.until(lambda m: m["type"] == "printer" and not m["connected"])
    assert (gone["connected"], gone["problem"]) == (False, "print agent offline")
    ticket = await issue(server, creds)
    # Told at once that nobody is there to print it: the kiosk shows the ticket on screen.
    assert ticket["printing"] == {**ticket["printing"], "state": "pending",
                                  "detail": "print agent offline"}  # fmt: skip
    assert printer.jobs == []
    agent.start()  # back: the unsent job goes out now, once
    said = await outcome(kiosk, ticket)
    assert said["state"] == "printed"
    wait_until(lambda: len(printer.jobs) == 1)
    assert printed_numbers(printer) == ["A001"]
    wait_until(lambda: alerts(server, creds) == [])
    await kiosk.ws.close()


async def test_agent_killed_mid_job_and_restarted_prints_each_job_once(hall: Any) -> None:
    server, creds, printer, agent = hall
    printer.status_delay = 1.5  # the agent is busy asking the printer when it dies
    printer.asked.clear()
    ticket = await issue(server, creds)
    assert ticket["printing"]["state"] in ("sent", "pending")
    wait_until(printer.asked.is_set)
    agent.kill()
    assert printer.jobs == []
    printer.status_delay = 0.0
    agent.start()
    wait_until(lambda: len(printer.jobs) == 1)
    assert printed_numbers(printer) == ["A001"]
    # The agent has finished the job (logged it done, then acknowledged it): the bytes
    # reaching the printer come before that, and a kill in between is the other case
    # ("interrupted earlier", tested below).
    with sqlite3.connect(server.env["ONEDOOR_DATABASE_URL"].split("///", 1)[1]) as db:
        wait_until(lambda: db.execute("SELECT state FROM print_jobs").fetchall() == [("printed",)])

    # The ack of a printed job is lost (the job is marked unacknowledged again) and the
    # agent restarts: the job is resent, recognised and not printed a second time.
    agent.kill()
    with sqlite3.connect(server.env["ONEDOOR_DATABASE_URL"].split("///", 1)[1]) as db:
        db.execute("UPDATE print_jobs SET state = 'sent' WHERE ticket_id = 1")
    agent.start()
    wait_until(lambda: "job 1: already printed by this agent" in agent.output())
    with sqlite3.connect(server.env["ONEDOOR_DATABASE_URL"].split("///", 1)[1]) as db:
        wait_until(lambda: db.execute("SELECT state FROM print_jobs").fetchall() == [("printed",)])
    assert printed_numbers(printer) == ["A001"]


async def test_an_agent_killed_while_sending_reports_the_job_failed_maybe_printed(
    hall: Any, tmp_path: Path
) -> None:
    """Killed after it noted the job as started and before it noted it finished: whether the
    ticket came out is unknown, so the restarted agent neither prints it again nor claims it
    printed; the kiosk is told it failed, with the doubt in words."""
    server, creds, printer, agent = hall
    kiosk = await kiosk_feed(server, creds)
    agent.kill()
    ticket = await issue(server, creds)
    job_id = ticket["printing"]["job_id"]
    # The agent's record as a kill between "started" and "finished" leaves it.
    state = tmp_path / "agent-state" / "printed-jobs.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"started": [job_id], "done": []}))
    agent.start()
    said = await outcome(kiosk, ticket)
    assert said["state"] == "failed", said
    assert said["detail"] == MAYBE_PRINTED
    assert f"job {job_id}: interrupted earlier; not printing it again" in agent.output()
    assert printer.jobs == []
    # The next ticket prints as usual.
    second = await issue(server, creds)
    assert (await outcome(kiosk, second))["state"] == "printed"
    wait_until(lambda: len(printer.jobs) == 1)
    assert printed_numbers(printer) == ["A002"]
    await kiosk.ws.close()


async def test_a_cable_pulled_mid_job_fails_it_with_an_alert_and_reprint_prints_once(
    hall: Any,
) -> None:
    server, creds, printer, _ = hall
    kiosk = await kiosk_feed(server, creds)
    # The printer reads the start of the next job, then its cable comes out: the rest of
    # the job never arrives, and every connection after is reset until it is plugged in.
    printer.mode = "pull_cable"
    ticket = await issue(server, creds)
    said = await outcome(kiosk, ticket)
    assert said["state"] == "failed", said
    assert said["detail"].startswith(f"printer at 127.0.0.1:{printer.port}"), said
    assert len(printer.torn) == 1
    assert printer.jobs == []

    # The next ticket finds the printer gone: failed at once, and staff are told.
    second = await issue(server, creds)
    said = await outcome(kiosk, second)
    assert (said["state"], said["detail"]) == ("failed", "printer offline")
    assert [a["problem"] for a in alerts(server, creds)] == ["printer offline"]
    assert printer.jobs == []

    # Plugged in again: staff reprint the torn ticket, and it prints once.
    printer.mode = "online"
    async with Clerk(server.base, creds["clerk"]) as clerk:
        answer = await clerk.http.post(f"/api/halls/1/tickets/{ticket['id']}/reprint")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "printed"
    wait_until(lambda: printed_numbers(printer) == ["A001"])
    wait_until(lambda: alerts(server, creds) == [])
    await asyncio.sleep(0.5)
    assert printed_numbers(printer) == ["A001"], "printed once, not again"
    await kiosk.ws.close()


class GarbledFront:
    """A TCP front to the server whose first ``garbled`` connections get a broken answer
    (what a proxy or a server going down may say instead of a websocket handshake); the
    ones after are passed through both ways."""

    def __init__(self, server: Server, garbled: int) -> None:
        self.target = ("127.0.0.1", server.port)
        self.garbled = garbled
        self.seen = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.seen += 1
            if self.seen <= self.garbled:
                client.recv(65536)
                client.sendall(b"garbage, not HTTP\r\n\r\n")
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


async def test_an_agent_outlives_an_answer_that_is_not_a_websocket(
    hall: Any, tmp_path: Path
) -> None:
    """The hall's network says something broken where the handshake should be: the agent
    says so, tries again, and prints once the server answers."""
    server, creds, printer, agent = hall
    agent.kill()
    front = GarbledFront(server, garbled=2)
    behind = AgentProcess(f"http://127.0.0.1:{front.port}", creds["printer"], printer,
                          tmp_path / "behind-a-front", server.env).start()  # fmt: skip
    try:
        wait_until(lambda: "connected to the server" in behind.output())
        assert behind.output().count("the server's answer was not a websocket") == 2
        assert behind.process is not None and behind.process.poll() is None
        ticket = await issue(server, creds)
        wait_until(lambda: printed_numbers(printer) == [ticket["number"]])
    finally:
        behind.kill()
        front.close()


def test_a_token_starting_with_a_dash_connects_from_the_environment(
    hall: Any, tmp_path: Path
) -> None:
    """Tokens made before they were kept from starting with "-" still work: from
    ONEDOOR_PRINTER_TOKEN (or ``--token=…``), which also keeps them out of ``ps``."""
    server, _, printer, agent = hall
    agent.kill()
    token = "-older-token-" + "x" * 30
    database = server.env["ONEDOOR_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as db:
        db.execute("UPDATE devices SET token_hash = ? WHERE kind = 'printer'",
                   (token_digest(token),))  # fmt: skip
    env = {**server.env, "ONEDOOR_PRINTER_TOKEN": token}
    from_env = AgentProcess(server.base, None, printer, tmp_path / "from-env", env).start()
    try:
        wait_until(lambda: "connected to the server" in from_env.output())
    finally:
        from_env.kill()
    without = AgentProcess(server.base, None, printer, tmp_path / "without", server.env).start()
    assert without.process is not None and without.process.wait(timeout=60) == 2
    assert "set ONEDOOR_PRINTER_TOKEN, or pass --token=TOKEN" in without.output()
