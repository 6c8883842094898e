"""A ticket as structured data, and its ESC/POS rendering for 58 and 80 mm paper.

python-escpos builds the commands (sizes, alignment, QR, cut) on its ``Dummy`` printer;
Chinese text is written as raw bytes after selecting the printer's Chinese mode
(``FS &``), because python-escpos never sends that command and turns CJK punctuation
into ``?``. Printers without a Chinese font get the text drawn as an image instead.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from escpos.printer import Dummy

from .profile import PrinterProfile as PrinterProfile  # re-exported: it was defined here

FS_CHINESE_ON = b"\x1c\x26"
FS_CHINESE_OFF = b"\x1c\x2e"
COLUMNS = {58: 32, 80: 48}
NUMBER_SIZE = {58: 3, 80: 4}
PRIORITY_ZH = {"elderly": "老年人优先", "disability": "残疾人优先", "pregnancy": "孕妇优先"}
KIND_ZH = {"appointment": "预约", "transfer": "转办", "escalation": "帮办", "remote": "远程"}


@dataclass(frozen=True)
class TicketPrint:
    """Everything printed on a ticket; the print job's payload."""

    hall_zh: str
    hall_en: str
    matter_zh: str
    matter_en: str
    number: str
    issued_at: str
    """Local time of issue, as printed (``2026-03-02 10:05``)."""
    follow_url: str
    kind: str = "walk_in"
    priority: str = "none"
    people_ahead: int | None = None
    estimate_minutes: int | None = None
    estimate_low: int | None = None
    estimate_high: int | None = None
    """The range told (estimate v2); an agent given only the minutes prints those."""
    appointment_at: str | None = None
    notice: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketPrint:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def clean(text: str) -> str:
    """Printable text: control characters (which could smuggle printer commands) become
    spaces; nothing else is dropped."""
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") else ch for ch in text
    )


def encode(text: str, encoding: str) -> bytes:
    """Bytes for the printer's Chinese mode; characters it cannot encode print as ``?``."""
    return clean(text).encode(encoding, errors="replace")


def lines(ticket: TicketPrint) -> list[tuple[str, str]]:
    """The ticket's text lines (style, text) below the number, in print order."""
    out: list[tuple[str, str]] = []
    if ticket.priority != "none":
        out.append(
            ("mark", f"{PRIORITY_ZH.get(ticket.priority, '优先')} · priority: {ticket.priority}")
        )
    if ticket.kind in KIND_ZH:
        out.append(("mark", f"{KIND_ZH[ticket.kind]} · {ticket.kind.replace('_', '-')}"))
    if ticket.appointment_at:
        out.append(("text", f"预约时间 {ticket.appointment_at} Appointment"))
    if ticket.people_ahead is not None:
        out.append(
            ("text", f"前面还有 {ticket.people_ahead} 人 · {ticket.people_ahead} ahead of you")
        )
    wait = wait_text(ticket)
    if wait is not None:
        out.append(("text", wait))
    out.append(("text", f"取号时间 Issued {ticket.issued_at}"))
    return out


def wait_text(ticket: TicketPrint) -> str | None:
    """The estimated wait as printed: a range when the server sent one (ASCII hyphen: not
    every printer's code page has a dash)."""
    low, high = ticket.estimate_low, ticket.estimate_high
    if low is not None and high is not None:
        if high <= 0:
            return "即将叫号 · you are next"
        return f"预计等候约 {low}-{high} 分钟 · about {low}-{high} min"
    if ticket.estimate_minutes is not None:
        minutes = ticket.estimate_minutes
        return f"预计等候约 {minutes} 分钟 · about {minutes} min"
    return None


def preview(ticket: TicketPrint) -> str:
    """A readable text version of the ticket (the file printer writes it beside the bytes)."""
    body = [
        ticket.hall_zh,
        ticket.hall_en,
        f"{ticket.matter_zh} {ticket.matter_en}",
        "",
        f"    {ticket.number}",
        "",
        *(text for _, text in lines(ticket)),
        f"[QR] {ticket.follow_url}",
        "扫码查看排队进度 Scan to follow your turn",
    ]
    if ticket.notice:
        body.append(ticket.notice)
    return "\n".join(body) + "\n"


def _text(p: Dummy, text: str, profile: PrinterProfile) -> None:
    if profile.cjk == "image":
        from .cjk_image import text_image

        p.image(text_image(clean(text), profile), center=True)
    else:
        p._raw(encode(text, profile.encoding) + b"\n")


def render(ticket: TicketPrint, profile: PrinterProfile) -> bytes:
    """The ESC/POS bytes of ``ticket`` for ``profile``'s printer, ending with a cut."""
    p = Dummy(profile=profile.escpos_profile)
    p.hw("INIT")
    if profile.cjk == "native":
        p._raw(FS_CHINESE_ON)
    p.set(align="center", bold=True, double_height=True)
    _text(p, ticket.hall_zh, profile)
    p.set(align="center", normal_textsize=True)
    _text(p, ticket.hall_en, profile)
    p._raw(b"-" * COLUMNS[profile.paper_mm] + b"\n")
    p.set(align="center", bold=True, double_height=True, double_width=True)
    _text(p, ticket.matter_zh, profile)
    p.set(align="center", normal_textsize=True)
    _text(p, ticket.matter_en, profile)
    size = NUMBER_SIZE[profile.paper_mm]
    p.set(align="center", bold=True, custom_size=True, width=size, height=size)
    p._raw(encode(ticket.number, "ascii") + b"\n")
    p.set(align="center", normal_textsize=True, bold=False)
    for style, text in lines(ticket):
        p.set(align="center", invert=style == "mark", bold=style == "mark")
        _text(p, text, profile)
    p.set(align="center", invert=False, bold=False)
    p.qr(ticket.follow_url, native=profile.qr == "native", size=6 if profile.paper_mm == 80 else 5,
         center=profile.qr == "image")  # fmt: skip
    _text(p, "扫码查看排队进度 Scan to follow your turn", profile)
    if ticket.notice:
        p.set(align="left")
        _text(p, ticket.notice, profile)
    if profile.cjk == "native":
        p._raw(FS_CHINESE_OFF)
    p.cut()
    return bytes(p.output)
