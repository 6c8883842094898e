"""The demo hall: 示范政务服务中心 / Demo Service Centre, ready to try within a minute."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from booking import config as booking_config
from queue_server.db.tables import HallRow
from queue_server.domain.model import DEFAULT_PRIORITY_BOOSTS
from queue_server.service import accounts, hall_config
from queue_server.service.accounts import DeviceKind, Role
from queue_server.service.bus import Bus
from queue_server.service.hall_config import CounterOut, ServiceOut
from queue_server.service.unit_of_work import UnitOfWork

ALL_DAY = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

# (zh, en, prefix, typical minutes, documents)
MATTERS = [
    ("社会保险", "Social insurance", "A", 8, ["身份证 ID card", "社保卡 social security card"]),
    (
        "户籍办理",
        "Household registration",
        "B",
        12,
        ["身份证 ID card", "户口簿 household register"],
    ),
    ("营业执照", "Business licence", "C", 20, ["身份证 ID card", "经营场所证明 proof of premises"]),
    ("税务办理", "Tax", "D", 10, ["身份证 ID card", "税务登记信息 tax registration"]),
    ("医疗保险", "Medical insurance", "E", 8, ["身份证 ID card", "医保卡 medical insurance card"]),
    ("综合咨询", "Enquiries", "F", 5, []),
    # The can't-get-it-done desk: visits not done elsewhere are sent on here (and a visitor
    # turned away on an earlier day may take a ticket for it).
    ("办不成事反映", "Can't get it done", "G", 15, []),
]
DESK = 6  # the index of the desk matter above
# (number, name, {matter index: level}) — 综合窗口 serve many matters.
COUNTERS = [
    (1, "社保窗口 Social insurance", {0: "primary", 4: "secondary"}),
    (2, "社保医保窗口 Social & medical insurance", {0: "primary", 4: "primary"}),
    (3, "户籍窗口 Household registration", {1: "primary"}),
    (4, "户籍窗口 Household registration", {1: "primary", 5: "secondary"}),
    (5, "商事登记窗口 Business licence", {2: "primary", 3: "secondary"}),
    (6, "税务窗口 Tax", {3: "primary", 2: "secondary"}),
    (7, "综合窗口 General counter", {i: "secondary" for i in range(6)} | {5: "primary"}),
    (
        8,
        "办不成事反映窗口 Can't-get-it-done desk",
        {DESK: "primary", 5: "secondary", 0: "secondary", 1: "secondary"},
    ),
]


# Matters booked online (by index), with their rules: 30-minute slots, a share kept for
# walk-ins, bookable a week ahead from 08:00.
BOOKABLE = {
    0: {"slot_minutes": 30, "per_counter": 2, "walk_in_share": 0.3, "window_days": 7},
    1: {"slot_minutes": 30, "per_counter": 2, "walk_in_share": 0.3, "window_days": 7},
    2: {"slot_minutes": 60, "capacity": 2, "walk_in_share": 0, "window_days": 14},
}
# Like the hall's hours, the demo's slots run around the clock, so booking and check-in can
# be tried at any hour.


@dataclass(frozen=True)
class DemoHall:
    hall_id: int
    manager: str
    manager_password: str
    clerk: str
    clerk_password: str
    kiosk_token: str
    board_token: str
    printer_token: str
    layout: Layout | None = None


async def _has_halls(uow: UnitOfWork) -> bool:
    return bool(await uow.session.scalar(select(func.count()).select_from(HallRow)))


@dataclass(frozen=True)
class Layout:
    """A hall made like the demo's: its id, matters (as in ``MATTERS``) and counters."""

    hall_id: int
    services: list[ServiceOut]
    counters: list[CounterOut]


async def create_layout(
    bus: Bus, timezone: str = "Asia/Shanghai", name_zh: str = "示范政务服务中心",
    name_en: str = "Demo Service Centre",
) -> Layout:  # fmt: skip
    """A hall with the demo's matters, counters and booking rules (no accounts)."""
    hall = await bus.run(
        hall_config.create_hall,
        {
            "name_zh": name_zh,
            "name_en": name_en,
            "timezone": timezone,
            # Open around the clock so the demo can be tried at any hour.
            "opening_hours": ALL_DAY,
            "priority_boosts": dict(DEFAULT_PRIORITY_BOOSTS),
            "secondary_after_minutes": 20,
        },
    )
    services = []
    for index, (zh, en, prefix, minutes, documents) in enumerate(MATTERS):
        services.append(
            await bus.run(
                hall_config.create_service,
                hall.id,
                {
                    "name_zh": zh,
                    "name_en": en,
                    "prefix": prefix,
                    "typical_minutes": minutes,
                    "documents": documents,
                    "desk": index == DESK,
                },
            )
        )
    counters = []
    for number, name, profile in COUNTERS:
        counters.append(
            await bus.run(
                hall_config.create_counter,
                hall.id,
                number,
                name,
                [(services[i].id, level) for i, level in profile.items()],
            )
        )
    for index, rules in BOOKABLE.items():
        await bus.run(booking_config.set_booking_rules, hall.id, services[index].id, rules)
    return Layout(hall.id, services, counters)


async def load_demo(bus: Bus, timezone: str = "Asia/Shanghai") -> DemoHall | None:
    """Create the demo hall if the database has no hall yet; None when it already has one."""
    if await bus.run(_has_halls):
        return None
    hall = await create_layout(bus, timezone)
    manager_password = accounts.generate_password()
    clerk_password = accounts.generate_password()
    await bus.run(
        accounts.create_user,
        "manager",
        manager_password,
        Role.MANAGER,
        hall.hall_id,
        "演示经理 Demo manager",
    )
    await bus.run(
        accounts.create_user,
        "clerk",
        clerk_password,
        Role.CLERK,
        hall.hall_id,
        "演示窗口人员 Demo clerk",
    )
    kiosk = await bus.run(
        accounts.create_device, hall.hall_id, DeviceKind.KIOSK, "大厅取号机 Kiosk 1"
    )
    board = await bus.run(
        accounts.create_device, hall.hall_id, DeviceKind.BOARD, "大厅显示屏 Board 1"
    )
    printer = await bus.run(
        accounts.create_device,
        hall.hall_id,
        DeviceKind.PRINTER,
        "取号机打印机 Kiosk 1 printer",
        kiosk.id,
    )
    return DemoHall(
        hall.hall_id, "manager", manager_password, "clerk", clerk_password, kiosk.token,
        board.token, printer.token, hall,
    )  # fmt: skip


def describe(demo: DemoHall) -> str:
    return "\n".join(
        [
            f"Demo hall created: 示范政务服务中心 / Demo Service Centre (hall id {demo.hall_id})",
            f"  manager  login: {demo.manager} / {demo.manager_password}",
            f"  clerk    login: {demo.clerk} / {demo.clerk_password}",
            f"  kiosk    token: {demo.kiosk_token}",
            f"  board    token: {demo.board_token}",
            f"  printer  token: {demo.printer_token}",
            "These are shown once and kept nowhere else but the file below.",
        ]
    )


def save_printer_token(token: str, var_dir: Path) -> Path:
    """Where ``onedoor serve --demo-printer`` finds the demo's print agent token."""
    path = var_dir / "demo-printer-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return path


def save_credentials(text: str, var_dir: Path) -> Path:
    """Keep the demo's credentials in a file only the owner can read, for a later look."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "demo-credentials.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path
