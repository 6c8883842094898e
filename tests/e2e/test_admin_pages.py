"""The hall manager's pages (/admin) in headless Chromium against the real demo server:
configuring matters, counters, booking rules and the calendar; devices and their one-time
tokens; staff accounts; the live dashboard; the server's refusals; both languages at phone
and desktop sizes, checked with axe-core; and the catalogs of the page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from playwright.async_api import expect

from tests.e2e.pages import SIZES, axe_check, browser, demo, new_page, screenshot
from tests.e2e.test_live_feeds import Clerk, issue
from tests.servers import Server, load_demo_without_printer, onedoor, server_env

__all__ = ["browser", "demo"]
pytestmark = pytest.mark.slow

Demo = tuple[Server, dict[str, str]]
WEB = Path(__file__).parents[2] / "queue_server" / "web"
SECTIONS = [
    "hall", "matters", "counters", "calendar", "booking", "staff", "devices", "ratings", "simulation",
]  # fmt: skip
SCRIPT_STRING = re.compile(r"""\bt\(\s*(["'])((?:\\.|(?!\1).)+)\1""")


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo hall (as ``demo`` serves it), started once for this module: a server
    start costs seconds on a busy machine. Each test works on records of its own (its own
    matter, device, clerk, counter); only the dashboard test issues tickets."""
    folder = tmp_path_factory.mktemp("admin")
    env = server_env(folder / "var", f"sqlite+aiosqlite:///{folder / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


async def sign_in(page: Any, server: Server, password: str, username: str = "manager",
                  lang: str = "en") -> None:  # fmt: skip
    await page.goto(f"{server.base}/admin?lang={lang}")
    form = page.locator("#signin-form")
    await form.locator("#signin-username").fill(username)
    await form.locator("#signin-password").fill(password)
    await form.locator("button[type=submit]").click()
    await ready(page, "dashboard")


async def ready(page: Any, section: str) -> Any:
    """The section, once shown and loaded."""
    locator = page.locator(f"#section-{section}")
    await expect(locator).to_be_visible()
    await expect(locator).to_have_attribute("data-state", "ready")
    return locator


async def open_section(page: Any, section: str) -> Any:
    await page.locator(f'#sections-nav a[href="#{section}"]').click()
    return await ready(page, section)


class Manager(Clerk):
    """The API as the manager, to check what the page stored."""

    def __init__(self, server: Server, password: str, username: str = "manager") -> None:
        super().__init__(server.base, password, username)

    async def get(self, path: str) -> Any:
        answer = await self.http.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


async def login_status(server: Server, username: str, password: str) -> int:
    async with httpx.AsyncClient(base_url=server.base) as http:
        answer = await http.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
    return answer.status_code


async def test_a_manager_adds_a_matter_gives_it_to_a_counter_books_it_and_adds_a_holiday(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["manager"])

    # A new matter: 公积金 / Housing fund, prefix H (typed small, made capital), documents.
    section = await open_section(page, "matters")
    form = section.locator("#matter-form")
    await form.get_by_label("Name in Chinese").fill("公积金")
    await form.get_by_label("Name in English").fill("Housing fund")
    await form.get_by_label("Ticket prefix").fill("h")
    await form.get_by_label("Typical minutes per visitor").fill("12")
    await form.get_by_label("Documents to bring").fill(
        "身份证 ID card\n\n公积金缴存证明 housing fund statement\n"
    )
    await form.get_by_role("button", name="Add matter").click()
    await expect(form.get_by_role("status")).to_contain_text("Matter H Housing fund added")
    await expect(section.locator("#matters-list tr", has_text="Housing fund")).to_have_count(1)

    # Counter 3 serves it as its primary matter, besides household registration.
    section = await open_section(page, "counters")
    await (
        section.locator('#counters-list tr[data-counter-number="3"]')
        .get_by_role("button", name="Edit counter 3")
        .click()
    )
    form = section.locator("#counter-form")
    await expect(form.get_by_role("heading", name="Edit counter 3")).to_be_focused()
    await form.get_by_label("H Housing fund").select_option("primary")
    await form.get_by_role("button", name="Save changes").click()
    await expect(form.get_by_role("status")).to_contain_text("Counter 3 saved.")
    await expect(section.locator('#counters-list tr[data-counter-number="3"]')).to_contain_text(
        "H Housing fund · Primary"
    )

    # Booked online: 6 places a slot, half of them kept for walk-ins.
    section = await open_section(page, "booking")
    await section.get_by_label("Matter", exact=True).select_option(label="H Housing fund")
    await expect(section.locator("#booking-state")).to_have_text("This matter is walk-in only.")
    form = section.locator("#booking-form")
    await expect(form.get_by_label("Places per slot", exact=True)).to_be_disabled()
    await form.get_by_label("Book this matter online").check()
    # New rules take their places from what the counters can serve; a fixed number here.
    await expect(form.get_by_label("From what the counters can serve")).to_be_checked()
    await form.get_by_label("A fixed number of places per slot").check()
    await form.get_by_label("Places per slot", exact=True).fill("6")
    await form.get_by_label("Share kept for walk-ins (percent)").fill("50")
    await form.get_by_label("Slot length (minutes)").fill("60")
    await expect(form.locator("#booking-preview")).to_contain_text(
        "6 places; 3 can be booked online, 3 are kept for walk-ins"
    )
    await form.get_by_role("button", name="Save booking rules").click()
    await expect(form.get_by_role("status")).to_contain_text("Booking rules for H Housing fund")

    # A holiday and a lunch break.
    holiday = (date.today() + timedelta(days=40)).isoformat()
    section = await open_section(page, "calendar")
    await section.get_by_label("New holiday").fill(holiday)
    await section.get_by_role("button", name="Add holiday").click()
    await expect(section.locator(f'#holiday-list li[data-date="{holiday}"]')).to_be_visible()
    await section.get_by_role("button", name="Add a break").click()
    await expect(section.locator("#calendar-breaks [data-part=start]")).to_have_value("12:00")
    await section.get_by_role("button", name="Save calendar").click()
    await expect(section.locator("#calendar-form").get_by_role("status")).to_have_text(
        "Calendar saved."
    )
    await screenshot(page, "admin-calendar-saved-desktop-en")

    async with Manager(server, creds["manager"]) as api:
        services = await api.get("/api/halls/1/services")
        fund = next(s for s in services if s["prefix"] == "H")
        assert fund["name_zh"] == "公积金" and fund["name_en"] == "Housing fund"
        assert fund["typical_minutes"] == 12 and fund["active"] is True
        assert fund["documents"] == ["身份证 ID card", "公积金缴存证明 housing fund statement"]
        counter = next(c for c in await api.get("/api/halls/1/counters") if c["number"] == 3)
        assert {"service_id": fund["id"], "level": "primary"} in counter["profile"]
        assert len(counter["profile"]) == 2  # household registration stays
        rules = await api.get(f"/api/halls/1/services/{fund['id']}/booking")
        assert rules["bookable"] is True
        assert rules["rules"]["capacity"] == 6
        assert rules["rules"]["walk_in_share"] == 0.5
        assert rules["rules"]["slot_minutes"] == 60
        assert rules["rules"]["window_days"] == 7  # untouched settings keep their defaults
        calendar = await api.get("/api/halls/1/booking-calendar")
        assert holiday in calendar["holidays"]
        assert calendar["breaks"] == [["12:00", "13:30"]]
        slots = await api.get(f"/api/public/halls/1/services/{fund['id']}/slots?days=2")
        places = {s["places"] for d in slots["days"] for s in d["slots"]}
        assert places == {3}, places


async def test_a_device_token_is_shown_once_works_and_stops_when_revoked(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    page = await new_page(browser, "desktop", "en")
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    await sign_in(page, server, creds["manager"])
    section = await open_section(page, "devices")
    form = section.locator("#device-form")
    await form.get_by_label("Kind").select_option("kiosk")
    await form.get_by_label("Device name").fill("大厅取号机 Kiosk 2")
    await form.get_by_role("button", name="Register device").click()

    panel = section.locator("#device-token-panel")
    await expect(panel).to_be_visible()
    await expect(panel.get_by_role("heading")).to_be_focused()
    await expect(panel).to_contain_text("This token is shown only once.")
    token = await panel.get_by_label("Device token").input_value()
    assert len(token) >= 32
    await panel.get_by_role("button", name="Copy token").click()
    await expect(panel.locator("#device-token-copied")).to_have_text("Token copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == token
    await axe_check(page, "device token panel")
    await screenshot(page, "admin-device-token-desktop-en")

    async with httpx.AsyncClient(base_url=server.base) as http:
        me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["user"]["role"] == "kiosk"
        device_id = me.json()["user"]["device_id"]

    # Shown once: hidden on request, and nowhere after a reload.
    await panel.get_by_role("button", name="I have copied it: hide the token").click()
    await expect(panel).to_be_hidden()
    await page.reload()
    section = await ready(page, "devices")
    row = section.locator(f'#devices-list tr[data-device-id="{device_id}"]')
    await expect(row).to_contain_text(token[:6])
    assert token not in await page.content()

    # A printer names its kiosk.
    await form.get_by_label("Kind").select_option("printer")
    await form.get_by_role("button", name="Register device").click()
    await expect(form.get_by_label("Kiosk it prints for")).to_have_attribute("aria-invalid", "true")
    await form.get_by_label("Device name").fill("取号机打印机 Kiosk 2 printer")
    await form.get_by_label("Kiosk it prints for").select_option(label="大厅取号机 Kiosk 2")
    await form.get_by_role("button", name="Register device").click()
    await expect(panel).to_contain_text("Printer")
    printer = section.locator("#devices-list tr", has_text="Kiosk 2 printer")
    await expect(printer).to_contain_text("大厅取号机 Kiosk 2")
    await expect(printer).to_contain_text("Not connected")

    # Revoked (after confirming): the token is refused.
    await row.get_by_role("button", name="Revoke 大厅取号机 Kiosk 2").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await dialog.get_by_role("button", name="Revoke").click()
    await expect(section.locator("#device-messages")).to_contain_text(
        "大厅取号机 Kiosk 2 is revoked."
    )
    await expect(row).to_be_hidden()  # revoked devices are listed only on request
    await section.get_by_label("Show revoked devices too").check()
    await expect(row).to_contain_text("Revoked")
    async with httpx.AsyncClient(base_url=server.base) as http:
        me = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, me.text


async def test_a_deactivated_clerk_can_no_longer_sign_in(browser: Any, hall: Demo) -> None:
    server, creds = hall
    page = await new_page(browser, "phone", "en")
    await sign_in(page, server, creds["manager"])
    section = await open_section(page, "staff")
    form = section.locator("#staff-form")
    await form.get_by_label("Username").fill("li.na")
    await form.get_by_label("Full name").fill("李娜 Li Na")
    await form.get_by_role("button", name="Suggest a password").click()
    password = await form.get_by_label("Password").input_value()
    assert len(password) >= 10
    await form.get_by_label("Role").select_option("clerk")
    assert await form.locator("option[value=manager]").is_disabled()  # managers: admins only
    await form.get_by_role("button", name="Add staff member").click()
    await expect(form.get_by_role("status")).to_contain_text("Clerk li.na added")
    assert await login_status(server, "li.na", password) == 200

    # A new password: the old one stops working at once.
    row = section.locator('#staff-list tr[data-username="li.na"]')
    await row.get_by_role("button", name="Reset password: li.na").click()
    dialog = page.locator("#password-dialog")
    await expect(dialog.get_by_role("heading")).to_have_text("New password for li.na")
    await expect(dialog.get_by_label("New password")).to_be_focused()
    await dialog.get_by_label("New password").fill("short")
    await dialog.get_by_role("button", name="Set the new password").click()
    await expect(dialog.locator(".field-error")).to_have_text("Use at least 10 characters.")
    await dialog.get_by_label("New password").fill("a-new-password-42")
    await dialog.get_by_role("button", name="Set the new password").click()
    await expect(dialog).to_be_hidden()
    await expect(section.locator("#staff-messages")).to_contain_text("New password set for li.na.")
    assert await login_status(server, "li.na", password) == 401
    assert await login_status(server, "li.na", "a-new-password-42") == 200

    await row.get_by_role("button", name="Deactivate li.na").click()
    await expect(section.locator("#staff-messages")).to_contain_text(
        "li.na is deactivated and can no longer sign in."
    )
    await expect(row).to_contain_text("Deactivated")
    await expect(row.get_by_role("button", name="Reactivate li.na")).to_be_focused()
    assert await login_status(server, "li.na", "a-new-password-42") == 401
    # The manager's own account is not theirs to change.
    await expect(section.locator('#staff-list tr[data-username="manager"]')).to_contain_text(
        "This is you."
    )
    await axe_check(page, "staff after changes, phone")


async def test_the_dashboard_follows_tickets_and_calls_without_a_reload(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["manager"])
    dashboard = page.locator("#section-dashboard")
    await expect(dashboard.locator("#dash-live")).to_contain_text("Live:")
    await page.evaluate("window.notReloaded = true")
    social = dashboard.locator('#dash-waiting tr[data-service-id="1"] .count')
    household = dashboard.locator('#dash-waiting tr[data-service-id="2"] .count')
    await expect(social).to_have_text("0")

    tickets = [await issue(server.base, creds["kiosk"], service_id) for service_id in (1, 1, 1, 2)]
    await expect(social).to_have_text("3", timeout=8000)
    await expect(household).to_have_text("1")
    await expect(dashboard.locator("#dash-total-waiting")).to_have_text("4")

    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "open")
        called = await clerk.do(1, "call-next")
    number = called["ticket"]["number"]
    counter = dashboard.locator('#dash-counters tr[data-counter-number="1"]')
    await expect(counter.locator(".ticket.number")).to_have_text(number, timeout=8000)
    await expect(counter).to_contain_text("Open")
    await expect(counter).to_contain_text("Called")
    await expect(social).to_have_text("2")
    await expect(dashboard.locator("#dash-recent")).to_contain_text(f"{number} → counter 1")
    await expect(dashboard.locator("#dash-open")).to_have_text("1 of 8")
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "admin-dashboard-live-desktop-en")
    await axe_check(page, "dashboard with a call")

    # Served and rated (好差评): the ratings section lists it with the day's average.
    async with Clerk(server.base, creds["clerk"]) as clerk:
        await clerk.do(1, "start")
        await clerk.do(1, "finish", outcome="done")
    first = next(t for t in tickets if t["number"] == number)
    token = first["follow_token"]
    async with httpx.AsyncClient(base_url=server.base) as http:
        rated = await http.post(
            f"/api/follow/{token}/rating", json={"stars": 4, "comment": "办事很快 quick"}
        )
        assert rated.status_code == 201, rated.text
    await expect(counter.locator(".ticket.number")).to_have_text("—")
    section = await open_section(page, "ratings")
    await expect(section.locator("#ratings-summary")).to_contain_text("4.0 of 5")
    row = section.locator(f'#ratings-list tr[data-ticket-id="{first["id"]}"]')
    await expect(row).to_contain_text("办事很快 quick")
    await expect(row.get_by_label("4 of 5 stars")).to_be_visible()
    await expect(row).to_contain_text("Social insurance")
    await screenshot(page, "admin-ratings-rated-desktop-en")


async def test_refusals_show_the_servers_words_and_fields_are_checked_inline(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    page = await new_page(browser, "desktop", "en")
    await page.goto(f"{server.base}/admin?lang=en")
    form = page.locator("#signin-form")
    await form.get_by_label("Username").fill("manager")
    await form.get_by_label("Password").fill("not-the-password")
    await form.get_by_role("button", name="Sign in").click()
    await expect(form.get_by_role("alert")).to_contain_text("wrong username or password")
    await sign_in(page, server, creds["manager"])

    # 409: counter numbers are unique in a hall.
    section = await open_section(page, "counters")
    form = section.locator("#counter-form")
    await form.get_by_label("Counter number").fill("1")
    await form.get_by_label("Counter name").fill("重复窗口 Duplicate")
    await form.get_by_role("button", name="Add counter").click()
    await expect(form.get_by_role("alert")).to_contain_text("hall 1 already has a counter number 1")

    # 400: a timezone the server does not know.
    section = await open_section(page, "hall")
    form = section.locator("#hall-form")
    await form.get_by_label("Timezone").fill("Mars/Olympus_Mons")
    await form.get_by_role("button", name="Save hall settings").click()
    await expect(form.get_by_role("alert")).to_contain_text(
        "'Mars/Olympus_Mons' is not a known timezone"
    )
    await axe_check(page, "hall settings refused")
    await screenshot(page, "admin-hall-refused-desktop-en")

    # Caught before asking the server: a bad prefix, an opening period ending too early.
    writes: list[str] = []
    page.on("request", lambda r: writes.append(r.url) if r.method != "GET" else None)
    monday = form.locator('fieldset[data-day="mon"]')
    await monday.get_by_label("To").fill("00:00")
    await form.get_by_role("button", name="Save hall settings").click()
    end = monday.get_by_label("To")
    await expect(end).to_have_attribute("aria-invalid", "true")
    await expect(end).to_be_focused()
    await expect(monday).to_contain_text("The end must come after the start.")
    section = await open_section(page, "matters")
    form = section.locator("#matter-form")
    await form.get_by_label("Name in Chinese").fill("公积金")
    await form.get_by_label("Name in English").fill("Housing fund")
    await form.get_by_label("Ticket prefix").fill("G1")
    await form.get_by_label("Typical minutes per visitor").fill("0")
    await form.get_by_role("button", name="Add matter").click()
    prefix = form.get_by_label("Ticket prefix")
    await expect(prefix).to_have_attribute("aria-invalid", "true")
    await expect(prefix).to_be_focused()
    await expect(form).to_contain_text("Use one or two capital letters A–Z, e.g. G.")
    await expect(form).to_contain_text("Give a whole number from 1 to 480.")
    await expect(form.get_by_role("alert")).to_contain_text("Please correct the marked fields.")
    assert writes == []
    await axe_check(page, "matter form with inline errors")
    await screenshot(page, "admin-matters-invalid-desktop-en")
    await prefix.fill("G")  # corrected: its message goes at once
    await expect(prefix).not_to_have_attribute("aria-invalid", "true")


async def test_every_screen_passes_axe_in_both_languages_at_phone_and_desktop_sizes(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    page = await new_page(browser, "desktop", "zh_CN")
    started = time.monotonic()
    for lang in ("zh_CN", "en"):
        await page.goto(f"{server.base}/admin?lang={lang}")
        for size, (width, height) in SIZES.items():
            await page.set_viewport_size({"width": width, "height": height})
            if lang == "zh_CN" and size == "phone":
                await expect(page.locator("#signin")).to_be_visible()
                await axe_check(page, f"sign-in {size} {lang}")
                await screenshot(page, f"admin-signin-{size}-{lang}")
                await page.locator("#signin-username").fill("manager")
                await page.locator("#signin-password").fill(creds["manager"])
                await page.locator("#signin-password").press("Enter")  # the keyboard way
            await page.locator('#sections-nav a[href="#dashboard"]').click()
            await ready(page, "dashboard")
            await expect(page.locator("#dash-live")).to_have_class(re.compile(r"^live-state$"))
            await axe_check(page, f"dashboard {size} {lang}")
            await screenshot(page, f"admin-dashboard-{size}-{lang}")
            for section in SECTIONS:
                await open_section(page, section)
                await expect(page.locator(f"#section-{section} h1")).to_be_focused()
                await axe_check(page, f"{section} {size} {lang}")
                await screenshot(page, f"admin-{section}-{size}-{lang}")
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{size} {lang}: the page scrolls sideways by {overflow}px"
        if lang == "zh_CN":
            assert await page.locator("#section-ratings h1").text_content() == "好差评"
    # Signing out from the keyboard brings back the sign-in form.
    await page.locator("#sign-out").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-note")).to_have_text("You have signed out.")
    assert time.monotonic() - started < 120


async def test_an_admin_chooses_a_hall_and_creates_one(browser: Any, hall: Demo) -> None:
    server, _ = hall
    done = onedoor(["create-admin", "--username", "admin", "--password", "admin-pass-123"],
                   server.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, "admin-pass-123", username="admin")
    chooser = page.get_by_label("Hall to manage")
    await expect(chooser).to_be_visible()
    await expect(chooser).to_have_value("1")
    await open_section(page, "hall")
    form = page.locator("#hall-create-form")
    await expect(form).to_be_visible()
    await form.get_by_label("Name in Chinese").fill("第二政务服务中心")
    await form.get_by_label("Name in English").fill("Second Service Centre")
    await form.get_by_label("Timezone").fill("Asia/Urumqi")
    await form.get_by_role("button", name="Create hall").click()
    await expect(page.locator("#hall-title")).to_have_text("Second Service Centre")
    section = await ready(page, "hall")
    await expect(section.locator("#hall-form").get_by_label("Timezone")).to_have_value(
        "Asia/Urumqi"
    )
    await expect(section.locator('fieldset[data-day="sat"]')).to_contain_text("Closed on this day.")
    await screenshot(page, "admin-hall-admin-desktop-en")
    await chooser.select_option("1")
    await expect(page.locator("#hall-title")).to_have_text("Demo Service Centre")
    async with Manager(server, "admin-pass-123", username="admin") as api:
        halls = await api.get("/api/halls")
        second = next(h for h in halls if h["name_en"] == "Second Service Centre")
        assert second["opening_hours"]["mon"] == [["08:30", "12:00"], ["13:30", "17:00"]]
        assert "sat" not in second["opening_hours"]


def catalog(lang: str) -> dict[str, str]:
    with (WEB / "locale" / lang / "LC_MESSAGES" / "admin.po").open("rb") as handle:
        return {str(m.id): str(m.string or "") for m in read_po(handle, locale=lang) if m.id}


def test_the_admin_catalogs_translate_every_message_of_the_page() -> None:
    zh, en = catalog("zh_CN"), catalog("en")
    assert set(zh) == set(en)
    assert not [m for m, text in zh.items() if not text], "untranslated in zh_CN"
    assert not [m for m, text in en.items() if text], "en keeps the English ids"
    with (WEB / "locale" / "zh_CN" / "LC_MESSAGES" / "common.po").open("rb") as handle:
        common = {str(m.id) for m in read_po(handle) if m.id}
    template = {
        str(message)
        for _, message, _, _ in extract_from_file(
            "jinja2", str(WEB / "templates" / "admin.html"),
            options={"extensions": "jinja2.ext.i18n"},
        )
    }  # fmt: skip
    scripts = {
        m.group(2)
        for path in (WEB / "static").glob("admin*.js")
        for m in SCRIPT_STRING.finditer(path.read_text())
    }
    assert not sorted((template | scripts) - set(zh) - common)
    assert not sorted(set(zh) - template - scripts), "ids the page no longer uses"
    # Every script string reaches the page: the template hands each one over.
    page_strings = re.search(
        r"set page_strings = (?:\w+ \| merge\()?\{(.*?)\n\}\)? %\}",
        (WEB / "templates" / "admin.html").read_text(),
        re.S,
    )
    assert page_strings
    handed = set(re.findall(r'^\s*"((?:[^"\\]|\\.)*)": _\(', page_strings.group(1), re.M))
    assert scripts <= handed, sorted(scripts - handed)
    # The Chinese reads as a hall manager would: the hall's own words.
    for english, chinese in {
        "Matters": "事项",
        "Counters and profiles": "窗口配置",
        "Booking rules": "预约规则",
        "Places per slot": "每时段名额",
        "Holidays": "节假日",
        "Daily breaks": "每日午休",
        "Staff": "工作人员",
        "Devices": "设备",
        "Kiosk": "取号机",
        "Board": "显示屏",
        "Printer": "打印机",
        "Live dashboard": "实时看板",
        "Longest wait": "最长等候",
        "People waiting": "等候人数",
        "Share kept for walk-ins (percent)": "现场取号保留比例（百分比）",
        "Opening hours": "营业时间",
        "Service ratings": "好差评",
        "Simulation": "仿真与排班测算",
    }.items():
        assert zh[english] == chinese, english
