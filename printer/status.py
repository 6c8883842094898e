"""Printer status from ESC/POS real-time status queries (DLE EOT n).

A printer that answers nothing is "unknown", never "OK": python-escpos reports paper OK
for a silent printer, which would hide a dead printer behind a happy kiosk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

QUERY_PRINTER = b"\x10\x04\x01"
QUERY_OFFLINE_CAUSE = b"\x10\x04\x02"
QUERY_PAPER = b"\x10\x04\x04"


@dataclass(frozen=True)
class PrinterStatus:
    online: Literal["online", "offline", "unknown"]
    paper: Literal["ok", "near_end", "out", "unknown"]
    cover: Literal["closed", "open", "unknown"]

    @property
    def can_print(self) -> bool:
        """False only when the printer said it cannot (offline, out of paper, cover open)."""
        return self.online != "offline" and self.paper != "out" and self.cover != "open"

    @property
    def problem(self) -> str | None:
        """What staff should be told, or None when all is well."""
        if self.paper == "out":
            return "paper out"
        if self.cover == "open":
            return "cover open"
        if self.online == "offline":
            return "printer offline"
        if self.online == "unknown":
            return "printer not answering"
        if self.paper == "near_end":
            return "paper nearly out"
        return None

    def to_json(self) -> dict[str, str]:
        return {"online": self.online, "paper": self.paper, "cover": self.cover}


UNKNOWN = PrinterStatus("unknown", "unknown", "unknown")
HEALTHY = PrinterStatus("online", "ok", "closed")


def _valid(byte: int | None) -> bool:
    # Every status byte has bits 1 and 4 set and bits 0 and 7 clear.
    return byte is not None and byte & 0x93 == 0x12


def parse(printer: int | None, offline_cause: int | None, paper: int | None) -> PrinterStatus:
    """The status from the answers to DLE EOT 1, 2 and 4 (None: no or garbled answer)."""
    if not _valid(printer):
        return UNKNOWN
    assert printer is not None
    online: Literal["online", "offline"] = "offline" if printer & 0x08 else "online"
    cover: Literal["closed", "open", "unknown"] = "unknown"
    if _valid(offline_cause):
        assert offline_cause is not None
        cover = "open" if offline_cause & 0x04 else "closed"
    paper_state: Literal["ok", "near_end", "out", "unknown"] = "unknown"
    if _valid(paper):
        assert paper is not None
        if paper & 0x60:
            paper_state = "out"
        elif paper & 0x0C:
            paper_state = "near_end"
        else:
            paper_state = "ok"
    elif offline_cause is not None and _valid(offline_cause) and offline_cause & 0x20:
        paper_state = "out"
    return PrinterStatus(online, paper_state, cover)
