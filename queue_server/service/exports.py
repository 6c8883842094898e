"""Tables as files a manager opens in a spreadsheet: CSV (UTF-8 with a byte-order mark, so
Excel shows Chinese right) and XLSX (openpyxl), headings in the page's language.

Cells that would start a formula (``=``, ``+``, ``-``, ``@``) are written as text: a
visitor's comment or a clerk's note must never run in the manager's spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Sheet:
    title: str
    headings: list[str]
    rows: list[list[Any]]


def _safe(value: Any) -> Any:
    if isinstance(value, dict):
        value = "; ".join(f"{k}: {v}" for k, v in value.items())
    elif isinstance(value, list):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(sheet: Sheet) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(sheet.headings)
    for row in sheet.rows:
        writer.writerow(["" if v is None else _safe(v) for v in row])
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(sheets: Sequence[Sheet]) -> bytes:
    book = Workbook()
    first = True
    for sheet in sheets:
        ws = book.active if first else book.create_sheet()
        first = False
        assert ws is not None
        ws.title = sheet.title[:31]
        ws.append(sheet.headings)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in sheet.rows:
            ws.append([_safe(v) for v in row])
        ws.freeze_panes = "A2"
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column)
            ws.column_dimensions[column[0].column_letter].width = min(60, max(8, width + 2))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
