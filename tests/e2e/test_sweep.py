"""A sweep started from the browser: the sweep page follows its runs live and overlays plots."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import add_lake_heat, screenshot
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_a_sweep_from_the_form_is_followed_live_and_its_runs_plotted_together(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    page = logged_in
    page.goto(server.url + "/")
    page.locator(".card", has_text="Lake heat budget model").get_by_role(
        "link", name="New sweep"
    ).click()
    expect(page).to_have_url(re.compile(r"/models/lake-heat/sweep$"))
    page.get_by_label("Water albedo").fill("0.05, 0.2, 0.9")
    page.get_by_label("Simulation length").fill("12")
    page.get_by_label("Pace").fill("0.15")
    page.get_by_role("button", name="Start sweep").click()

    expect(page).to_have_url(re.compile(r"/sweeps/\d+$"))
    state = page.locator("#sweep-state")
    expect(state).to_contain_text("running")
    rows = page.locator("#sweep-results tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text("0.9")  # the axis's order (another row may show 0.9 s)
    # No reload by hand: the page follows the runs and draws itself again when all have ended.
    expect(state).to_contain_text("finished", timeout=120_000)
    expect(state).to_contain_text("3 succeeded")
    chart = page.locator("#plot-0")
    expect(chart.locator(".main-svg").first).to_be_visible()
    legend = chart.locator(".legendtext")
    expect(legend.filter(has_text="albedo=0.9").first).to_be_visible()
    expect(legend.filter(has_text="albedo=0.05").first).to_be_visible()
    screenshot(page, "sweep")
