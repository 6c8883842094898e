"""The print agent's printer config (TOML), documented in the README.

[printer]
transport = "network"      # network | usb | serial | file
host = "192.168.1.50"      # network
port = 9100
paper_mm = 80              # 80 or 58
encoding = "gb18030"       # gb18030 or gbk, as the printer's Chinese font expects
cjk = "native"             # native (FS &) or image (drawn with a CJK font)
qr = "native"              # native (GS ( k) or image
status_timeout = 0.5       # seconds to wait for each status answer
# usb_vendor = 0x0416, usb_product = 0x5011          (usb)
# serial_device = "/dev/ttyUSB0", baudrate = 9600    (serial)
# folder = "var/tickets"                             (file)
# font = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"  (cjk = "image")
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .profile import PrinterProfile
from .transports import FileTransport, NetworkTransport, Transport, serial_transport, usb_transport


class PrinterConfigError(ValueError):
    """The printer config is wrong; the message names the key and what it must be."""


@dataclass(frozen=True)
class PrinterConfig:
    profile: PrinterProfile
    transport: Transport
    kind: str


def _choice(table: dict[str, Any], key: str, default: Any, allowed: tuple[Any, ...]) -> Any:
    value = table.get(key, default)
    if value not in allowed:
        raise PrinterConfigError(
            f"printer.{key} = {value!r}: use one of {', '.join(map(repr, allowed))}"
        )
    return value


def parse_config(data: dict[str, Any], base: Path) -> PrinterConfig:
    """Build the printer from a parsed TOML document (paths relative to ``base``)."""
    table = data.get("printer")
    if not isinstance(table, dict):
        raise PrinterConfigError("the config needs a [printer] table")
    kind = _choice(table, "transport", "file", ("network", "usb", "serial", "file"))
    profile = PrinterProfile(
        paper_mm=_choice(table, "paper_mm", 80, (58, 80)),
        encoding=_choice(table, "encoding", "gb18030", ("gb18030", "gbk")),
        cjk=_choice(table, "cjk", "native", ("native", "image")),
        qr=_choice(table, "qr", "native", ("native", "image")),
        font_path=table.get("font"),
    )
    timeout = float(table.get("status_timeout", 0.5))
    transport: Transport
    try:
        if kind == "network":
            transport = NetworkTransport(
                str(table["host"]), int(table.get("port", 9100)), status_timeout=timeout
            )
        elif kind == "usb":
            transport = usb_transport(int(table["usb_vendor"]), int(table["usb_product"]), timeout)
        elif kind == "serial":
            transport = serial_transport(
                str(table["serial_device"]), int(table.get("baudrate", 9600)), timeout
            )
        else:
            transport = FileTransport(base / str(table.get("folder", "var/tickets")))
    except KeyError as missing:
        raise PrinterConfigError(
            f"printer.{missing.args[0]} is needed for transport {kind!r}"
        ) from None
    return PrinterConfig(profile, transport, kind)


def load_config(path: Path) -> PrinterConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PrinterConfigError(f"{path}: {exc}") from None
    return parse_config(data, Path.cwd())
