"""A scenario measured from a hall's history, on SQLite and PostgreSQL: two weekdays of real
tickets issued, called, served and transferred (and bookings kept, missed and cancelled)
under a moving clock, then what ``onedoor simulate --from-hall`` would simulate from them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking import config, jobs
from booking.checkin import CheckIn, check_in
from booking.domain.rules import rules_from_json
from booking.service import BookSlot, CancelBooking, book_slot, cancel_booking
from queue_server.clock import FixedClock
from queue_server.domain.model import Outcome, ServiceLevel
from queue_server.service import accounts, commands, hall_config
from queue_server.service.bus import Bus
from queue_server.service.errors import Invalid, NotFound
from queue_server.simulation.history import scenario_from_hall
from queue_server.simulation.runner import run
from queue_server.simulation.scenario import Scenario

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_8_TO_6 = {d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
THURSDAY, FRIDAY, SATURDAY = date(2026, 2, 26), date(2026, 2, 27), date(2026, 2, 28)
# A's services alternate between these (minutes); B's all take 5, C's 4.
A_MINUTES = (6.0, 9.0)


def at(day: date, hour: int, minute: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    """``hour:minute`` on ``day`` in the hall's time (Shanghai unless ``tz``), as UTC."""
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


@dataclass
class Hall:
    """A hall open weekdays 08:00-18:00: A (bookable) and B at counters 1 and 2, C
    (enquiries) only as counter 1's secondary matter, and counter 3 serving only D, which
    is no longer active. Keeps what the test served, to compare with what was measured."""

    bus: Bus
    clock: FixedClock
    timezone: str = "Asia/Shanghai"
    id: int = 0
    matters: dict[str, int] = field(default_factory=dict)
    desks: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Counter number to (counter id, clerk id)."""
    kiosk: int = 0
    prefix_of: dict[int, str] = field(default_factory=dict)
    """Ticket id to its matter's prefix."""
    a_served: list[float] = field(default_factory=list)

    async def build(self) -> Hall:
        hall = await self.bus.run(
            hall_config.create_hall,
            {"name_zh": "历史大厅", "name_en": "History hall", "timezone": self.timezone,
             "opening_hours": WEEKDAYS_8_TO_6, "priority_boosts": {"elderly": 25, "disability": 20},
             "secondary_after_minutes": 15},
        )  # fmt: skip
        self.id = hall.id
        for prefix, name, minutes in [
            ("A", "Social insurance", 10), ("B", "Tax", 6), ("C", "Enquiries", 4),
            ("D", "Old permits", 8),
        ]:  # fmt: skip
            matter = await self.bus.run(
                hall_config.create_service,
                hall.id,
                {"name_zh": name, "name_en": name, "prefix": prefix, "typical_minutes": minutes},
            )
            self.matters[prefix] = matter.id
        await self.bus.run(
            hall_config.update_service, hall.id, self.matters["D"], {"active": False}
        )
        await self.bus.run(
            config.set_booking_rules,
            hall.id,
            self.matters["A"],
            {"slot_minutes": 30, "capacity": 3, "target_load": 0.9},
        )
        profiles = {
            1: {"A": "primary", "C": "secondary"},
            2: {"B": "primary", "A": "secondary"},
            3: {"D": "primary"},
        }
        for number, profile in profiles.items():
            counter = await self.bus.run(
                hall_config.create_counter, hall.id, number, f"窗口 {number}",
                [(self.matters[p], level) for p, level in profile.items()],
            )  # fmt: skip
            clerk = await self.bus.run(
                accounts.create_user, f"clerk{number}", "clerk-password", accounts.Role.CLERK,
                hall.id,
            )  # fmt: skip
            self.desks[number] = (counter.id, clerk.id)
        kiosk = await self.bus.run(
            accounts.create_device, hall.id, accounts.DeviceKind.KIOSK, "kiosk"
        )
        self.kiosk = kiosk.id
        return self

    async def open_counters(self) -> None:
        for counter_id, clerk_id in self.desks.values():
            await self.bus.execute(commands.OpenCounter(counter_id, clerk_id))

    async def issue(self, when: datetime, prefix: str, priority: str = "none") -> None:
        self.clock.set(when)
        ticket = await self.bus.execute(
            commands.IssueTicket(
                self.id, self.matters[prefix], commands.Actor(device_id=self.kiosk),
                priority=priority,
            )
        )  # fmt: skip
        self.prefix_of[ticket] = prefix

    async def walk_ins(
        self, day: date, hour: int, plan: str, priorities: dict[int, str] | None = None
    ) -> None:
        """Walk-ins every 4 minutes from ``hour``: one per letter of ``plan`` (``AAB``)."""
        for index, prefix in enumerate(plan):
            when = at(day, hour, tz=ZoneInfo(self.timezone)) + timedelta(minutes=4 * index)
            await self.issue(when, prefix, (priorities or {}).get(index, "none"))

    async def serve_all(self, start: datetime, transfer_nth_a: int | None = None) -> None:
        """Counters 1 and 2 take turns calling until nobody waits: each call takes a
        minute, then the service its matter's minutes. The ``transfer_nth_a``-th A visit
        served is transferred on to C instead of finished."""
        self.clock.set(start)
        a_calls = 0
        while True:
            called = False
            for number in (1, 2):
                counter_id, clerk_id = self.desks[number]
                result = await self.bus.execute(commands.CallNext(counter_id, clerk_id))
                if result.ticket_id is None:
                    continue
                called = True
                prefix = self.prefix_of[result.ticket_id]
                self.clock.advance(minutes=1)
                await self.bus.execute(commands.StartService(counter_id, clerk_id))
                if prefix == "A":
                    a_calls += 1
                    if a_calls == transfer_nth_a:
                        self.clock.advance(minutes=3)
                        _, follow_on = await self.bus.execute(
                            commands.TransferTicket(counter_id, clerk_id, self.matters["C"])
                        )
                        self.prefix_of[follow_on] = "C"
                        continue
                    minutes = A_MINUTES[len(self.a_served) % 2]
                    self.a_served.append(minutes)
                else:
                    minutes = 5.0 if prefix == "B" else 4.0
                self.clock.advance(minutes=minutes)
                await self.bus.execute(commands.FinishService(counter_id, clerk_id, Outcome.DONE))
            if not called:
                return

    async def book(self, slot: datetime, phone: str) -> str:
        made = await self.bus.run(
            book_slot, BookSlot(self.id, self.matters["A"], slot, "王", phone)
        )
        return made.code


async def two_days_of_history(bus: Bus, clock: FixedClock) -> Hall:
    """Thursday: 19 visits, Friday: 21 (one of them booked, one transferred on to C);
    walk-ins peak at 10:00 both days. An old Tax visit of January lies outside 28 days."""
    clock.set(at(date(2026, 1, 20), 9))
    hall = await Hall(bus, clock).build()
    await hall.open_counters()
    await hall.issue(at(date(2026, 1, 20), 9), "B")
    await hall.serve_all(at(date(2026, 1, 20), 9, 30))

    # Thursday: book three of Friday's slots; one is cancelled at the desk.
    clock.set(at(THURSDAY, 8, 30))
    kept = await hall.book(at(FRIDAY, 11), "13800138001")
    await hall.book(at(FRIDAY, 11, 30), "13800138002")
    cancelled = await hall.book(at(FRIDAY, 12), "13800138003")
    await bus.run(cancel_booking, CancelBooking(cancelled, hall_id=hall.id))
    await hall.walk_ins(THURSDAY, 10, "AABAABAABAAB", {2: "elderly", 7: "disability"})
    await hall.serve_all(at(THURSDAY, 10, 50))
    await hall.walk_ins(THURSDAY, 14, "AABAAAB")
    await hall.serve_all(at(THURSDAY, 14, 30))

    # Friday: the 11:00 booking checks in five minutes early; the 11:30 one never comes.
    await hall.walk_ins(FRIDAY, 10, "AABAABAABAAB", {4: "elderly"})
    clock.set(at(FRIDAY, 10, 55))
    ticket = await bus.run(
        check_in, CheckIn(hall.id, commands.Actor(device_id=hall.kiosk), code=kept)
    )
    hall.prefix_of[ticket] = "A"
    await hall.serve_all(at(FRIDAY, 11), transfer_nth_a=3)
    await hall.walk_ins(FRIDAY, 15, "AABAABAB")
    await hall.serve_all(at(FRIDAY, 15, 40))
    clock.set(at(FRIDAY, 17))
    assert await bus.run(jobs.sweep_no_shows) == 1
    return hall


async def test_a_scenario_measured_from_two_days_of_a_hall(bus: Bus, clock: FixedClock) -> None:
    hall = await two_days_of_history(bus, clock)
    clock.set(at(SATURDAY, 10))
    scenario: Scenario = await bus.run(scenario_from_hall, hall.id)

    assert scenario.name == f"hall {hall.id} history (28 days)"
    assert scenario.source == f"hall:{hall.id}"
    assert "40 visits on 2 business days (2026-02-26 to 2026-02-27)" in scenario.description
    assert "typical minutes for B, C (under 20 served)" in scenario.description
    # The next day the hall opens after Saturday is Monday, 08:00-18:00 in Shanghai.
    assert scenario.day == date(2026, 3, 2)
    assert scenario.hours == ((time(8), time(18)),)
    assert scenario.timezone == "Asia/Shanghai"
    assert (scenario.load, scenario.visits) == (None, 20)

    # The inactive matter D and its counter are left out; C is offered though never chosen.
    a, b, c = scenario.matters
    assert [(m.prefix, m.name, m.typical_minutes) for m in (a, b, c)] == [
        ("A", "Social insurance", 10), ("B", "Tax", 6), ("C", "Enquiries", 4),
    ]  # fmt: skip
    assert (a.share, b.share, c.share) == pytest.approx((27 / 40, 13 / 40, 0.0))
    assert [m.bookable for m in (a, b, c)] == [True, False, False]
    assert [m.transfer_to for m in (a, b, c)] == [("C",), (), ()]
    # A: 26 services measured (what was served, to the second); B and C had under 20.
    assert len(hall.a_served) == 26
    assert a.service.mean == pytest.approx(statistics.mean(hall.a_served), abs=0.01)
    cv = statistics.stdev(hall.a_served) / statistics.mean(hall.a_served)
    assert a.service.cv == pytest.approx(cv, abs=0.01)
    assert a.service.dist == "lognormal"
    assert (b.service.mean, b.service.cv) == (6.0, 0.6)
    assert (c.service.mean, c.service.cv) == (4.0, 0.6)

    assert [(k.number, dict(k.profile)) for k in scenario.counters] == [
        (1, {"A": ServiceLevel.PRIMARY, "C": ServiceLevel.SECONDARY}),
        (2, {"B": ServiceLevel.PRIMARY, "A": ServiceLevel.SECONDARY}),
    ]

    # Walk-ins a day: 12 at 10:00, 3.5 at 14:00, 4 at 15:00; nobody in the other hours.
    hourly = scenario.hourly
    assert sorted(hourly) == [time(h) for h in range(8, 18)]
    assert max(hourly, key=lambda h: hourly[h]) == time(10)
    assert hourly[time(10)] / hourly[time(14)] == pytest.approx(12 / 3.5, rel=1e-3)
    assert hourly[time(15)] / hourly[time(14)] == pytest.approx(4 / 3.5, rel=1e-3)
    assert [h for h, w in hourly.items() if w == 0] == [time(h) for h in (8, 9, 11, 12, 13, 16, 17)]

    # 1 of 40 visits came booked; of two bookings due, one was missed (the cancelled one
    # does not count); a single check-in is too few for punctuality.
    bookings = scenario.bookings
    assert bookings.share == pytest.approx(1 / 40)
    assert bookings.no_show == pytest.approx(0.5)
    assert (bookings.arrive_mean, bookings.arrive_sd) == (-8.0, 7.0)
    assert bookings.rules == rules_from_json(
        {"slot_minutes": 30, "capacity": 3, "target_load": 0.9}
    )
    assert bookings.rules.target_load == 0.9

    # Three of the 39 walk-ins had a priority class; one visit of A's 27 was transferred
    # (the simulator transfers a share of the visits of matters that have an onward matter).
    assert scenario.priority_share == pytest.approx(3 / 39)
    assert scenario.priority_classes == pytest.approx({"elderly": 2 / 3, "disability": 1 / 3})
    assert scenario.transfer_share == pytest.approx(1 / 27)
    assert scenario.secondary_speed == 1.0
    assert dict(scenario.priority_boosts) == {"elderly": 25, "disability": 20}
    assert scenario.secondary_after_minutes == 15

    # And the day it describes can be simulated: walk-ins come in the hours they came.
    (day,) = run(scenario, ["v2"], seeds=[1]).policies["v2"].days
    assert day.values["walk_ins"] > 0
    assert set(day.hourly) <= {10, 14, 15}


async def test_a_shorter_window_sees_only_its_days(bus: Bus, clock: FixedClock) -> None:
    hall = await two_days_of_history(bus, clock)
    clock.set(at(SATURDAY, 10))
    friday_only = await bus.run(scenario_from_hall, hall.id, 1)
    assert friday_only.name == f"hall {hall.id} history (1 days)"
    assert friday_only.visits == 21
    a, b, _ = friday_only.matters
    assert (a.share, b.share) == pytest.approx((14 / 21, 7 / 21))


async def test_arrival_hours_are_the_halls_own_across_a_daylight_saving_change(
    bus: Bus, clock: FixedClock
) -> None:
    """Berlin moves its clocks on Sunday 29 March 2026: 10:00 is 09:00 UTC on the Friday
    before and 08:00 UTC on the Monday after, and the same hour of the hall's day."""
    friday, monday = date(2026, 3, 27), date(2026, 3, 30)
    clock.set(at(friday, 9, tz=BERLIN))
    hall = await Hall(bus, clock, timezone="Europe/Berlin").build()
    await hall.open_counters()
    await hall.walk_ins(friday, 10, "AB")
    await hall.serve_all(at(friday, 10, 30, tz=BERLIN))
    await hall.walk_ins(monday, 10, "AABB")
    await hall.serve_all(at(monday, 10, 30, tz=BERLIN))
    clock.set(at(date(2026, 3, 31), 9, tz=BERLIN))
    scenario = await bus.run(scenario_from_hall, hall.id, 7)
    assert (scenario.timezone, scenario.day, scenario.visits) == (
        "Europe/Berlin", date(2026, 4, 1), 3,
    )  # fmt: skip
    assert {h for h, weight in scenario.hourly.items() if weight > 0} == {time(10)}


async def test_an_unknown_hall_is_not_found(bus: Bus) -> None:
    with pytest.raises(NotFound, match="no hall with id 999"):
        await bus.run(scenario_from_hall, 999)


async def test_a_hall_without_history_says_what_is_missing(bus: Bus, clock: FixedClock) -> None:
    hall = await Hall(bus, clock).build()
    with pytest.raises(Invalid) as refused:
        await bus.run(scenario_from_hall, hall.id)
    assert str(refused.value) == (
        f"history: hall {hall.id} has no served tickets in the last 28 days; "
        "run the hall for a while or use a scenario file"
    )
