"""The run page's times in the browser: the reader's own time zone with the zone named, how
long ago, UTC on hover; how long the run queued apart from how long it ran."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import VIEWPORT, WAIT_MS, log_in, start_run, watch_csp
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

DURATION = re.compile(r"^(\d+\.\d s|\d+ min \d\d s|\d+ h \d\d min)$")


@pytest.fixture
def tokyo_page(browser: Browser, server: Server, csp_violations: list[str]) -> Iterator[Page]:
    """The admin, logged in, in a browser that lives in Tokyo (UTC+9, no summer time)."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="Asia/Tokyo")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch_csp(page, csp_violations)
    log_in(page, server, "admin")
    yield page
    context.close()


def tokyo(utc: str) -> tuple[str, str]:
    """An API time ("2026-12-01T19:03:05Z") as Tokyo's "04:03 GMT+9" and its UTC title's start."""
    day, hour, minute = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d)", utc).groups()  # type: ignore[union-attr]
    return f"{(int(hour) + 9) % 24:02d}:{minute} GMT+9", f"{day} {hour}:{minute}:"


def test_the_run_page_shows_its_times_in_the_browsers_zone_and_queued_apart_from_ran(
    server: Server, tokyo_page: Page
) -> None:
    run_id = start_run(server, days=2)
    page = tokyo_page
    page.goto(f"{server.url}/runs/{run_id}")  # while it goes on: run.js shows the later times
    expect(page.locator("#run-state")).to_have_text("succeeded")
    with server.http() as api:
        run = api.get(f"/runs/{run_id}").json()
    for cell, key in (("#run-created", "created_at"), ("#run-started", "started_at"),
                      ("#run-finished", "finished_at")):  # fmt: skip
        shown, utc = tokyo(run[key])
        moment = page.locator(f"{cell} time")
        expect(moment).to_contain_text(shown)
        if key == "created_at":  # and how long ago; the start and end need no reminder
            expect(moment).to_contain_text(re.compile(r"\((just now|\d+ min ago)\)"))
        expect(moment).to_have_attribute("title", re.compile(rf"^{utc}\d\d UTC"))
        expect(page.locator(cell)).not_to_contain_text("UTC")
    task = run["tasks"][0]
    shown, utc = tokyo(task["started_at"])
    started = page.locator(f"#task-{task['name']} td.started time")
    expect(started).to_contain_text(shown)
    expect(started).to_have_attribute("title", re.compile(rf"^{utc}\d\d UTC"))
    expect(page.locator("#run-queued")).to_have_text(DURATION)
    expect(page.locator("#run-duration")).to_have_text(DURATION)
    summary = page.locator("#run-summary")
    expect(summary).to_contain_text("Queued for")
    expect(summary).to_contain_text("Ran for")
