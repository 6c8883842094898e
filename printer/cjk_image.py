"""Chinese text drawn as a bitmap, for printers without a Chinese font (``cjk = "image"``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .profile import PrinterProfile

DOTS = {58: 384, 80: 512}
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)


class NoCJKFont(RuntimeError):
    """No CJK font configured or found; install fonts-wqy-zenhei or set ``font``."""


def find_font(configured: str | None) -> str:
    for candidate in ([configured] if configured else []) + list(FONT_CANDIDATES):
        if candidate and Path(candidate).exists():
            return candidate
    raise NoCJKFont(
        "no CJK font found: apt-get install fonts-wqy-zenhei, or set font in the printer config"
    )


def text_image(text: str, profile: PrinterProfile, size: int = 28) -> Image.Image:
    """One line of text as a 1-bit image as wide as the paper, wrapped if it is longer."""
    font = ImageFont.truetype(find_font(profile.font_path), size)
    width = DOTS[profile.paper_mm]
    rows: list[str] = []
    current = ""
    for ch in text:
        if font.getlength(current + ch) > width and current:
            rows.append(current)
            current = ch
        else:
            current += ch
    rows.append(current)
    line_height = size + 6
    image = Image.new("1", (width, line_height * len(rows)), 1)
    draw = ImageDraw.Draw(image)
    for i, row in enumerate(rows):
        offset = max(0, (width - int(font.getlength(row))) // 2)
        draw.text((offset, i * line_height), row, font=font, fill=0)
    return image
