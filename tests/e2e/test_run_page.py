"""The run page in the browser: live state and logs, plots, downloads, failure, cancel, access;
and the compare page."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import (
    WAIT_MS,
    NewPage,
    add_lake_heat,
    page_errors,
    screenshot,
    start_run,
    wait_for_task_state,
)
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow

RUN_URL = re.compile(r"/runs/(\d+)$")


def mark_page(page: Page) -> None:
    """Tag the loaded document: the tag is gone if the page reloads or navigates."""
    page.wait_for_load_state()
    page.evaluate("window.__marker = 1")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def test_a_run_started_from_the_form_goes_live_to_succeeded_with_log_plot_and_download(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    page = logged_in
    errors = page_errors(page)
    page.goto(server.url + "/models/lake-heat/run")
    page.locator("#param-days").fill("10")
    page.locator("#param-pace").fill("0.5")  # about 5 s of simulation: long enough to watch
    page.locator("#param-pace").press("Tab")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match is not None
    run_id = int(match.group(1))
    mark_page(page)

    # the run's state at the moment the first day's line shows in the log of simulate
    state_when_seen = page.wait_for_function(
        """() => document.getElementById("log-simulate").textContent.includes("day 1 of 10")
            && document.getElementById("run-state").textContent"""
    ).json_value()
    assert state_when_seen == "running", "the log line only appeared once the run had ended"
    expect(page.locator("#task-simulate .state")).to_have_text("running")
    screenshot(page, "run-running")

    expect(page.locator("#run-state")).to_have_text("succeeded")
    assert_not_reloaded(page)
    expect(page.locator("#log-simulate")).to_contain_text("day 10 of 10")
    expect(page.locator("#plot-0 .main-svg").first).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("max_surface_temp")
    page.get_by_role("heading", name="Metrics").evaluate("heading => heading.scrollIntoView()")
    screenshot(page, "run-succeeded")

    with server.http() as api:
        listed = {(f["task"], f["path"]): f for f in api.get(f"/runs/{run_id}/outputs").json()}
        content = api.get(f"/runs/{run_id}/outputs/simulate/results/summary.json").content
    expected = listed[("simulate", "results/summary.json")]["sha256"]
    assert hashlib.sha256(content).hexdigest() == expected
    link = page.locator("#outputs a", has_text="results/summary.json")
    with page.expect_download() as download:
        link.click()
    got = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(got).hexdigest() == expected
    assert download.value.suggested_filename == "summary.json"
    assert_not_reloaded(page)
    assert errors == []


def test_a_failed_run_says_why_in_words_and_quotes_the_models_error(
    server: Server, logged_in: Page
) -> None:
    run_id = start_run(server, albedo=0.95, pace=0.5)
    page = logged_in
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("failed")
    summary = page.locator("#failure-summary")
    expect(summary).to_be_visible()
    expect(summary.locator(".failure-what")).to_have_text(
        "The model reported an error in task simulate."
    )
    expect(summary.locator(".failure-what code")).to_have_text("simulate")
    expect(summary.locator(".failure-text")).to_contain_text(
        "ERROR: albedo too high for open water"
    )
    screenshot(page, "run-failed")


def test_cancel_run_stops_a_running_run_without_a_reload(server: Server, logged_in: Page) -> None:
    run_id = start_run(server, days=2, pace=3.5)  # 7 s of simulate, under its 8 s timeout
    wait_for_task_state(server, run_id, "simulate", "running")
    page = logged_in
    page.goto(f"{server.url}/runs/{run_id}")
    mark_page(page)
    expect(page.locator("#run-state")).to_have_text("running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")
    expect(page.locator("#task-simulate .state")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
    assert_not_reloaded(page)
    with server.http() as api:
        assert api.get(f"/runs/{run_id}").json()["state"] == "cancelled"


def test_another_users_run_page_is_not_found_and_an_anonymous_visitor_must_log_in(
    server: Server, new_page: NewPage
) -> None:
    run_id = start_run(server)
    server.add_user("bob")
    bob = new_page("bob")
    response = bob.goto(f"{server.url}/runs/{run_id}")
    assert response is not None
    assert response.status == 404
    expect(bob.get_by_role("heading", name="Not found", level=1)).to_be_visible()
    expect(bob.get_by_text(f"run {run_id} not found")).to_be_visible()
    expect(bob.locator("#run-state")).to_have_count(0)

    anonymous = new_page()
    anonymous.goto(f"{server.url}/runs/{run_id}")
    expect(anonymous).to_have_url(re.compile(r"/login\?next=/runs/\d+$"))
    expect(anonymous.get_by_label("Username")).to_be_visible()


def unwell(route: Route) -> None:
    route.fulfill(status=500, json={"detail": "the server is unwell"})


def test_the_page_catches_up_when_the_server_failed_to_answer_for_a_while(
    server: Server, logged_in: Page
) -> None:
    run_id = start_run(server, days=3, pace=2)  # 6 s: the page opens while it runs
    page = logged_in
    the_run = re.compile(rf"/api/v1/runs/{run_id}$")
    its_outputs = re.compile(rf"/api/v1/runs/{run_id}/outputs$")
    page.route(the_run, unwell)
    page.route(its_outputs, unwell)
    page.goto(f"{server.url}/runs/{run_id}")
    mark_page(page)
    error = page.locator("#page-error")
    expect(error).to_contain_text("Could not update the run: the server is unwell")
    assert server.wait_for_run(run_id)["state"] == "succeeded"
    expect(page.locator("#run-state")).to_have_text("succeeded")  # the event stream alone

    # no event is left to ask for the run again: the page tries again on its own
    with page.expect_request(the_run, timeout=WAIT_MS):
        pass
    page.unroute(the_run)
    expect(error).to_contain_text("Could not list the outputs: the server is unwell")
    with page.expect_request(its_outputs, timeout=WAIT_MS):
        pass
    page.unroute(its_outputs)
    expect(page.locator("#outputs")).to_contain_text("results/summary.json")
    expect(page.locator("#metrics")).to_contain_text("total")
    expect(error).to_be_hidden()
    assert_not_reloaded(page)


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
