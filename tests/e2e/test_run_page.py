"""The run page: live state and log, plots, downloads, failure summary, cancel, compare."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import NewPage, add_lake_heat, screenshot, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

RUN_URL = re.compile(r"/runs/(\d+)$")


def test_a_run_started_from_the_form_goes_live_to_succeeded_with_a_plot_and_downloads(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    page = logged_in
    page.goto(server.url + "/models/lake-heat/run")
    page.get_by_label(re.compile("Simulation length")).fill("20")
    page.get_by_label(re.compile(r"^Pace")).fill("0.15")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(RUN_URL)
    found = RUN_URL.search(page.url)
    assert found
    run_id = int(found.group(1))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    expect(page.locator("#log-simulate")).to_contain_text("day 5 of 20")
    assert "succeeded" not in page.locator("#run-state").inner_text()  # lines came while it ran
    screenshot(page, "run-running")

    expect(page.locator("#run-state")).to_contain_text("succeeded", timeout=90_000)
    traces = page.locator(".js-plotly-plot .scatterlayer .trace")
    expect(traces.first).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "run-succeeded")

    with server.http() as api:
        listed = api.get(f"/runs/{run_id}/outputs").json()
    summary = next(
        o for o in listed if o["task"] == "simulate" and o["path"] == "results/summary.json"
    )
    with page.expect_download() as info:
        page.locator('a[href$="/simulate/results/summary.json"]').first.click()
    saved = Path(info.value.path())
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == summary["sha256"]


def test_a_failed_run_shows_the_models_error_line(server: Server, logged_in: Page) -> None:
    run_id = start_run(server, albedo=0.95)
    page = logged_in
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_contain_text("failed")
    expect(page.locator("#failure-summary")).to_contain_text(
        "ERROR: albedo too high for open water"
    )
    screenshot(page, "run-failed")


def test_cancelling_a_running_run_after_confirming(server: Server, logged_in: Page) -> None:
    add_lake_heat(server)
    run_id = start_run(server, "lake-heat", forcing=None, days=400, pace=0.5)
    page = logged_in
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_contain_text("running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-state")).to_contain_text("cancelled")
    assert server.wait_for_run(run_id, timeout=30)["state"] == "cancelled"


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


def test_another_user_cannot_open_a_run_and_anonymous_users_must_log_in(
    server: Server, logged_in: Page, new_page: NewPage
) -> None:
    run_id = start_run(server)
    url = f"{server.url}/runs/{run_id}"
    owner = logged_in.goto(url)
    assert owner is not None
    assert owner.status == 200
    expect(logged_in.locator("#run-state")).to_be_visible()

    server.add_user("carol")
    carol = new_page("carol")
    answer = carol.goto(url)
    assert answer is not None
    assert answer.status in (403, 404)
    expect(carol.locator("#run-state")).to_have_count(0)

    anonymous = new_page()
    anonymous.goto(url)
    expect(anonymous).to_have_url(f"{server.url}/login?next=/runs/{run_id}")
    expect(anonymous.get_by_role("button", name="Log in")).to_be_visible()
