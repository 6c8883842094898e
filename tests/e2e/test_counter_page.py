"""The counter console (/counter) in headless Chromium against a real demo server: a clerk
signs in, opens counter 1 and works the queue by keyboard alone, transfers a visitor,
is refused a finish without a note, sees printer alerts come and go live; both languages
at phone and desktop sizes pass axe and are photographed. The translations are complete."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from babel.messages.pofile import read_po
from playwright.async_api import expect

from tests.e2e.pages import SIZES, axe_check, browser, demo, new_page, screenshot
from tests.e2e.test_live_feeds import Clerk, issue
from tests.servers import Server

__all__ = ["browser", "demo"]

pytestmark = pytest.mark.slow

LOCALE = Path(__file__).parents[2] / "queue_server" / "web" / "locale"
Demo = tuple[Server, dict[str, str]]


class Staff(Clerk):
    """A signed-in API client (clerk or manager) to check what the page did."""

    def __init__(self, base: str, username: str, password: str) -> None:
        super().__init__(base, password, username)

    async def ticket(self, ticket_id: int) -> dict[str, Any]:
        answer = await self.http.get(f"/api/halls/1/tickets/{ticket_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


async def appointment(server: Server, kiosk: str, phone: str) -> dict[str, Any]:
    """A booking for the next free slot of social insurance, checked in at the kiosk.

    The demo server keeps the real clock: late in the hall's day today's last slot has
    begun, so the next free one may be tomorrow's first (check-in opens 30 minutes ahead)."""
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
        slots = (await http.get("/api/public/halls/1/services/1/slots", params={"days": 2})).json()
        start = next(s["start"] for d in slots["days"] for s in d["slots"] if s["free"])
        booked = await http.post(
            "/api/public/halls/1/bookings",
            json={"service_id": 1, "slot_start": start, "name": "王小明", "phone": phone},
        )
        assert booked.status_code == 201, booked.text
        ticket = await http.post(
            "/api/halls/1/check-in",
            json={"code": booked.json()["code"]},
            headers={"Authorization": f"Bearer {kiosk}"},
        )
    assert ticket.status_code in (200, 201), ticket.text
    return ticket.json()  # type: ignore[no-any-return]


async def settled(page: Any) -> None:
    """The last action's answer is in (the feed can show its result a moment earlier)."""
    await expect(page.locator("#console-view")).not_to_have_attribute("aria-busy", "true")


class Feed:
    """The live feed of the counter console open in ``page`` (``/ws/counters/{id}``, also
    after a reload): the counter's state, the current ticket's number and state, as each
    message brought them.

    An action's answer and the feed's update for it race each other, and an update read
    just before an action can land after its answer, redrawing the console as it was
    (closing the finish form it opened, say). ``brings`` waits out both."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.seen: list[tuple[str, str | None, str | None]] = []
        self._arrived = asyncio.Event()
        page.on("websocket", self._follow)

    def _follow(self, socket: Any) -> None:
        if "/ws/counters/" in socket.url:
            socket.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        message = json.loads(payload)
        if message["type"] not in ("snapshot", "update"):
            return
        ticket = message["counter"]["current"]
        self.seen.append(
            (
                message["counter"]["counter"]["state"],
                ticket and ticket["number"],
                ticket and ticket["state"],
            )
        )
        self._arrived.set()

    @asynccontextmanager
    async def brings(
        self, number: str | None = None, ticket: str | None = None, counter: str = "open"
    ) -> AsyncIterator[None]:
        """Around an action on the console: afterwards the page has the action's answer and
        the feed has brought its result (the counter ``counter``, its current ticket
        ``number`` in state ``ticket``, or none), so what the page shows stays shown."""
        since = len(self.seen)
        yield
        await settled(self.page)
        wanted = (counter, number, ticket)
        try:
            async with asyncio.timeout(10):
                while wanted not in self.seen[since:]:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"the live feed brought {self.seen[since:]}, not {wanted}"
            ) from None


async def sign_in(page: Any, server: Server, password: str, lang: str = "en") -> Feed:
    """Open the console, sign in as the clerk and open counter 1, all by keyboard; the
    console's live feed."""
    feed = Feed(page)
    await page.goto(f"{server.base}/counter?lang={lang}")
    await expect(page.locator("#username")).to_be_focused()
    await page.keyboard.type("clerk")
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    first = page.locator('[data-counter="1"]')
    await expect(first).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#counter-title")).to_contain_text("1")
    await expect(page.locator("#live-state.on")).to_be_visible()
    return feed


def current(page: Any) -> Any:
    return page.locator("#current-number")


def action(page: Any, name: str) -> Any:
    return page.locator(f'#console-view [data-action="{name}"]')


async def test_a_clerk_works_the_queue_by_keyboard_alone(browser: Any, demo: Demo) -> None:
    server, creds = demo
    page = await new_page(browser, "desktop", "en")
    feed = await sign_in(page, server, creds["clerk"])
    await expect(
        page.get_by_role("heading", name="Counter 1 · 社保窗口 Social insurance")
    ).to_be_visible()
    await expect(page.locator("#counter-state")).to_have_text("Open")
    await expect(action(page, "call-next")).to_be_focused()
    await expect(action(page, "start")).to_be_disabled()
    await expect(page.locator("#waiting-empty")).to_be_visible()

    first = await issue(server.base, creds["kiosk"])
    second = await issue(server.base, creds["kiosk"])
    waiting = page.locator("#waiting-list li")
    await expect(waiting).to_have_count(2)  # live, no reload
    await expect(waiting.nth(0)).to_contain_text("A001")
    await expect(waiting.nth(1)).to_contain_text("A002")
    await expect(waiting.nth(0)).to_contain_text(re.compile(r"longest wait \d+ min"))
    await expect(page.locator("#waiting-count")).to_have_text("(2)")
    await expect(page.locator("#waiting-more")).to_be_hidden()
    await screenshot(page, "counter-waiting-desktop-en")

    await page.keyboard.press("s")  # nothing to start yet: refused on the page, no request
    await expect(page.locator("#live")).to_have_text("“Start” is not possible now.")
    await expect(page.locator("#error")).to_be_hidden()

    async with feed.brings("A001", "called"):
        await page.keyboard.press("n")
    await expect(current(page)).to_have_text("A001")
    await expect(page.locator("#current-state")).to_have_text("Called")
    await expect(page.locator("#current [data-reason]")).to_have_text(
        re.compile(r"^longest wait \d+ min$")
    )
    await expect(page.locator("#current")).to_contain_text("Social insurance")
    await expect(page.locator("#current")).to_contain_text("Walk-in")
    await expect(page.locator("#current")).to_contain_text("No priority")
    await expect(page.locator("#current")).to_contain_text("Wait so far")
    await expect(action(page, "call-next")).to_be_disabled()
    await expect(action(page, "finish")).to_be_disabled()
    await expect(action(page, "start")).to_be_focused()
    await expect(waiting).to_have_count(1)

    async with feed.brings("A001", "serving"):
        await page.keyboard.press("s")
    await expect(page.locator("#current-state")).to_have_text("Serving")
    await expect(action(page, "recall")).to_be_disabled()
    await page.keyboard.press("f")
    await expect(page.locator("#finish-form")).to_be_visible()
    await expect(page.locator("#outcome-done")).to_be_focused()
    async with feed.brings():
        await page.keyboard.press("Enter")
    await expect(page.locator("#last")).to_have_text("Last ticket: A001 finished.")
    await expect(page.locator("#current")).to_contain_text("No current ticket.")
    await expect(action(page, "call-next")).to_be_focused()

    async with feed.brings("A002", "called"):
        await page.keyboard.press("n")
    await expect(current(page)).to_have_text("A002")
    async with feed.brings():
        await page.keyboard.press("x")
    await expect(page.locator("#last")).to_have_text("Last ticket: A002 marked as no-show.")
    await expect(page.locator("#waiting-empty")).to_be_visible()

    async with feed.brings(counter="paused"):
        await page.keyboard.press("p")
    await expect(page.locator("#counter-state")).to_have_text("Paused")
    await expect(action(page, "call-next")).to_be_disabled()
    await expect(action(page, "open")).to_have_text(re.compile(r"^Resume\s*O$"))
    await expect(action(page, "open")).to_be_focused()
    async with feed.brings():
        await page.keyboard.press("o")
    await expect(page.locator("#counter-state")).to_have_text("Open")
    await expect(action(page, "call-next")).to_be_focused()
    await page.keyboard.press("c")
    await expect(page.locator("#counter-state")).to_have_text("Closed")
    await expect(action(page, "open")).to_have_text(re.compile(r"^Open counter\s*O$"))

    async with Staff(server.base, "clerk", creds["clerk"]) as clerk:
        done = await clerk.ticket(first["id"])
        assert (done["state"], done["outcome"]) == ("done", "done")
        assert (await clerk.ticket(second["id"]))["state"] == "no_show"
        counter = (await clerk.http.get("/api/counters/1")).json()["counter"]
        assert (counter["state"], counter["clerk_id"]) == ("closed", None)
    assert not page.script_errors


async def test_a_long_queue_is_counted_whole_and_listed_by_its_first_fifty(
    browser: Any, demo: Demo
) -> None:
    """The clerk sees how many wait for the counter's matters, not just the list's length,
    and is told the list holds the first 50 in call order."""
    server, creds = demo
    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["clerk"])
    await expect(page.locator("#waiting-more")).to_be_hidden()
    for _ in range(52):
        await issue(server.base, creds["kiosk"])
    await expect(page.locator("#waiting-count")).to_have_text("(52)")
    await expect(page.locator("#waiting-list li")).to_have_count(50)
    await expect(page.locator("#waiting-list li").first).to_contain_text("A001")
    await expect(page.locator("#waiting-more")).to_have_text(
        "The first 50 of 52, in the order they will be called."
    )
    # One more joins behind the list: the clerk hears the count, not a number.
    await issue(server.base, creds["kiosk"])
    await expect(page.locator("#live")).to_have_text("53 waiting")
    await expect(page.locator("#waiting-count")).to_have_text("(53)")
    # A call moves A051 up into the list: nobody joined, nobody is announced as waiting.
    await page.keyboard.press("n")
    await expect(current(page)).to_have_text("A001")
    await expect(page.locator("#waiting-list li").last).to_contain_text("A051")
    await expect(page.locator("#waiting-count")).to_have_text("(52)")
    await expect(page.locator("#live")).not_to_contain_text("is waiting")


async def test_transfer_to_another_matter(browser: Any, demo: Demo) -> None:
    server, creds = demo
    page = await new_page(browser, "desktop", "en")
    feed = await sign_in(page, server, creds["clerk"])
    ticket = await issue(server.base, creds["kiosk"])
    await expect(page.locator("#waiting-list li")).to_have_count(1)
    async with feed.brings("A001", "called"):
        await action(page, "call-next").click()
    await expect(current(page)).to_have_text("A001")

    await page.keyboard.press("t")
    await expect(page.locator("#transfer-form")).to_be_visible()
    await expect(page.locator("#transfer-service")).to_be_focused()
    options = await page.locator("#transfer-service option").all_text_contents()
    assert "A · Social insurance" not in options  # not to its own matter
    await page.locator("#transfer-service").select_option(label="E · Medical insurance")
    await page.locator("#transfer-note").fill("medical insurance part of the claim")
    await page.get_by_role("button", name="Confirm transfer").click()

    await expect(page.locator("#last")).to_have_text(
        "Last ticket: A001 transferred to Medical insurance."
    )
    await expect(page.locator("#current")).to_contain_text("No current ticket.")
    await expect(page.locator("#transfer-form")).to_be_hidden()
    # Counter 1 also serves medical insurance: the visitor is back in its list, first.
    back = page.locator("#waiting-list li").first
    await expect(back).to_contain_text("A001")
    await expect(back).to_contain_text("Transfer")
    await expect(back).to_contain_text(re.compile(r"continues visit \(transferred"))
    await screenshot(page, "counter-transferred-desktop-en")

    async with httpx.AsyncClient(base_url=server.base) as http:
        followed = (await http.get(f"/api/follow/{ticket['follow_token']}")).json()
    assert (followed["kind"], followed["service"]["id"], followed["state"]) == (
        "transfer",
        5,
        "waiting",
    )
    async with Staff(server.base, "clerk", creds["clerk"]) as clerk:
        assert (await clerk.ticket(ticket["id"]))["state"] == "transferred"

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.locator("#username")).to_be_focused()
    await page.reload()  # the session is gone, not just hidden
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    me = await page.request.get(f"{server.base}/api/auth/me")
    assert me.status == 401


async def test_finish_with_other_needs_a_note(browser: Any, demo: Demo) -> None:
    server, creds = demo
    page = await new_page(browser, "phone", "en")
    feed = await sign_in(page, server, creds["clerk"])
    ticket = await issue(server.base, creds["kiosk"])
    await expect(page.locator("#waiting-list li")).to_have_count(1)
    # Start only once the call is done: a click while the call is still on its way (the
    # feed can enable Start a moment earlier) is ignored.
    async with feed.brings("A001", "called"):
        await action(page, "call-next").click()
    await expect(page.locator("#current-state")).to_have_text("Called")
    async with feed.brings("A001", "serving"):
        await action(page, "start").click()
    await expect(page.locator("#current-state")).to_have_text("Serving")

    await page.keyboard.press("f")
    await expect(page.locator("#outcome-done")).to_be_focused()
    await page.keyboard.press("ArrowUp")  # from the first outcome round to the last: other
    await expect(page.locator("#outcome-other")).to_be_checked()
    await page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("outcome 'other' needs a note saying what happened")
    await expect(page.locator("#current-state")).to_have_text("Serving")
    await expect(page.locator("#finish-note")).to_be_focused()

    # Letters typed into the note are text, not shortcuts (n, x, s, q, c, p are all in it).
    await page.keyboard.type("visitor asked for a copy; nothing else to process")
    await expect(page.locator("#finish-note")).to_have_value(
        "visitor asked for a copy; nothing else to process"
    )
    await expect(page.locator("#current-state")).to_have_text("Serving")
    await expect(alert).to_contain_text("needs a note")  # no other refusal came
    await page.get_by_role("button", name="Confirm finish").click()
    await expect(page.locator("#last")).to_have_text("Last ticket: A001 finished: Other.")
    await expect(page.locator("#error")).to_be_hidden()

    async with Staff(server.base, "clerk", creds["clerk"]) as clerk:
        finished = await clerk.ticket(ticket["id"])
    assert (finished["state"], finished["outcome"]) == ("done", "other")
    await screenshot(page, "counter-finished-phone-en")


async def test_printer_alerts_come_and_go_live(browser: Any, demo: Demo) -> None:
    server, creds = demo
    async with Staff(server.base, "manager", creds["manager"]) as manager:
        made = await manager.http.post(
            "/api/halls/1/devices", json={"kind": "printer", "name": "Hall printer"}
        )
        assert made.status_code == 201, made.text
    token = made.json()["token"]
    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["clerk"])
    alerts = page.locator("#alert-list li")
    await expect(alerts).to_have_text(["Hall printer: print agent offline"])

    async with websockets.connect(f"{server.ws}/ws/printers?token={token}") as agent:
        await expect(page.locator("#alerts")).to_be_hidden()  # connected: nothing wrong
        status = {"online": "online", "paper": "out", "cover": "closed", "problem": "paper out"}
        await agent.send(json.dumps({"type": "status", **status}))
        await expect(alerts).to_have_text(["Hall printer: paper out"])
        await expect(page.locator("#live")).to_have_text("Alert: Hall printer: paper out")
        await screenshot(page, "counter-alert-desktop-en")
    await expect(alerts).to_have_text(["Hall printer: print agent offline"])


async def test_both_languages_and_sizes_pass_axe_and_are_photographed(
    browser: Any, demo: Demo
) -> None:
    server, creds = demo
    for round_, size in enumerate(SIZES):
        ticket = await appointment(server, creds["kiosk"], phone=f"1380013800{round_}")
        page = await new_page(browser, size, "zh_CN")
        feed = Feed(page)
        await page.goto(f"{server.base}/counter")
        await expect(page.get_by_role("heading", name="登录")).to_be_visible()
        await axe_check(page, f"login, {size}, zh")
        await screenshot(page, f"counter-login-{size}-zh")
        await page.get_by_role("link", name="English").click()
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await axe_check(page, f"login, {size}, en")
        await screenshot(page, f"counter-login-{size}-en")

        await page.locator("#username").fill("clerk")
        await page.locator("#password").fill("wrong password")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
        await page.locator("#password").fill(creds["clerk"])
        await page.get_by_role("button", name="Sign in").click()
        choice = page.locator('[data-counter="1"]')
        if round_:  # still open by this clerk from the first round: entered, not reopened
            await expect(page.locator("#counter-list")).to_contain_text("open by you")
        await expect(choice).to_be_focused()
        await screenshot(page, f"counter-choose-{size}-en")
        await choice.click()
        await expect(action(page, "call-next")).to_be_enabled()
        async with feed.brings(ticket["number"], "called"):
            await action(page, "call-next").click()
        await expect(current(page)).to_have_text(ticket["number"])
        booking = page.locator("#current .booking")
        await expect(booking).to_contain_text(ticket["booking"]["code"])
        await expect(booking).to_contain_text("138****800")
        await expect(page.locator("#current")).to_contain_text("Appointment")
        await axe_check(page, f"console with a ticket, {size}, en")
        await screenshot(page, f"counter-called-{size}-en")

        # Back to Chinese: the session and the counter survive the reload.
        await page.get_by_role("link", name="中文").click()
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(current(page)).to_have_text(ticket["number"])
        await expect(page.locator("#current-state")).to_have_text("已叫号")
        await expect(page.locator("#current")).to_contain_text("预约")
        await expect(page.locator("#current [data-reason]")).to_contain_text("预约")
        await expect(action(page, "call-next")).to_contain_text("叫号")
        async with feed.brings(ticket["number"], "serving"):
            await action(page, "start").click()
        await expect(page.locator("#current-state")).to_have_text("办理中")
        await page.keyboard.press("c")  # a ticket is being served: closing is not possible
        await expect(page.locator("#live")).to_have_text("现在不能“关闭窗口”。")
        await expect(page.locator("#counter-state")).to_have_text("开放")
        await axe_check(page, f"console serving, {size}, zh")
        await screenshot(page, f"counter-serving-{size}-zh")

        await page.keyboard.press("f")
        await expect(page.locator("#outcome-done")).to_be_focused()
        await expect(page.locator("label[for=outcome-done]")).to_have_text("办结")
        await page.keyboard.press("ArrowUp")  # round to the last outcome: other, and no note
        await expect(page.locator("#outcome-other")).to_be_checked()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("alert")).to_contain_text(
            "结果选“其他”时，请在备注中写明情况"
        )
        await axe_check(page, f"console with a refusal, {size}, zh")
        await screenshot(page, f"counter-refused-{size}-zh")
        await page.keyboard.press("Escape")
        await expect(page.locator("#finish-form")).to_be_hidden()
        await expect(action(page, "finish")).to_be_focused()
        await page.keyboard.press("f")
        await page.locator("#outcome-done").check()
        await page.keyboard.press("Enter")
        await expect(page.locator("#last")).to_have_text(f"上一位：{ticket['number']} 已办结。")
        await page.context.close()


def test_the_catalogs_match_and_chinese_is_complete() -> None:
    catalogs = {}
    for lang in ("zh_CN", "en"):
        with (LOCALE / lang / "LC_MESSAGES" / "counter.po").open("rb") as handle:
            catalogs[lang] = read_po(handle, locale=lang)
    zh, en = catalogs["zh_CN"], catalogs["en"]
    zh_ids = {m.id for m in zh if m.id}
    en_ids = {m.id for m in en if m.id}
    assert zh_ids == en_ids
    assert len(zh_ids) > 100
    untranslated = [m.id for m in zh if m.id and not m.string]
    assert not untranslated, untranslated
    assert not [m.id for m in en if m.id and m.string], "English uses the message ids"
    for message in zh:  # placeholders survive translation
        if message.id:
            assert set(re.findall(r"\{\w+\}", message.id)) == set(
                re.findall(r"\{\w+\}", message.string)
            ), message.id
    template = (LOCALE.parent / "templates" / "counter.html").read_text()
    used = set(re.findall(r'_\("((?:[^"\\]|\\.)*)"', template))
    used |= set(re.findall(r"_\('((?:[^'\\]|\\.)*)'", template))
    assert used == zh_ids
    # What the script translates is among them: its t("…") calls, its label maps and the
    # ids of the API sentences it translates.
    script = (LOCALE.parent / "static" / "counter.js").read_text()
    wanted = set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', script))
    maps = r"^const (?:KIND|PRIORITY|STATE|OUTCOME|COUNTER_STATE|CHANNEL|ACTION) = \{(.*?)\};"
    for body in re.findall(maps, script, re.S | re.M):
        wanted |= set(re.findall(r':\s*"([^"]+)"', body))
    wanted |= set(re.findall(r'/,\s*"([^"]+)",\s*\[', script))
    assert len(wanted) > 100
    assert not wanted - used, wanted - used
