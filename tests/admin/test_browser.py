"""The console in a real browser: Debian's Chromium driven by Playwright (no browser download),
over SQLite and over the real PostgreSQL (``console_settings`` runs it on both).

Skipped with a message where /usr/bin/chromium is missing, except under CI (``CI`` set), where
a missing browser fails the run: .ci/run installs it. With ``PBX_BRIDGE_SCREENSHOTS=1`` the
screenshots go to docs/console/ (the ones the README shows); otherwise to a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.samples import sample
from tests.admin.conftest import PASSWORD, Rows
from tests.conftest import WEBHOOK

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        message = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: missing under CI, where .ci/run installs it")
        pytest.skip(message)
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the playwright package is missing under CI (pip install -e '.[test]')")
        pytest.skip("browser tests need the playwright package (pip install -e '.[test]')")
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _seed(client: Any, db: Rows) -> dict[str, str]:
    """A day of calls (some missed), one with a number to look for, and one dead job."""
    wanted = {**sample("call_end"), "direction": "inbound", "caller": "79161234567",
              "callee": "101"}  # fmt: skip
    bodies = [wanted] + [sample("call_end") for _ in range(7)] + [sample("call_missed")] * 1
    bodies += [sample("call_missed") for _ in range(3)]
    for body in bodies:
        assert (await client.post(WEBHOOK, data=body)).status == 200
    await db.until("SELECT COUNT(*) FROM jobs WHERE status = 'done'", len(bodies))
    assert (await client.post(WEBHOOK, data=bodies[1])).status == 200  # a duplicate
    assert (await client.post("/webhooks/onlinepbx/guess-0123456789", data=bodies[2])).status == 404
    assert (await client.post(WEBHOOK, data={"event": "call_end"})).status == 422
    now = await db.val("SELECT MAX(received_at) FROM events")
    # Spread the calls over the last 24 hours, so the charts have a shape.
    await db.run("UPDATE events SET received_at = ? - (id - 1) * 1.9 * 3600 + 60", now)
    await db.run(
        "UPDATE jobs SET created_at = (SELECT received_at FROM events WHERE id = event_id),"
        " updated_at = (SELECT received_at FROM events WHERE id = event_id) + id * 0.7"
    )
    await db.run(
        "UPDATE jobs SET status = 'dead', last_error = 'HTTP 400: phone is not valid'"
        " WHERE event_id = (SELECT id FROM events WHERE uuid = ?)",
        wanted["uuid"],
    )
    return wanted


async def test_console_in_chromium(browser, console_settings, start_bridge, tmp_path, sql):
    # Post-call jobs only: one per call, one dead job to retry (the live page then shows the
    # calls built from the events; LocalAdapter.list_live has its own console test).
    local = {"events": ["log_call", "create_task"]}
    settings = console_settings(schedule={"locale": "en"}, adapters={"local": local})
    client = await start_bridge(settings)
    db = sql(settings)
    wanted = await _seed(client, db)
    on_sqlite = settings.storage.url is None  # the screenshots are the SQLite run's
    shots = DOCS if os.environ.get("PBX_BRIDGE_SCREENSHOTS") and on_sqlite else tmp_path
    base = str(client.make_url("/admin/"))
    context = await browser.new_context(
        locale="en-US",
        viewport={"width": 1280, "height": 860},
        base_url=base.removesuffix("/admin/"),
    )
    page = await context.new_page()

    # Not logged in: every page leads to the login form; a wrong password is refused.
    await page.goto("/admin/calls")
    assert page.url.startswith(base + "login")
    await page.screenshot(path=shots / "login.png")
    await page.fill("input[name=password]", "not the password")
    async with page.expect_response(lambda r: r.url.endswith("/admin/login")) as refused:
        await page.click("button[type=submit]")
    assert (await refused.value).status == 401
    assert "Wrong password" in await page.inner_text("[role=alert]")

    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "calls")
    assert await page.get_attribute("html", "lang") == "en"

    # Overview: the numbers are the database's.
    await page.goto("/admin/")
    # Delivered counts the last 24 hours (every seeded call is within them); the rest all.
    expected = dict(await db.all("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    row = page.locator('tr[data-adapter="local"]')
    assert await row.locator('[data-count="done"]').inner_text() == str(expected["done"])
    assert await row.locator('[data-count="dead"]').inner_text() == str(expected["dead"])
    assert await row.locator('[data-count="pending"]').inner_text() == "0"
    assert "phone is not valid" in await row.inner_text()
    assert await page.locator("figure.chart svg rect").count() > 3
    await page.screenshot(path=shots / "overview.png", full_page=True)

    # Calls: the number typed in another format finds the call; open it.
    await page.goto("/admin/calls")
    await page.fill("input[name=q]", "8 (916) 123-45-67")
    await page.press("input[name=q]", "Enter")
    await page.wait_for_url("**/admin/calls?q=*")
    links = page.locator("table.calls a")
    assert await links.count() == 1
    await page.screenshot(path=shots / "calls.png", full_page=True)
    await links.first.click()
    await page.wait_for_url(f"**/admin/calls/{wanted['uuid']}*")
    assert "79161234567" in await page.inner_text("table.events")
    assert await page.inner_text("[data-status]") == "dead"
    await page.screenshot(path=shots / "call.png", full_page=True)

    # A POST without the CSRF token is refused (same session cookie, no token).
    job_id = await db.val("SELECT id FROM jobs WHERE status = 'dead'")
    forged = await page.request.post(f"/admin/outbox/{job_id}/retry", form={"x": "1"})
    assert forged.status == 403
    assert await db.val("SELECT status FROM jobs WHERE id = ?", job_id) == "dead"

    # Outbox: retry the dead job and see it delivered.
    await page.goto("/admin/outbox?status=dead")
    assert "phone is not valid" in await page.inner_text("table.jobs")
    await page.screenshot(path=shots / "outbox.png", full_page=True)
    await page.locator(f'tr[data-job="{job_id}"] button', has_text="Retry").click()
    await page.wait_for_url("**/admin/outbox?status=dead&retried=1")
    await db.until(f"SELECT status FROM jobs WHERE id = {job_id}", "done")
    await page.goto(f"/admin/calls/{wanted['uuid']}")
    assert await page.inner_text("[data-status]") == "delivered"

    for name in ("rejected", "settings", "live"):
        await page.goto(f"/admin/{name}")
        await page.screenshot(path=shots / f"{name}.png", full_page=True)
    await page.goto("/admin/?lang=ru")
    assert await page.get_attribute("html", "lang") == "ru"
    await page.goto("/admin/outbox?status=dead&lang=en")

    # Logout: back to the login page, and the console is closed again.
    await page.click("header button[type=submit]")
    await page.wait_for_url(base + "login")
    await page.goto("/admin/")
    assert page.url.startswith(base + "login")
    await context.close()
