"""How bytes reach a printer: network (TCP 9100), USB, serial, or a folder of files.

Each transport writes a job's bytes and answers status queries; they are small on
purpose. All of them block: the agent runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from .layout import TicketPrint, preview
from .status import HEALTHY, QUERY_OFFLINE_CAUSE, QUERY_PAPER, QUERY_PRINTER, PrinterStatus, parse


class PrintFailed(Exception):
    """The bytes did not reach the printer (refused connection, timeout, device gone)."""


class Transport(Protocol):
    def print_job(self, job_id: int, data: bytes, ticket: TicketPrint) -> None:
        """Send ``data``; raise PrintFailed if it could not be delivered."""
        ...

    def status(self) -> PrinterStatus:
        """Ask the printer how it is; unknown when it does not answer in time."""
        ...


def _status_by_queries(ask: Any) -> PrinterStatus:
    return parse(ask(QUERY_PRINTER), ask(QUERY_OFFLINE_CAUSE), ask(QUERY_PAPER))


class NetworkTransport:
    """A printer on the LAN (raw TCP, usually port 9100); one connection per job."""

    def __init__(
        self, host: str, port: int = 9100, timeout: float = 5.0, status_timeout: float = 0.5
    ) -> None:
        self.host, self.port = host, port
        self.timeout, self.status_timeout = timeout, status_timeout

    def print_job(self, job_id: int, data: bytes, ticket: TicketPrint) -> None:
        """Send the job, then ask the printer's status on the same connection: ``sendall``
        returns once the bytes are in this machine's buffers, so only an answer after them
        says they arrived. A reset or a close instead (a cable pulled, the printer switched
        off mid-job) is PrintFailed; a printer that never answers status queries is taken
        to have printed, as before (the agent acks it with that doubt)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.sendall(data + QUERY_PRINTER)
                sock.settimeout(self.status_timeout)
                try:
                    answer = sock.recv(1)
                except TimeoutError:
                    return  # silent: sent, not confirmed
                if not answer:
                    raise PrintFailed(
                        f"printer at {self.host}:{self.port}: the connection closed mid-job"
                    )
                with contextlib.suppress(OSError):  # it answered after the job: it has it all
                    sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise PrintFailed(f"printer at {self.host}:{self.port}: {exc}") from exc

    def status(self) -> PrinterStatus:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                sock.settimeout(self.status_timeout)

                def ask(query: bytes) -> int | None:
                    sock.sendall(query)
                    try:
                        answer = sock.recv(1)
                    except TimeoutError:
                        return None
                    return answer[0] if answer else None

                return _status_by_queries(ask)
        except OSError:
            return PrinterStatus("offline", "unknown", "unknown")


class FileTransport:
    """The demo printer: each job's bytes (``.bin``) and a readable ``.txt`` in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def print_job(self, job_id: int, data: bytes, ticket: TicketPrint) -> None:
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{ticket.number}-job{job_id}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{stem}.bin").write_bytes(data)
            (self.folder / f"{stem}.txt").write_text(preview(ticket), encoding="utf-8")
        except OSError as exc:
            raise PrintFailed(f"ticket folder {self.folder}: {exc}") from exc

    def status(self) -> PrinterStatus:
        return HEALTHY  # a folder never runs out of paper


class _EscposDevice:
    """USB and serial printers through python-escpos's own device classes."""

    def __init__(self, device: Any, status_timeout: float) -> None:
        self.device = device
        self.status_timeout = status_timeout

    def print_job(self, job_id: int, data: bytes, ticket: TicketPrint) -> None:
        try:
            self.device.open()
            self.device._raw(data)
        except Exception as exc:  # the library raises many kinds; all mean "not printed"
            raise PrintFailed(f"{type(self.device).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):  # an unplugged device fails to close too
                self.device.close()

    def status(self) -> PrinterStatus:
        try:
            self.device.open()

            def ask(query: bytes) -> int | None:
                self.device._raw(query)
                deadline = time.monotonic() + self.status_timeout
                while time.monotonic() < deadline:
                    answer = self.device._read()
                    if answer:
                        return int(answer[0])
                    time.sleep(0.02)
                return None

            return _status_by_queries(ask)
        except Exception:
            return PrinterStatus("offline", "unknown", "unknown")
        finally:
            with contextlib.suppress(Exception):
                self.device.close()


def usb_transport(vendor: int, product: int, status_timeout: float) -> _EscposDevice:
    from escpos.printer import Usb

    return _EscposDevice(Usb(vendor, product), status_timeout)


def serial_transport(device: str, baudrate: int, status_timeout: float) -> _EscposDevice:
    from escpos.printer import Serial

    return _EscposDevice(
        Serial(devfile=device, baudrate=baudrate, timeout=status_timeout), status_timeout
    )
