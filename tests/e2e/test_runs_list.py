"""The runs list and its filters."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_the_runs_list_shows_every_run_and_filters_by_state(
    server: Server, logged_in: Page
) -> None:
    good = start_run(server, days=4)
    bad = start_run(server, albedo=0.95)
    assert server.wait_for_run(good)["state"] == "succeeded"
    assert server.wait_for_run(bad)["state"] == "failed"
    page = logged_in
    page.get_by_role("link", name="Runs").click()
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("failed")  # newest first
    expect(rows.nth(1)).to_contain_text("succeeded")
    screenshot(page, "runs")

    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{server.url}/runs?state=failed&model=&show=&q=")
    expect(rows).to_have_count(1)
    expect(rows.get_by_role("link", name=f"#{bad}")).to_be_visible()
