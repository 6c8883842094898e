"""Visit outcomes after the fact, the "can't get it done" desk's cases, the one-visit report."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from queue_server.domain.model import Outcome
from queue_server.service import commands as cmd
from queue_server.service import desk as cases
from queue_server.service import outcomes, reports, views
from queue_server.service.desk import CaseOut, CaseStatus, Resolution
from queue_server.service.outcomes import FinishedServiceOut, OutcomeChangeOut
from queue_server.service.reports import OutcomeReport
from queue_server.service.views import TicketView

from .auth import MANAGERS, STAFF, roles
from .deps import Desk
from .schemas import (
    CaseAnswerIn,
    CaseCloseIn,
    CaseIn,
    CaseNoteIn,
    CasePatch,
    OutcomeIn,
    OutcomeName,
)
from .tickets import with_follow_url

HallDay = Annotated[date | None, QueryParameter(description="hall date (YYYY-MM-DD)")]


class CasesController(Controller):
    path = "/api/halls/{hall_id:int}"
    tags = ["desk"]
    opt = roles(*STAFF)

    @post("/tickets/{ticket_id:int}/outcome", status_code=200)
    async def correct_outcome(
        self,
        hall_id: FromPath[int],
        ticket_id: FromPath[int],
        data: JSONBody[OutcomeIn],
        desk: NamedDependency[Desk],
    ) -> TicketView:
        """Correct a finished service's outcome (its clerk, or a manager), saying why; every
        correction is kept (``GET …/outcome-changes``)."""
        await desk.bus.run(
            outcomes.correct_outcome, hall_id, ticket_id, desk.principal, Outcome(data.outcome),
            tuple(data.missing_documents), data.note, data.reason,
        )  # fmt: skip
        return with_follow_url(await desk.bus.run(views.ticket_view, ticket_id), desk.settings)

    @get("/finished", opt=roles(*MANAGERS))
    async def finished(
        self,
        hall_id: FromPath[int],
        desk: NamedDependency[Desk],
        day: HallDay = None,
        outcome: Annotated[
            OutcomeName | None, QueryParameter(description="only services finished so")
        ] = None,
        number: Annotated[
            str | None,
            QueryParameter(max_length=16, description="only tickets whose number contains it"),
        ] = None,
    ) -> list[FinishedServiceOut]:
        """The services finished on a hall day (default today), newest first, at most 500:
        what a manager reviews to correct an outcome (``POST …/tickets/{id}/outcome``)."""
        chosen = Outcome(outcome) if outcome is not None else None
        return await desk.bus.run(outcomes.finished_services, hall_id, day, chosen, number)

    @get("/tickets/{ticket_id:int}/outcome-changes")
    async def outcome_changes(
        self, hall_id: FromPath[int], ticket_id: FromPath[int], desk: NamedDependency[Desk]
    ) -> list[OutcomeChangeOut]:
        """A ticket's outcome corrections, oldest first: who, when, why, before and after."""
        return await desk.bus.run(outcomes.outcome_changes, hall_id, ticket_id)

    @post("/tickets/{ticket_id:int}/escalate", status_code=201)
    async def escalate(
        self, hall_id: FromPath[int], ticket_id: FromPath[int], desk: NamedDependency[Desk]
    ) -> TicketView:
        """Send the visit of a service finished not done on to the hall's desk: it keeps its
        number and goes first there. Answers the desk ticket."""
        assert desk.principal.user_id is not None
        new_id = await desk.bus.execute(
            cmd.EscalateTicket(hall_id, ticket_id, desk.principal.user_id)
        )
        return with_follow_url(await desk.bus.run(views.ticket_view, new_id), desk.settings)

    @get("/cases")
    async def list_cases(
        self,
        hall_id: FromPath[int],
        desk: NamedDependency[Desk],
        status: Annotated[
            Literal["open", "answered", "closed"] | None, QueryParameter(description="only these")
        ] = None,
        overdue: Annotated[
            bool, QueryParameter(description="only open ones past their date")
        ] = False,
    ) -> list[CaseOut]:
        """The desk's cases: overdue ones first, then by promised date."""
        return await desk.bus.run(
            cases.list_cases, hall_id, CaseStatus(status) if status else None, overdue
        )

    @post("/cases", status_code=201)
    async def open_case(
        self, hall_id: FromPath[int], data: JSONBody[CaseIn], desk: NamedDependency[Desk]
    ) -> CaseOut:
        """Open a case for a visit at the desk (or for a ticket finished not done)."""
        case_id = await desk.bus.run(
            cases.open_case, hall_id, data.ticket_id, desk.principal, data.summary,
            data.promised_on, data.owner_id,
        )  # fmt: skip
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @get("/cases/{case_id:int}")
    async def get_case(
        self, hall_id: FromPath[int], case_id: FromPath[int], desk: NamedDependency[Desk]
    ) -> CaseOut:
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @patch("/cases/{case_id:int}")
    async def update_case(
        self,
        hall_id: FromPath[int],
        case_id: FromPath[int],
        data: JSONBody[CasePatch],
        desk: NamedDependency[Desk],
    ) -> CaseOut:
        """Hand the case to another owner, or move the promised answer date."""
        owner = data.owner_id if isinstance(data.owner_id, int) else None
        promised = data.promised_on if isinstance(data.promised_on, date) else None
        await desk.bus.run(cases.update_case, hall_id, case_id, owner, promised)
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @post("/cases/{case_id:int}/notes", status_code=201)
    async def add_note(
        self,
        hall_id: FromPath[int],
        case_id: FromPath[int],
        data: JSONBody[CaseNoteIn],
        desk: NamedDependency[Desk],
    ) -> CaseOut:
        await desk.bus.run(cases.add_note, hall_id, case_id, desk.principal, data.text)
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @post("/cases/{case_id:int}/answer", status_code=200)
    async def answer(
        self,
        hall_id: FromPath[int],
        case_id: FromPath[int],
        data: JSONBody[CaseAnswerIn],
        desk: NamedDependency[Desk],
    ) -> CaseOut:
        """Record the answer the visitor was given: open → answered (they see it)."""
        await desk.bus.run(cases.answer_case, hall_id, case_id, data.answer)
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @post("/cases/{case_id:int}/close", status_code=200)
    async def close(
        self,
        hall_id: FromPath[int],
        case_id: FromPath[int],
        data: JSONBody[CaseCloseIn],
        desk: NamedDependency[Desk],
    ) -> CaseOut:
        """Close the case: resolved, or unresolved (the answer says why)."""
        await desk.bus.run(
            cases.close_case, hall_id, case_id, Resolution(data.resolution), data.answer
        )
        return await desk.bus.run(cases.get_case, hall_id, case_id)

    @get("/reports/outcomes", opt=roles(*MANAGERS))
    async def outcome_report(
        self,
        hall_id: FromPath[int],
        desk: NamedDependency[Desk],
        start: Annotated[
            date | None, QueryParameter(name="from", description="first hall date")
        ] = None,
        end: Annotated[date | None, QueryParameter(name="to", description="last hall date")] = None,
    ) -> OutcomeReport:
        """Outcomes, reasons, repeat visits and the one-visit rate per matter and for the
        hall (default: the last 30 days), and the desk's cases."""
        return await desk.bus.run(reports.outcome_report, hall_id, start, end)
