"""A network thermal printer for the tests: a real TCP server on 127.0.0.1 that records
what it is sent and answers ESC/POS status queries (DLE EOT n) as it is told."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

# DLE EOT 1 / 2 / 4 answers per mode; None means the printer stays silent.
ANSWERS: dict[str, dict[int, int | None]] = {
    "online": {1: 0x12, 2: 0x12, 4: 0x12},
    "paper_out": {1: 0x1A, 2: 0x32, 4: 0x72},
    "cover_open": {1: 0x1A, 2: 0x16, 4: 0x12},
    "silent": {1: None, 2: None, 4: None},
    # Online until the cable is pulled in the middle of the next job, then unplugged.
    "pull_cable": {1: 0x12, 2: 0x12, 4: 0x12},
    "unplugged": {1: None, 2: None, 4: None},
}
QUERY = re.compile(rb"\x10\x04[\x01\x02\x04]")
TORN_AFTER = 64
"""In ``pull_cable`` mode, the bytes of a job read before the cable comes out."""


def _reset(conn: socket.socket) -> None:
    """Drop the connection as a pulled cable does: a reset, not a polite close."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@dataclass
class FakePrinter:
    """``mode`` may change at any time. ``pull_cable``: status queries are answered as
    online, the next job's first bytes are read, then the connection is reset and the
    printer is ``unplugged``: every connection is reset at once until ``mode`` changes."""

    mode: str = "online"
    status_delay: float = 0.0
    jobs: list[bytes] = field(default_factory=list)
    """Every job received whole (its connection closed after it), status queries removed."""
    torn: list[bytes] = field(default_factory=list)
    """The first bytes of each job whose cable was pulled (never printed)."""
    port: int = 0
    asked: threading.Event = field(default_factory=threading.Event)
    """Set when a status query arrives (clear it to see the next one)."""

    def start(self) -> FakePrinter:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "unplugged":
                _reset(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        printed = bytearray()
        carry = b""  # a status query cut in two by recv
        with conn:
            gone = False
            while not gone:
                pulling = self.mode == "pull_cable"
                try:
                    chunk = conn.recv(TORN_AFTER if pulling else 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data = carry + chunk
                held = 2 if data.endswith(b"\x10\x04") else 1 if data.endswith(b"\x10") else 0
                data, carry = data[: len(data) - held], data[len(data) - held :]
                if pulling and QUERY.sub(b"", data):
                    # Job bytes: the cable comes out now, the rest of the job never arrives.
                    self.mode = "unplugged"
                    self.torn.append(bytes(printed + data))
                    _reset(conn)
                    return
                # Status queries are answered at once and are not printed.
                for match in QUERY.finditer(data):
                    self.asked.set()
                    answer = ANSWERS[self.mode][match.group(0)[2]]
                    if answer is not None:
                        time.sleep(self.status_delay)
                        try:
                            conn.sendall(bytes([answer]))
                        except OSError:
                            gone = True  # the agent went away while we dawdled
                            break
                printed += QUERY.sub(b"", data)
        printed += carry
        if printed:
            # What arrived is printed, whether or not the agent stayed for the answer.
            self.jobs.append(bytes(printed))


def strip_escpos(data: bytes) -> bytes:
    """The printable bytes of a job: ESC/POS commands removed (those our layout uses)."""
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x1B:  # ESC x [n]
            i += 2 if data[i + 1] in b"@" else 3
        elif b == 0x1C:  # FS & / FS .
            i += 2
        elif b == 0x1D:  # GS
            cmd = data[i + 1]
            if cmd == ord("("):  # GS ( k pL pH ...
                i += 5 + data[i + 3] + data[i + 4] * 256
            elif cmd == ord("v"):  # GS v 0 m xL xH yL yH data
                width = data[i + 4] + data[i + 5] * 256
                height = data[i + 6] + data[i + 7] * 256
                i += 8 + width * height
            else:
                i += 3
        else:
            out.append(b)
            i += 1
    return bytes(out)


def qr_payload(data: bytes) -> str | None:
    """What the native QR command stores (GS ( k … 1 P 0 <payload>)."""
    match = re.search(rb"\x1d\(k(..)1P0", data, re.S)
    if match is None:
        return None
    length = match.group(1)[0] + match.group(1)[1] * 256 - 3
    start = match.end()
    return data[start : start + length].decode()
