"""What the browser tests of the pages share: Debian's Chromium through Playwright, the
vendored axe-core check, screenshots at phone and desktop sizes, and a demo hall served by
a real process.

Use: ``from tests.e2e.pages import browser, demo, axe_check, screenshot, SIZES`` (the two
fixtures are imported into the test module so pytest finds them)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, load_demo_without_printer, server_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SOURCE = AXE.read_text()
SHOTS = Path(os.environ.get("ONEDOOR_TEST_OUTPUT", "test-output")) / "screenshots"
SIZES = {"phone": (412, 915), "desktop": (1366, 900)}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium (Debian's), never a downloaded one."""
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("ONEDOOR_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """The demo hall (hall 1) on SQLite, served by a real process; its credentials by
    name: manager, clerk (passwords), kiosk, board (tokens)."""
    env = server_env(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'hall.sqlite3'}")
    creds = load_demo_without_printer(env)
    server = Server(env).start()
    yield server, creds
    output = server.stop()
    assert "Traceback" not in output, output


async def new_page(browser: Any, size: str = "desktop", lang: str | None = None) -> Any:
    """A fresh page (own cookies and storage) at one of ``SIZES``, failing on script errors."""
    width, height = SIZES[size]
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        locale={"en": "en-GB", "zh_CN": "zh-CN"}.get(lang or "", "zh-CN"),
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The pages run under a content security policy: anything it blocks is a defect.
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.script_errors = errors  # checked by axe_check
    return page


async def axe_check(page: Any, what: str) -> None:
    """No serious or critical accessibility violation on the page as it stands, and no
    script error so far."""
    assert not getattr(page, "script_errors", []), page.script_errors
    # Evaluated through the browser's debugging protocol, which the pages' content security
    # policy does not govern (a <script> tag added to the page would be refused).
    await page.evaluate(AXE_SOURCE)
    result = await page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{what}: {bad}"


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under the test output folder. Up to 90 s: a full page
    on a machine busy with the rest of the suite once took over Playwright's 30 s (the
    picture is a record, not what the test asserts)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, timeout=90_000)
    return path
