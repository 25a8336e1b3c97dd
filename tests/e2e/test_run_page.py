"""The compare page in the browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_the_compare_page_shows_both_values_of_a_changed_parameter(
    server: Server, logged_in: Page
) -> None:
    first = start_run(server, albedo=0.07)
    second = start_run(server, albedo=0.21)
    for run_id in (first, second):
        assert server.wait_for_run(run_id)["state"] == "succeeded"
    page = logged_in
    page.goto(f"{server.url}/compare?a={first}&b={second}")
    diff = page.locator("#param-diff")
    expect(diff).to_contain_text("albedo")
    expect(diff).to_contain_text("0.07")
    expect(diff).to_contain_text("0.21")
    screenshot(page, "compare")
