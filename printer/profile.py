"""How one printer wants its tickets: paper, encoding, how Chinese text and QR codes are
printed. Its own module so that the layout and the CJK image drawing both read it without
importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class PrinterProfile:
    """How one printer wants its tickets (from the agent's printer config)."""

    paper_mm: Literal[58, 80] = 80
    encoding: Literal["gb18030", "gbk"] = "gb18030"
    cjk: Literal["native", "image"] = "native"
    """native: the printer's own Chinese font (FS &); image: text drawn with Pillow."""
    qr: Literal["native", "image"] = "native"
    font_path: str | None = None
    """A CJK TrueType font for ``cjk = "image"`` (e.g. fonts-wqy-zenhei)."""
    escpos_profile: str = field(default="TM-T88V")
