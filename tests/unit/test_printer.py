"""Ticket layout to exact ESC/POS bytes, status parsing, and the printer config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from printer.config import PrinterConfigError, parse_config
from printer.layout import (
    FS_CHINESE_ON,
    TicketPrint,
    clean,
    encode,
    preview,
    render,
    wait_text,
)
from printer.profile import PrinterProfile
from printer.status import HEALTHY, UNKNOWN, parse
from printer.transports import FileTransport, NetworkTransport
from tests.fakeprinter import qr_payload, strip_escpos

GOLDEN = Path(__file__).parent / "golden"
TICKET = TicketPrint(
    hall_zh="示范政务服务中心",
    hall_en="Demo Service Centre",
    matter_zh="社会保险",
    matter_en="Social insurance",
    number="A023",
    issued_at="2026-03-02 10:05",
    follow_url="https://hall.example.org/t/abc123",
    priority="elderly",
    people_ahead=3,
    estimate_minutes=15,
    estimate_low=10,
    estimate_high=30,
    notice="午休 12:00–13:30（部分窗口）",
)


@pytest.mark.parametrize("paper", [80, 58])
def test_golden_bytes(paper: int) -> None:
    """The exact bytes for a known ticket; regenerate with ONEDOOR_REGOLD=1 after a
    deliberate layout change, and look at the diff."""
    data = render(TICKET, PrinterProfile(paper_mm=paper))  # type: ignore[arg-type]
    golden = GOLDEN / f"ticket-{paper}mm.bin"
    if os.environ.get("ONEDOOR_REGOLD") == "1":
        golden.write_bytes(data)
    assert data == golden.read_bytes()


def test_what_the_bytes_say() -> None:
    data = render(TICKET, PrinterProfile())
    assert data.startswith(b"\x1b@" + FS_CHINESE_ON)
    assert "社会保险".encode("gb18030") in data
    assert "（部分窗口）".encode("gb18030") in data, "CJK punctuation is kept, not '?'"
    assert b"\x1d!3\x1bE\x01\x1ba\x01A023\n" in data, "the number, bold, 4x size on 80 mm"
    assert b"\x1dV" in data[-6:], "cut at the end"
    text = strip_escpos(data).decode("gb18030")
    for needed in ("示范政务服务中心", "A023", "老年人优先", "前面还有 3 人", "预计等候约 10-30 分钟",
                   "2026-03-02 10:05", "扫码查看排队进度"):  # fmt: skip
        assert needed in text
    assert qr_payload(data) == TICKET.follow_url
    assert b'\x1d!"\x1bE\x01\x1ba\x01A023' in render(TICKET, PrinterProfile(paper_mm=58)), (
        "3x on 58"
    )


def test_gbk_printers_get_a_visible_question_mark_for_what_they_cannot_print() -> None:
    assert encode("社保 😀", "gbk") == "社保 ?".encode("gbk")
    assert encode("社保 😀", "gb18030").decode("gb18030") == "社保 😀"


def test_control_characters_in_data_cannot_become_printer_commands() -> None:
    evil = TicketPrint(
        **{**TICKET.to_json(), "hall_zh": "大厅\x1b@\x1dV\x00", "notice": "\x10\x04\x01"}
    )
    data = render(evil, PrinterProfile())
    assert "大厅 @ V ".encode("gb18030") in data
    assert data.count(b"\x1dV") == 1, "only our own cut"
    assert b"\x10\x04" not in data


def test_image_mode_and_image_qr_for_printers_without_chinese_or_qr() -> None:
    data = render(TICKET, PrinterProfile(cjk="image", qr="image"))
    assert FS_CHINESE_ON not in data
    assert "社会保险".encode("gb18030") not in data, "the text is drawn, not encoded"
    assert b"\x1dv0" in data, "raster images (text and QR)"
    assert qr_payload(data) is None


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), st.text(max_size=40), st.sampled_from(["gb18030", "gbk"]))
def test_any_text_renders_and_never_smuggles_commands(
    text: str, matter: str, encoding: str
) -> None:
    ticket = TicketPrint(
        **{**TICKET.to_json(), "hall_zh": text, "matter_zh": matter, "notice": text}
    )
    data = render(ticket, PrinterProfile(encoding=encoding))  # type: ignore[arg-type]
    assert b"\x1dV" in data[-6:]
    assert data.count(b"\x1dV") == 1
    assert all(ord(ch) >= 32 for ch in clean(text) if ch not in "\x7f")
    preview(ticket)


def test_preview_is_readable_text() -> None:
    text = preview(TICKET)
    assert text.splitlines()[:3] == [
        "示范政务服务中心",
        "Demo Service Centre",
        "社会保险 Social insurance",
    ]
    assert "    A023" in text and "[QR] https://hall.example.org/t/abc123" in text


@pytest.mark.parametrize(
    ("answers", "expected", "problem"),
    [
        ((0x12, 0x12, 0x12), ("online", "ok", "closed"), None),
        ((0x1A, 0x32, 0x72), ("offline", "out", "closed"), "paper out"),
        ((0x12, 0x12, 0x1E), ("online", "near_end", "closed"), "paper nearly out"),
        ((0x1A, 0x16, 0x12), ("offline", "ok", "open"), "cover open"),
        ((None, None, None), ("unknown", "unknown", "unknown"), "printer not answering"),
        ((0xFF, 0x12, 0x12), ("unknown", "unknown", "unknown"), "printer not answering"),
        ((0x12, None, None), ("online", "unknown", "unknown"), None),
    ],
)
def test_status_bytes(
    answers: tuple[int | None, ...], expected: tuple[str, ...], problem: str | None
) -> None:
    status = parse(*answers)
    assert (status.online, status.paper, status.cover) == expected
    assert status.problem == problem


def test_silent_is_never_ok() -> None:
    assert UNKNOWN.problem == "printer not answering"
    assert HEALTHY.problem is None and HEALTHY.can_print
    assert not parse(0x1A, 0x32, 0x72).can_print


def test_network_status_of_a_printer_that_is_not_there() -> None:
    status = NetworkTransport("127.0.0.1", 9, timeout=0.5).status()
    assert status.online == "offline"


def test_file_printer_writes_bytes_and_preview(tmp_path: Path) -> None:
    FileTransport(tmp_path).print_job(7, b"\x1b@bytes", TICKET)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.rsplit("-", 1)[-1] for n in names] == ["job7.bin", "job7.txt"]
    assert "A023" in next(tmp_path.glob("*.txt")).read_text(encoding="utf-8")


def test_config(tmp_path: Path) -> None:
    config = parse_config(
        {"printer": {"transport": "network", "host": "10.0.0.9", "paper_mm": 58}}, tmp_path
    )
    assert config.kind == "network" and config.profile.paper_mm == 58
    assert parse_config({"printer": {}}, tmp_path).kind == "file"
    with pytest.raises(PrinterConfigError, match=r"printer\.host is needed"):
        parse_config({"printer": {"transport": "network"}}, tmp_path)
    with pytest.raises(PrinterConfigError, match=r"printer\.paper_mm = 57"):
        parse_config({"printer": {"paper_mm": 57}}, tmp_path)
    with pytest.raises(PrinterConfigError, match=r"\[printer\] table"):
        parse_config({}, tmp_path)


def test_the_wait_is_printed_as_the_range_told_or_as_minutes_from_an_older_server() -> None:
    assert wait_text(TICKET) == "预计等候约 10-30 分钟 · about 10-30 min"
    soon = TicketPrint(**{**TICKET.to_json(), "estimate_low": 0, "estimate_high": 0})
    assert wait_text(soon) == "即将叫号 · you are next"
    older = TicketPrint(**{**TICKET.to_json(), "estimate_low": None, "estimate_high": None})
    assert wait_text(older) == "预计等候约 15 分钟 · about 15 min"
    unknown = TicketPrint(
        **{
            **TICKET.to_json(),
            "estimate_minutes": None,
            "estimate_low": None,
            "estimate_high": None,
        }
    )
    assert wait_text(unknown) is None
    assert "预计等候" not in strip_escpos(render(unknown, PrinterProfile())).decode("gb18030")
