"""Online booking over HTTP: slots, booking and managing it, check-in, staff on a visitor's
behalf, and the manager's booking settings. Thin: every rule lives in ``booking``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect

from booking import calendar_change, checkin, config, privacy, service
from booking.checkin import CheckIn
from booking.config import BookingRulesOut, CalendarOut
from booking.domain.codes import normalise_code
from booking.service import BookingLine, BookingOut, SlotsOut
from booking.slot_memory import SlotMemory
from queue_server.service import audit
from queue_server.service.accounts import Principal
from queue_server.service.bus import Bus
from queue_server.service.commands import Actor
from queue_server.service.views import TicketView
from queue_server.settings import Settings

from .auth import ISSUERS, MANAGERS, PUBLIC, STAFF, roles
from .deps import BookingGate
from .schemas import BookIn, CalendarIn, CheckInIn, PhoneIn, RescheduleIn, StaffBookIn
from .tickets import ticket_answer


def with_links(booking: BookingOut, settings: Settings) -> BookingOut:
    """Add the booking's link: its QR code carries it, and a kiosk scanner reads the code
    out of it."""
    base = settings.effective_public_base_url
    follow = f"{base}/t/{booking.follow_token}" if booking.follow_token else ""
    return dataclasses.replace(booking, qr_url=f"{base}/b/{booking.code}", follow_url=follow)


@dataclass(frozen=True)
class PublicBooking:
    """What the public booking route needs, as one dependency: Litestar resolves a route's
    several dependencies in a task group, which cost a third of the CPU of a refusal
    answered from memory; one is resolved inline."""

    bus: Bus
    settings: Settings
    gate: BookingGate
    memory: SlotMemory


def provide_public_booking(request: Request[Any, Any, Any]) -> PublicBooking:
    """The app's ``PublicBooking``, made on first use."""
    state = request.app.state
    found: PublicBooking | None = state.get("public_booking")
    if found is None:
        channels = request.app.plugins.get(ChannelsPlugin)
        memory = service.slot_memory_of(channels, state.bus)
        found = state["public_booking"] = PublicBooking(
            state.bus, state.settings, state.booking_gate, memory
        )
        # Bookings waiting their turn are refused as soon as their slot is known full.
        state.booking_gate.watch(lambda: memory.learned)
    return found


class PublicBookingController(Controller):
    """What a visitor does from a phone. Rate-limited per client address (see app.py)."""

    tags = ["booking"]
    opt = PUBLIC

    @get("/api/public/halls/{hall_id:int}/services/{service_id:int}/slots")
    async def slots(
        self,
        hall_id: FromPath[int],
        service_id: FromPath[int],
        bus: NamedDependency[Bus],
        first_day: Annotated[
            date | None, QueryParameter(name="from", description="first hall date (default today)")
        ] = None,
        days: Annotated[int, QueryParameter(ge=1, le=31)] = 8,
    ) -> SlotsOut:
        """Open slots of a bookable matter with their free places, day by day."""
        return await bus.run(service.list_slots, hall_id, service_id, first_day, days)

    @post(
        "/api/public/halls/{hall_id:int}/bookings",
        dependencies={"booking": Provide(provide_public_booking, sync_to_thread=False)},
    )
    async def book(
        self,
        hall_id: FromPath[int],
        data: JSONBody[BookIn],
        booking: NamedDependency[PublicBooking],
    ) -> BookingOut:
        """Book a slot: the answer holds the booking code, its QR link and the materials to
        bring. 409 when the slot is full (with the next free slots), outside the booking
        window, or a limit per phone number or ID is reached."""
        command = service.BookSlot(hall_id, data.service_id, data.slot_start, data.name,
                                   data.phone, data.id_tail)  # fmt: skip
        # A slot this process knows is full is refused at once, without waiting its turn,
        # and so is one that becomes known full while it waits.
        service.refuse_if_known_full(booking.memory, command, booking.bus.clock.now())

        def refused() -> BaseException | None:
            return service.known_full_refusal(booking.memory, command, booking.bus.clock.now())

        async with booking.gate.turn(refused):
            made = await booking.bus.run(service.book_slot, command, booking.memory)
        return with_links(made, booking.settings)

    @get("/api/bookings/{code:str}")
    async def view(
        self,
        code: FromPath[str],
        phone: Annotated[str, QueryParameter(min_length=1, max_length=32)],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        """A booking by its code and the phone number it was made with."""
        return with_links(await bus.run(service.view_booking, code, phone), settings)

    @post("/api/bookings/{code:str}/cancel", status_code=200)
    async def cancel(
        self,
        code: FromPath[str],
        data: JSONBody[PhoneIn],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        """Cancel (until the matter's cutoff before the slot); the place is given back."""
        booking = await bus.run(service.cancel_booking, service.CancelBooking(code, data.phone))
        return with_links(booking, settings)

    @post("/api/bookings/{code:str}/erase", status_code=200)
    async def erase(
        self,
        code: FromPath[str],
        data: JSONBody[PhoneIn],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        """Delete your name, phone number and ID tail from this booking now (a booking still
        ahead is cancelled first, its place given back). The code stops working online:
        without the phone number nobody can find the booking again."""
        return with_links(await bus.run(privacy.erase_booking, code, data.phone), settings)

    @post("/api/bookings/{code:str}/reschedule", status_code=200)
    async def reschedule(
        self,
        code: FromPath[str],
        data: JSONBody[RescheduleIn],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
        booking_gate: NamedDependency[BookingGate],
    ) -> BookingOut:
        """Move to another slot of the same matter, keeping the code."""
        async with booking_gate:  # it takes a place as a booking does
            booking = await bus.run(
                service.reschedule_booking,
                service.RescheduleBooking(code, data.slot_start, phone=data.phone),
            )
        return with_links(booking, settings)

    @post("/api/bookings/{code:str}/check-in", status_code=200)
    async def remote_check_in(
        self,
        code: FromPath[str],
        data: JSONBody[PhoneIn],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> TicketView:
        """Check in from the phone, where the hall allows it: the answer is the ticket and
        its follow link."""
        ticket_id = await bus.run(
            checkin.check_in,
            CheckIn(None, Actor(), code=code, phone=data.phone, remote=True,
                    follow_base=settings.effective_public_base_url),
        )  # fmt: skip
        return await ticket_answer(bus, settings, ticket_id, with_print=False)


class BookingLinkController(Controller):
    """The link in a booking's QR code, stable while what it shows evolves."""

    opt = PUBLIC
    include_in_schema = False

    @get("/b/{code:str}")
    async def link(self, code: FromPath[str]) -> Redirect:
        return Redirect(f"/book/manage?code={normalise_code(code) or ''}", status_code=303)


class HallBookingController(Controller):
    """Kiosk check-in, and staff acting for a visitor (assisted booking)."""

    path = "/api/halls/{hall_id:int}"
    tags = ["booking"]

    @post("/check-in", opt=roles(*ISSUERS), status_code=200)
    async def check_in(
        self,
        hall_id: FromPath[int],
        data: JSONBody[CheckInIn],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> TicketView:
        """Check a visitor in by booking code (typed, or scanned from the QR) or phone
        number: the answer is their ticket, printed at a kiosk with a printer (``printing``
        is the job as it stands; the outcome follows on the kiosk's feed)."""
        ticket_id = await bus.run(
            checkin.check_in,
            CheckIn(
                hall_id, Actor(user_id=principal.user_id, device_id=principal.device_id),
                code=data.code, phone=data.phone, id_tail=data.id_tail,
                service_id=data.service_id, priority=data.priority,
                follow_base=settings.effective_public_base_url,
            ),
        )  # fmt: skip
        return await ticket_answer(
            bus, settings, ticket_id, with_print=principal.device_id is not None
        )

    @get("/bookings", opt=roles(*STAFF))
    async def list(
        self,
        hall_id: FromPath[int],
        bus: NamedDependency[Bus],
        day: Annotated[date | None, QueryParameter(description="hall date, default today")] = None,
        service_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        phone: Annotated[str | None, QueryParameter(max_length=32)] = None,
    ) -> list[BookingLine]:
        """A day's bookings (default today), optionally of one matter or one phone number."""
        return await bus.run(service.list_bookings, hall_id, day, service_id, phone)

    @post("/bookings", opt=roles(*STAFF))
    async def book_for_visitor(
        self,
        hall_id: FromPath[int],
        data: JSONBody[StaffBookIn],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        booking_gate: NamedDependency[BookingGate],
    ) -> BookingOut:
        """Book for a visitor (who may have no phone); the same rules as online apply."""
        async with booking_gate:
            booking = await bus.run(
                service.book_slot,
                service.BookSlot(hall_id, data.service_id, data.slot_start, data.name,
                                 data.phone, data.id_tail, staff_id=principal.user_id),
            )  # fmt: skip
        return with_links(booking, settings)

    @get("/bookings/{code:str}", opt=roles(*STAFF))
    async def view(
        self,
        hall_id: FromPath[int],
        code: FromPath[str],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        return with_links(await bus.run(service.view_booking, code, None, hall_id), settings)

    @post("/bookings/{code:str}/cancel", opt=roles(*STAFF), status_code=200)
    async def cancel(
        self,
        hall_id: FromPath[int],
        code: FromPath[str],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        """Cancel for a visitor at the desk (allowed until the slot begins)."""
        booking = await bus.run(
            service.cancel_booking, service.CancelBooking(code, hall_id=hall_id)
        )
        return with_links(booking, settings)

    @post("/bookings/{code:str}/erase", opt=roles(*STAFF), status_code=200)
    async def erase(
        self,
        hall_id: FromPath[int],
        code: FromPath[str],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
    ) -> BookingOut:
        """Delete a visitor's name, phone number and ID tail from their booking at their
        request (a booking still ahead is cancelled first); written to the audit log."""
        erased = await bus.run(privacy.erase_booking, code, None, hall_id)
        await bus.run(
            audit.record, hall_id, "personal data erased", f"booking {erased.code}",
            {"on": "the visitor's request"},
        )  # fmt: skip
        return with_links(erased, settings)

    @post("/bookings/{code:str}/reschedule", opt=roles(*STAFF), status_code=200)
    async def reschedule(
        self,
        hall_id: FromPath[int],
        code: FromPath[str],
        data: JSONBody[RescheduleIn],
        bus: NamedDependency[Bus],
        settings: NamedDependency[Settings],
        booking_gate: NamedDependency[BookingGate],
    ) -> BookingOut:
        async with booking_gate:
            booking = await bus.run(
                service.reschedule_booking,
                service.RescheduleBooking(code, data.slot_start, hall_id=hall_id),
            )
        return with_links(booking, settings)

    @post("/bookings/{code:str}/check-in", opt=roles(*STAFF), status_code=200)
    async def clerk_check_in(
        self,
        hall_id: FromPath[int],
        code: FromPath[str],
        bus: NamedDependency[Bus],
        principal: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> TicketView:
        """A clerk checks the visitor in (for instance one who came to the desk)."""
        ticket_id = await bus.run(
            checkin.check_in,
            CheckIn(hall_id, Actor(user_id=principal.user_id), code=code,
                    follow_base=settings.effective_public_base_url),
        )  # fmt: skip
        return await ticket_answer(bus, settings, ticket_id, with_print=False)


class BookingSettingsController(Controller):
    """The manager's booking settings: rules per matter, the hall's calendar."""

    path = "/api/halls/{hall_id:int}"
    tags = ["booking settings"]
    opt = roles(*MANAGERS)

    @get("/services/{service_id:int}/booking", opt=roles(*STAFF))
    async def get_rules(
        self, hall_id: FromPath[int], service_id: FromPath[int], bus: NamedDependency[Bus]
    ) -> BookingRulesOut:
        return await bus.run(config.get_booking_rules, hall_id, service_id)

    @put("/services/{service_id:int}/booking")
    async def set_rules(
        self,
        hall_id: FromPath[int],
        service_id: FromPath[int],
        data: JSONBody[dict[str, Any] | None],
        bus: NamedDependency[Bus],
    ) -> BookingRulesOut:
        """Open the matter to online booking with these rules (see docs/booking.md), or
        send ``null`` to take it offline; missing settings take their defaults."""
        return await bus.run(config.set_booking_rules, hall_id, service_id, data)

    @get("/booking-calendar", opt=roles(*STAFF))
    async def get_calendar(self, hall_id: FromPath[int], bus: NamedDependency[Bus]) -> CalendarOut:
        return await bus.run(config.get_calendar, hall_id)

    @put("/booking-calendar")
    async def set_calendar(
        self, hall_id: FromPath[int], data: JSONBody[CalendarIn], bus: NamedDependency[Bus]
    ) -> CalendarOut:
        """Breaks, holidays and special days on top of the opening hours; remote check-in.

        A change that closes times visitors have booked is refused (409, ``extra.stranded``
        lists those bookings) unless ``cancel_stranded`` and a ``reason`` confirm it: then
        they are cancelled, their places given back, and each visitor is told why (the
        reminder channel) with a link to book again."""
        calendar = {
            "breaks": data.breaks, "holidays": data.holidays, "special_days": data.special_days
        }  # fmt: skip
        reason = calendar_change.check_reason(data.cancel_stranded, data.reason)
        return await bus.run(
            config.set_calendar,
            hall_id,
            calendar,
            data.remote_checkin,
            data.day_close_time,
            reason,
        )
