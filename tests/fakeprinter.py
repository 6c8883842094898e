"""A network thermal printer for the tests: a real TCP server on 127.0.0.1 that records
what it is sent and answers ESC/POS status queries (DLE EOT n) as it is told."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field

# DLE EOT 1 / 2 / 4 answers per mode; None means the printer stays silent.
ANSWERS: dict[str, dict[int, int | None]] = {
    "online": {1: 0x12, 2: 0x12, 4: 0x12},
    "paper_out": {1: 0x1A, 2: 0x32, 4: 0x72},
    "cover_open": {1: 0x1A, 2: 0x16, 4: 0x12},
    "silent": {1: None, 2: None, 4: None},
}


@dataclass
class FakePrinter:
    mode: str = "online"
    status_delay: float = 0.0
    jobs: list[bytes] = field(default_factory=list)
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
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        printed = bytearray()
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                data = bytes(chunk)
                # Status queries are answered at once and are not printed.
                for match in re.finditer(rb"\x10\x04([\x01\x02\x04])", data):
                    self.asked.set()
                    answer = ANSWERS[self.mode][match.group(1)[0]]
                    if answer is not None:
                        time.sleep(self.status_delay)
                        try:
                            conn.sendall(bytes([answer]))
                        except OSError:
                            return  # the agent went away while we dawdled
                printed += re.sub(rb"\x10\x04[\x01\x02\x04]", b"", data)
        if printed:
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
