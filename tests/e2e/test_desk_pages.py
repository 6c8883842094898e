"""Come at most once, in headless Chromium against the demo hall: a clerk finishes a visit
as not done (the missing document ticked) and sends it to the desk in the same form; the
visitor's phone page says what to bring; the desk calls the visit first and opens a case;
the manager answers and closes it on the admin page, where the outcome report shows it; the
visitor's page follows each step. Both languages, keyboard, axe."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from playwright.async_api import expect

from tests.e2e.pages import axe_check, browser, demo, new_page
from tests.e2e.test_admin_pages import open_section, ready
from tests.e2e.test_admin_pages import sign_in as admin_sign_in
from tests.e2e.test_counter_page import Staff, action, current, sign_in
from tests.e2e.test_live_feeds import issue
from tests.e2e.test_webhooks import Receiver, receiver
from tests.servers import Server, load_demo_without_printer, server_env

__all__ = ["browser", "demo", "receiver"]

pytestmark = pytest.mark.slow

Demo = tuple[Server, dict[str, str]]
CARD = "社保卡 social security card"


async def test_not_done_to_the_desk_a_case_answered_and_the_visitor_follows_it(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    visitor = await issue(server.base, creds["kiosk"])  # A001, social insurance
    page = await new_page(browser, "desktop", "en")
    feed = await sign_in(page, server, creds["clerk"])
    async with feed.brings("A001", "called"):
        await page.keyboard.press("n")
    async with feed.brings("A001", "serving"):
        await page.keyboard.press("s")

    await page.keyboard.press("f")
    form = page.locator("#finish-form")
    await expect(form).to_be_visible()
    await expect(form.locator("#finish-documents")).to_be_hidden()
    await expect(form.locator("#finish-escalate-row")).to_be_hidden()  # "done" needs no desk
    await form.get_by_label("Missing documents").check()
    await expect(form.locator("#finish-documents")).to_be_visible()
    await expect(form.locator("#finish-escalate-row")).to_be_visible()
    # Without a ticked document the server says which ones there are; nothing is finished.
    await form.get_by_role("button", name="Confirm finish").click()
    await expect(page.locator("#error")).to_contain_text("needs the missing ones named")
    await expect(page.locator("#current-state")).to_have_text("Serving")
    await form.get_by_label(CARD).check()
    await form.get_by_label("Send the visitor on to the can't-get-it-done desk").check()
    await axe_check(page, "counter: finish form with documents and the desk")
    async with feed.brings(None, None):
        await form.get_by_role("button", name="Confirm finish").click()
    await expect(page.locator("#last")).to_contain_text(
        "A001 sent on to the can't-get-it-done desk."
    )

    # The visitor's phone, in Chinese: what to bring, and that they go first at the desk.
    phone = await new_page(browser, "phone", "zh_CN")
    await phone.goto(f"{server.base}/t/{visitor['follow_token']}?lang=zh_CN")
    outcome = phone.locator("#outcome")
    await expect(outcome).to_contain_text("您已转至办不成事反映窗口")
    await expect(outcome).to_contain_text("材料不全")
    await expect(outcome.locator("#outcome-documents li")).to_have_text([CARD])
    await expect(phone.locator("#number")).to_have_text("A001")
    await axe_check(phone, "follow page: sent to the desk, zh")

    # The clerk moves to counter 8, the desk: the visit is called first.
    await page.locator("#change-counter").click()
    await expect(page.locator('[data-counter="1"]')).to_be_focused()  # the list, drawn anew
    desk_counter = page.locator('[data-counter="8"]')
    await desk_counter.focus()
    async with feed.brings(None, None):
        await page.keyboard.press("Enter")
    await expect(page.locator("#counter-title")).to_contain_text("8")
    await expect(action(page, "call-next")).to_be_enabled()
    async with feed.brings("A001", "called"):
        await page.keyboard.press("n")
    await expect(page.locator("#current [data-reason]")).to_contain_text(
        "continues visit (escalated"
    )
    await expect(page.locator("#current")).to_contain_text("Escalation")
    async with feed.brings("A001", "serving"):
        await page.keyboard.press("s")
    panel = page.locator("#case-panel")
    await expect(panel).to_contain_text("Not done at Social insurance: Missing documents.")
    await expect(panel).to_contain_text(f"Missing: {CARD}")
    await panel.get_by_label("What could not be done, and what the desk will do").fill(
        "Card expired; ask the card office for a temporary certificate"
    )
    await panel.get_by_role("button", name="Open a case").click()
    await expect(page.locator("#case-status")).to_contain_text("Case 1: open, answer promised by")
    await expect(current(page)).to_have_text("A001")

    await phone.reload()
    await expect(phone.locator("#case")).to_contain_text("正在办理")

    # The manager answers and closes the case on the admin page, and sees the outcome.
    admin = await new_page(browser, "desktop", "en")
    await admin_sign_in(admin, server, creds["manager"])
    await admin.locator('#sections-nav a[href="#cases"]').click()
    section = await ready(admin, "cases")
    row = section.locator('[data-case-id="1"]')
    await expect(row).to_contain_text("A001")
    await expect(row).to_contain_text("Awaiting an answer")
    await row.get_by_role("button", name="Show case 1").click()
    detail = section.locator("#case-detail")
    await expect(admin.locator("#case-detail-title")).to_be_focused()
    await expect(detail).to_contain_text(CARD)
    await detail.get_by_label("The answer given to the visitor").fill(
        "The certificate office will call you; bring the certificate to counter 1."
    )
    await detail.get_by_role("button", name="Record the answer").click()
    await expect(admin.locator("#case-detail-status")).to_contain_text("Answered")
    await axe_check(admin, "admin: a desk case")
    await detail.get_by_label("Resolved", exact=True).check()
    await detail.get_by_role("button", name="Close case").click()
    await expect(admin.locator("#case-detail-status")).to_contain_text("Case closed")
    await expect(admin.locator("#case-detail-status")).to_contain_text("Resolved")

    await admin.locator('#sections-nav a[href="#outcomes"]').click()
    report = await ready(admin, "outcomes")
    await expect(report.locator("#one-visit-rate")).to_have_text("0.0%")
    await expect(report.locator("#outcomes-chart canvas")).to_have_count(1)  # bars per matter
    social = report.locator('[data-service-id="1"]')
    await expect(social).to_contain_text("Missing documents (1)")
    await expect(social).to_contain_text(f"{CARD} (1)")
    await axe_check(admin, "admin: outcomes and the one-visit rate")

    await phone.reload()
    case = phone.locator("#case")
    await expect(case).to_contain_text("已办结：问题已解决。")
    await expect(case).to_contain_text("The certificate office will call you")


async def test_a_clerk_on_the_admin_page_sees_the_desk_cases_only(browser: Any, demo: Demo) -> None:
    server, creds = demo
    page = await new_page(browser, "desktop", "zh_CN")
    await page.goto(f"{server.base}/admin?lang=zh_CN")
    form = page.locator("#signin-form")
    await form.locator("#signin-username").fill("clerk")
    await form.locator("#signin-password").fill(creds["clerk"])
    await form.locator("button[type=submit]").click()
    section = await ready(page, "cases")
    await expect(section.get_by_role("heading", name="办不成事诉求")).to_be_visible()
    await expect(section).to_contain_text("暂无诉求。")
    await expect(page.locator('#sections-nav a[href="#cases"]')).to_be_visible()
    await expect(page.locator('#sections-nav a[href="#staff"]')).to_be_hidden()
    await page.goto(f"{server.base}/admin?lang=zh_CN#staff")  # asked for: the cases again
    await ready(page, "cases")
    await axe_check(page, "admin: a clerk's desk cases, zh")


@pytest.fixture
def demo_with_jobs(tmp_path: Path) -> Iterator[Demo]:
    """The demo hall served with its scheduled jobs on (the webhook job among them)."""
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    env["ONEDOOR_SCHEDULER"] = "1"
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


async def test_a_manager_reads_statistics_downloads_them_and_adds_a_webhook(
    browser: Any, demo_with_jobs: Demo, receiver: Receiver
) -> None:
    server, creds = demo_with_jobs
    for _ in range(3):
        await issue(server.base, creds["kiosk"])
    page = await new_page(browser, "desktop", "en")
    await admin_sign_in(page, server, creds["manager"])

    matters = await open_section(page, "matters")
    await expect(matters.locator("#matters-list tr", has_text="Can't get it done")).to_contain_text(
        "The hall's desk"
    )

    section = await open_section(page, "statistics")
    total = section.locator('#statistics-table tr[data-key="all"]')
    await expect(total).to_contain_text("3")
    chart = section.locator("#statistics-chart")
    await expect(chart).to_have_attribute("data-kind", "bars")  # waits per matter
    await expect(chart.locator("canvas")).to_have_count(1)
    await section.get_by_label("Group by").select_option("hour")
    await section.get_by_role("button", name="Show statistics").click()
    await expect(chart).to_have_attribute("data-kind", "lines")
    await expect(chart.locator("canvas")).to_have_count(1)
    await axe_check(page, "admin: statistics by hour with the chart")
    href = await section.locator("#statistics-xlsx").get_attribute("href")
    assert href and "format=xlsx" in href and "by=hour" in href
    async with page.expect_download() as started:
        await section.locator("#statistics-xlsx").click()
    download = await started.value
    sheet = load_workbook(io.BytesIO(Path(await download.path()).read_bytes())).active
    assert sheet.cell(row=1, column=3).value == "Tickets"
    assert [row[2] for row in sheet.iter_rows(min_row=2, values_only=True)][-1] == 3

    # A webhook to a local receiver: the server's scheduler posts the next ticket to it.
    hooks = await open_section(page, "webhooks")
    await hooks.get_by_label("Address (https://…)").fill(receiver.url)
    await hooks.get_by_label("Events").fill("TicketIssued")
    await hooks.get_by_role("button", name="Add webhook").click()
    await expect(hooks.locator("#webhook-form").get_by_role("status")).to_contain_text(
        "Its signing secret:"
    )
    row = hooks.locator("[data-webhook-id]")
    await expect(row).to_contain_text(receiver.url)
    ticket = await issue(server.base, creds["kiosk"])
    # The scheduler's webhook job runs every 2 s; the receiver says when a post arrives.
    assert await asyncio.to_thread(receiver.arrived.wait, 15), "no delivery within 15 s"
    assert receiver.events() == ["TicketIssued"]
    assert json.loads(receiver.requests[0][1])["data"]["number"] == ticket["number"]
    await row.get_by_role("button", name="Deliveries").click()
    log = hooks.locator("#webhook-log")
    await expect(log.locator("[data-delivery-id]")).to_contain_text("Delivered")
    await axe_check(page, "admin: webhooks and a delivery log")


async def test_a_clerk_corrects_the_last_outcome_on_the_record(browser: Any, demo: Demo) -> None:
    server, creds = demo
    ticket = await issue(server.base, creds["kiosk"])
    page = await new_page(browser, "desktop", "zh_CN")
    feed = await sign_in(page, server, creds["clerk"], lang="zh_CN")
    async with feed.brings("A001", "called"):
        await page.keyboard.press("n")
    async with feed.brings("A001", "serving"):
        await page.keyboard.press("s")
    await page.keyboard.press("f")
    async with feed.brings(None, None):
        await page.keyboard.press("Enter")  # "done", the default
    await page.get_by_role("button", name="更正办理结果").click()
    form = page.locator("#correct-form")
    await expect(page.locator("#correct-outcome")).to_be_focused()
    await form.get_by_label("办理结果").select_option("missing_documents")
    await form.get_by_label(CARD).check()
    await form.get_by_role("button", name="保存更正").click()  # no reason yet: refused
    await expect(page.locator("#error")).to_be_visible()
    await form.get_by_label("更正原因").fill("按错了 pressed done by mistake")
    await axe_check(page, "counter: correcting the last outcome, zh")
    await form.get_by_role("button", name="保存更正").click()
    await expect(page.locator("#last")).to_contain_text("A001：办理结果已更正为")
    async with Staff(server.base, "manager", creds["manager"]) as manager:
        changes = (
            await manager.http.get(f"/api/halls/1/tickets/{ticket['id']}/outcome-changes")
        ).json()
    assert [(c["before"]["outcome"], c["after"]["outcome"]) for c in changes] == [
        ("done", "missing_documents")
    ]
    assert changes[0]["after"]["missing_documents"] == [CARD]
    assert changes[0]["reason"] == "按错了 pressed done by mistake"


async def test_a_manager_finds_a_finished_service_and_corrects_its_outcome(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    ticket = await issue(server.base, creds["kiosk"])
    async with Staff(server.base, "clerk", creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        await clerk.do(1, "call-next")
        await clerk.do(1, "start")
        await clerk.do(1, "finish", outcome="done")
    page = await new_page(browser, "desktop", "en")
    await admin_sign_in(page, server, creds["manager"])
    section = await open_section(page, "finished")
    row = section.locator(f'[data-ticket-id="{ticket["id"]}"]')
    await expect(row).to_contain_text(ticket["number"])
    await expect(row).to_contain_text("Done")
    await row.get_by_role("button", name=f"Correct {ticket['number']}").click()
    form = section.locator("#finished-correct")
    await expect(page.locator("#finished-correct-title")).to_be_focused()
    await expect(form.locator("#finished-changes")).to_contain_text("Not corrected yet.")
    await expect(form.locator("#finished-documents")).to_be_hidden()
    await form.get_by_label("Outcome").select_option("missing_documents")
    await form.get_by_label(CARD).check()
    await form.get_by_role("button", name="Save the correction").click()  # no reason: refused
    await expect(form.locator(".form-error")).to_contain_text("Please correct the marked fields.")
    await form.get_by_label("Why it is corrected").fill("the visitor phoned: the card was missing")
    await axe_check(page, "admin: correcting a finished service's outcome")
    await form.get_by_role("button", name="Save the correction").click()
    await expect(form.get_by_role("status")).to_contain_text(
        f"{ticket['number']}: outcome corrected to Missing documents."
    )
    await expect(row).to_contain_text(f"Missing documents · {CARD}")
    changes = form.locator("#finished-changes")
    await expect(changes).to_contain_text("the visitor phoned: the card was missing")
    await expect(changes).to_contain_text("Done")
    async with Staff(server.base, "manager", creds["manager"]) as manager:
        recorded = await manager.ticket(ticket["id"])
    assert (recorded["outcome"], recorded["missing_documents"]) == ("missing_documents", [CARD])

    # Filtered to "done", the corrected service is gone; in Chinese, by outcome.
    await section.get_by_label("Outcome", exact=True).first.select_option("done")
    await section.get_by_role("button", name="Show services").click()
    await expect(section.locator("#finished-list")).to_contain_text("No finished service matches.")
    await expect(form).to_be_hidden()
    await page.goto(f"{server.base}/admin?lang=zh_CN#finished")
    section = await ready(page, "finished")
    await expect(section.get_by_role("heading", name="更正办理结果", exact=True)).to_be_visible()
    await expect(section.locator(f'[data-ticket-id="{ticket["id"]}"]')).to_contain_text(CARD)
    await axe_check(page, "admin: finished services, zh")
