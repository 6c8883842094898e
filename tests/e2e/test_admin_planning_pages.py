"""The manager's planning on /admin in headless Chromium against the real demo server: the
Simulation section (the last kept run's goals table, its chart and the chart's text, a run
started and followed from the keyboard) in both languages and at large text, and the
booking rules' ways of setting a slot's places, each saved and read back."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.pages import axe_check, browser, new_page, screenshot
from tests.e2e.test_admin_pages import Demo, Manager, hall, open_section, ready, sign_in
from tests.servers import onedoor

__all__ = ["browser", "hall"]
pytestmark = pytest.mark.slow

VERDICT = {"en": {True: "Yes", False: "No"}, "zh_CN": {True: "是", False: "否"}}


def one_decimal(value: float) -> str:
    return f"{value:.1f}"


async def test_the_simulation_section_shows_the_last_run_and_runs_one_from_the_keyboard(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    # A run kept for hall 1 by the command, as an operator would make one.
    kept = onedoor(
        ["simulate", "standard-075", "--seeds", "2", "--compare", "fifo,v1", "--save",
         "--hall", "1", "--quiet"],
        server.env,
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    async with Manager(server, creds["manager"]) as api:
        result = await api.get("/api/halls/1/simulation")
    goals = result["goals"]
    v2_hours = result["policies"]["v2"]["hourly"]

    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["manager"])
    # By keyboard: the section's link, then Enter.
    await page.locator('#sections-nav a[href="#simulation"]').focus()
    await page.keyboard.press("Enter")
    section = await ready(page, "simulation")
    await expect(section.locator("h1")).to_be_focused()
    await expect(section.locator("h1")).to_have_text("Simulation")
    made = section.locator("#simulation-made")
    await expect(made).to_contain_text("standard day, load 0.75")
    await expect(made).to_contain_text("A scenario file")
    await expect(made).to_contain_text("2 (seeds 1–2)")
    await expect(made).to_contain_text("75% of what the counters can serve")

    table = section.locator("#simulation-goals")
    header = table.locator("thead")
    for column in ("Figure", "OneDoor v2", "First come, first served (FIFO)", "OneDoor v1",
                   "Goal", "Goal met by OneDoor v2"):  # fmt: skip
        await expect(header).to_contain_text(column)
    for key, goal in goals.items():
        row = table.locator(f'tr[data-figure="{key}"]')
        await expect(row).to_contain_text(goal["goal"])
        if goal["met"] is not None:
            await expect(row.locator(".verdict")).to_have_text(
                ("✓ " if goal["met"] else "✗ ") + VERDICT["en"][goal["met"]]
            )
    p90 = table.locator('tr[data-figure="walkin_p90_vs_fifo"]')
    await expect(p90).to_contain_text("Walk-ins' 90th-percentile wait, compared with FIFO")
    await expect(p90).to_contain_text("≤ 1.25")
    figure = result["policies"]["v2"]["figures"]["walkin_p90_vs_fifo"]
    await expect(p90).to_contain_text(f"{figure['mean']:.2f} ± {figure['ci95']:.2f}")
    await expect(table.locator('tr[data-figure="booked_on_time"]')).to_contain_text("≥ 95%")
    await expect(table.locator('tr[data-figure="estimate_bias"]')).to_contain_text("within ±1.5")

    # The chart, named by its caption, described by a summary, and the same figures as text.
    chart = section.get_by_role("img", name="Mean (solid line) and 90th-percentile")
    await expect(chart).to_be_visible()
    await expect(chart.locator("canvas").first).to_be_visible()
    worst = max((h for h in v2_hours if h["mean_wait"] is not None), key=lambda h: h["mean_wait"])
    summary = section.locator("#simulation-chart-summary")
    await expect(summary).to_contain_text(
        f"OneDoor v2: walk-ins who came at {worst['hour']:02d}:00 waited longest, "
        f"{one_decimal(worst['mean_wait'])} min on average"
    )
    assert await chart.get_attribute("aria-describedby") == "simulation-chart-summary"
    first = v2_hours[0]
    row = section.locator(f'#simulation-hourly tr[data-hour="{first["hour"]}"]')
    await expect(row).to_contain_text(f"{first['hour']:02d}:00")
    await expect(row).to_contain_text(one_decimal(first["mean_wait"]))
    await expect(row).to_contain_text(one_decimal(first["p90_wait"]))
    await expect(section.locator("#simulation-legend")).to_contain_text(
        "OneDoor v2: 90th-percentile wait"
    )
    await expect(section.locator("code.command").last).to_have_text(
        "onedoor simulate --from-hall 1 --staffing --target-p90 20"
    )
    await axe_check(page, "simulation, desktop en")
    await screenshot(page, "admin-simulation-kept-desktop-en")

    # A run from the keyboard: the days are checked first, then the run is followed to its
    # end. The demo hall has no history before today, so it fails, saying why.
    days = section.get_by_label("Days of history to simulate from")
    await days.focus()
    await page.keyboard.press("Control+A")
    await page.keyboard.type("0")
    await page.keyboard.press("Enter")
    await expect(days).to_have_attribute("aria-invalid", "true")
    await expect(section.locator("#simulation-form")).to_contain_text(
        "Give a whole number from 1 to 365."
    )
    await page.keyboard.press("Control+A")
    await page.keyboard.type("14")
    await page.keyboard.press("Enter")
    progress = section.locator("#simulation-progress")
    await expect(progress).to_have_attribute("data-state", "running")
    await expect(progress).to_contain_text("Running… started at")
    await expect(progress).to_contain_text("from the last 14 days")
    await expect(progress).to_have_attribute("data-state", "failed", timeout=60_000)
    await expect(progress).to_contain_text(
        "Failed: the hall's history is not enough to simulate from yet. "
        "history: hall 1 has no served tickets in the last 14 days"
    )
    await expect(page.locator("#live")).to_contain_text("The simulation failed:")
    await expect(p90).to_contain_text("≤ 1.25")  # the kept run stays shown
    await axe_check(page, "simulation failed, desktop en")
    await screenshot(page, "admin-simulation-failed-desktop-en")

    # In Chinese, on a phone, at large text: the same run in the hall's words.
    await page.set_viewport_size({"width": 412, "height": 915})
    await page.goto(f"{server.base}/admin?lang=zh_CN#simulation")
    section = await ready(page, "simulation")
    await expect(section.locator("h1")).to_have_text("仿真与排班测算")
    await expect(page.locator('#sections-nav a[href="#simulation"]')).to_have_text("仿真与排班测算")
    table = section.locator("#simulation-goals")
    p90 = table.locator('tr[data-figure="walkin_p90_vs_fifo"]')
    await expect(p90).to_contain_text("现场取号第 90 百分位等候时间，与先到先服务之比")
    await expect(p90).to_contain_text("≤ 1.25")
    met = goals["walkin_p90_vs_fifo"]["met"]
    await expect(p90.locator(".verdict")).to_have_text(
        ("✓ " if met else "✗ ") + VERDICT["zh_CN"][met]
    )
    await expect(table.locator('tr[data-figure="estimate_bias"]')).to_contain_text("±1.5 以内")
    await expect(section.locator("#simulation-made")).to_contain_text("2 天（随机种子 1–2）")
    chart = section.get_by_role("img", name="各策略下，每小时到达的现场取号群众")
    await expect(chart.locator("canvas").first).to_be_visible()
    await expect(section.locator("#simulation-chart-summary")).to_contain_text(
        f"一门 v2：{worst['hour']:02d}:00 到达的现场取号群众等候最久"
    )
    await expect(section.locator("#simulation-progress")).to_contain_text(
        "失败： 大厅的历史记录还不够，暂时无法仿真。"
    )
    await page.locator("[data-large-text]").click()
    await expect(page.locator("html")).to_have_class("large")
    box = section.locator("#simulation-chart-box")
    canvas = chart.locator("canvas").first
    await expect(canvas).to_be_visible()
    box_width = (await box.bounding_box())["width"]
    assert (await canvas.bounding_box())["width"] <= box_width + 1
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    await axe_check(page, "simulation, phone zh_CN, large text")
    await screenshot(page, "admin-simulation-phone-zh_CN-large")
    await page.locator("[data-large-text]").click()


async def test_the_booking_rules_save_each_way_of_setting_places_and_the_plan_from_history(
    browser: Any, hall: Demo
) -> None:
    server, creds = hall
    async with Manager(server, creds["manager"]) as api:
        made = await api.http.post(
            "/api/halls/1/services",
            json={"name_zh": "不动产登记", "name_en": "Property registration", "prefix": "K",
                  "typical_minutes": 10},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        matter = made.json()["id"]
        # Counter 8 takes it as a second primary matter: half its time.
        counter = next(c for c in await api.get("/api/halls/1/counters") if c["number"] == 8)
        profile = [*counter["profile"], {"service_id": matter, "level": "primary"}]
        answer = await api.http.patch(
            f"/api/halls/1/counters/{counter['id']}", json={"profile": profile}
        )
        assert answer.status_code == 200, answer.text

    page = await new_page(browser, "desktop", "en")
    await sign_in(page, server, creds["manager"])

    async def choose_matter() -> Any:
        section = await open_section(page, "booking")
        await section.get_by_label("Matter", exact=True).select_option(
            label="K Property registration"
        )
        form = section.locator("#booking-form")
        await expect(form).to_have_attribute("data-service-id", str(matter))  # its rules loaded
        return form

    async def reload_matter() -> Any:
        await page.reload()
        await ready(page, "booking")
        return await choose_matter()

    async def stored() -> dict[str, Any]:
        async with Manager(server, creds["manager"]) as api:
            answer = await api.get(f"/api/halls/1/services/{matter}/booking")
        assert answer["bookable"] is True
        return answer["rules"]  # type: ignore[no-any-return]

    # New rules: places from what the counters can serve, planned from walk-in history.
    form = await choose_matter()
    await form.get_by_label("Book this matter online").check()
    counters_mode = form.get_by_label("From what the counters can serve")
    await expect(counters_mode).to_be_checked()
    await expect(form.get_by_label("Places per slot", exact=True)).to_be_disabled()
    await expect(form.get_by_label("Places per counter")).to_be_disabled()
    await form.get_by_label("Slot length (minutes)").fill("60")
    preview = form.locator("#booking-preview")
    await expect(preview).to_contain_text("Each slot: 3 places")  # 60 min × ½ ÷ 10 min
    await expect(preview).to_contain_text("give it 0.5 of a counter's time; a visit takes 10 min")
    target = form.get_by_label(
        "Plan places from walk-in history: fill the counters up to (percent)"
    )
    await target.fill("85")
    await expect(preview).to_contain_text("Each slot: up to 3 places, planned from the walk-ins")
    await form.get_by_role("button", name="Save booking rules").click()
    await expect(form.get_by_role("status")).to_contain_text("Booking rules for K Property")
    rules = await stored()
    assert (rules["capacity"], rules["per_counter"], rules["target_load"]) == (None, None, 0.85)
    assert rules["slot_minutes"] == 60 and rules["walk_in_share"] == 0
    await axe_check(page, "booking rules from the counters, planned")

    form = await reload_matter()
    await expect(form.get_by_label("From what the counters can serve")).to_be_checked()
    await expect(target).to_have_value("85")

    # Places per counter, chosen with the arrow keys; the plan turned off.
    await form.get_by_label("From what the counters can serve").focus()
    await page.keyboard.press("ArrowDown")
    per_counter = form.get_by_label("Places per counter")
    await expect(
        form.get_by_label("A number of places for each counter serving the matter")
    ).to_be_checked()
    await expect(per_counter).to_be_enabled()
    await expect(per_counter).to_have_value("1")
    await per_counter.fill("3")
    await target.fill("")
    await expect(preview).to_contain_text("Each slot: 3 places")
    await expect(preview).to_contain_text("(1 counters serve this matter now.)")
    await form.get_by_role("button", name="Save booking rules").click()
    await expect(form.get_by_role("status")).to_contain_text("Booking rules for K Property")
    rules = await stored()
    assert (rules["capacity"], rules["per_counter"], rules["target_load"]) == (None, 3, None)

    form = await reload_matter()
    await expect(
        form.get_by_label("A number of places for each counter serving the matter")
    ).to_be_checked()
    await expect(per_counter).to_have_value("3")
    await expect(target).to_have_value("")

    # A fixed number, with a share kept for walk-ins; a plan from history does not apply.
    await form.get_by_label("A fixed number of places per slot").check()
    await expect(per_counter).to_be_disabled()
    await form.get_by_label("Places per slot", exact=True).fill("7")
    await form.get_by_label("Share kept for walk-ins (percent)").fill("40")
    await expect(preview).to_contain_text("Each slot: 7 places; 4 can be booked online, 3 are kept")
    await target.fill("90")
    await expect(preview).to_contain_text("does not change a fixed number of places")
    await form.get_by_role("button", name="Save booking rules").click()
    await expect(form.get_by_role("status")).to_contain_text("Booking rules for K Property")
    rules = await stored()
    assert (rules["capacity"], rules["per_counter"]) == (7, 3)
    assert (rules["walk_in_share"], rules["target_load"]) == (0.4, 0.9)

    form = await reload_matter()
    await expect(form.get_by_label("A fixed number of places per slot")).to_be_checked()
    await expect(form.get_by_label("Places per slot", exact=True)).to_have_value("7")
    await expect(per_counter).to_have_value("3")
    await expect(form.get_by_label("Share kept for walk-ins (percent)")).to_have_value("40")
    await axe_check(page, "booking rules, fixed places")

    # Rules stored through the API load and save back unchanged, to the last digit.
    odd = {**rules, "capacity": None, "per_counter": 2, "walk_in_share": 0.33333,
           "target_load": 0.875, "cancel_cutoff_minutes": 95}  # fmt: skip
    async with Manager(server, creds["manager"]) as api:
        answer = await api.http.put(f"/api/halls/1/services/{matter}/booking", json=odd)
        assert answer.status_code == 200, answer.text
    before = await stored()
    form = await reload_matter()
    await expect(
        form.get_by_label("A number of places for each counter serving the matter")
    ).to_be_checked()
    await expect(target).to_have_value("87.5")
    await form.get_by_role("button", name="Save booking rules").click()
    await expect(form.get_by_role("status")).to_contain_text("Booking rules for K Property")
    assert await stored() == before
    await screenshot(page, "admin-booking-modes-desktop-en")
