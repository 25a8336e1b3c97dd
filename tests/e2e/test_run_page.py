"""The run page in the browser: live state and logs, plots, downloads, failure, cancel, access;
and the compare page."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import MakeModel
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


def _top(page: Page, selector: str) -> float:
    """Where the element's top is in the viewport, in CSS pixels."""
    return float(page.locator(selector).evaluate("e => e.getBoundingClientRect().top"))


def test_at_1024x640_the_summary_comes_first_and_the_running_tasks_log_is_in_sight(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    run_id = start_run(server, "lake-heat", forcing=None, days=20, pace=1)  # 20 s of simulate
    wait_for_task_state(server, run_id, "simulate", "running")
    page = logged_in
    page.set_viewport_size({"width": 1024, "height": 640})
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("#log-simulate .line").first).to_contain_text("day 1 of 20")
    assert page.evaluate("window.scrollY") == 0
    log_top = _top(page, "#log-simulate")
    screenshot(page, "run-running-1024")
    # its top and some five lines of it in sight
    assert 0 < log_top < 640 - 100, f"the running task's log starts at {log_top} px"
    expect(page.locator("#log-simulate")).to_be_in_viewport()
    # the one progress bar with time left, above the logs
    expect(page.locator("#run-progress")).to_be_visible()
    expect(page.locator("#run-progress-text")).to_contain_text("left")
    assert _top(page, "#run-progress") < _top(page, "#logs")
    sections = "#run-summary, #logs, #outputs-section, #inputs, #params"
    order = page.evaluate(f"""() => [...document.querySelectorAll("{sections}")].map(e => e.id)""")
    assert order == ["run-summary", "logs", "outputs-section", "inputs", "params"]
    # the finished task's log is folded, the running one's open, one not started folded
    assert page.locator("#logbox-preprocess").evaluate("d => d.open") is False
    assert page.locator("#logbox-simulate").evaluate("d => d.open") is True
    assert page.locator("#logbox-report").evaluate("d => d.open") is False
    expect(page.locator("#log-preprocess")).to_be_hidden()
    # each live line shows when the server captured it
    at = page.locator("#log-simulate .line .at").first
    assert re.fullmatch(r"\d\d:\d\d:\d\d", at.get_attribute("data-at") or "")
    assert re.fullmatch(r"captured \d{4}-\d\d-\d\dT[0-9:.]+Z", at.get_attribute("title") or "")
    screenshot(page, "run-running-1024")
    with server.http() as api:
        api.post(f"/runs/{run_id}/cancel")


def test_at_1366x768_a_failed_runs_summary_is_in_sight_and_its_quote_links_to_the_log_line(
    server: Server, logged_in: Page
) -> None:
    run_id = start_run(server, albedo=0.95)
    assert server.wait_for_run(run_id)["state"] == "failed"
    page = logged_in
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{server.url}/runs/{run_id}")
    summary = page.locator("#failure-summary")
    expect(summary).to_be_in_viewport()
    assert _top(page, "#failure-summary") < 400
    assert _top(page, "#failure-summary") < _top(page, "#logs")
    # the model's error line, quoted, is a link to that line of the log: line 4
    quote = summary.locator("a.quote-link", has_text="ERROR: albedo too high").first
    expect(quote).to_have_attribute("href", "#log-simulate-L4")
    quote.click()
    expect(page).to_have_url(re.compile(r"#log-simulate-L4$"))
    line = page.locator("#log-simulate-L4")
    expect(line).to_have_text(re.compile(r"ERROR: albedo too high for open water$"))
    expect(line).to_have_class(re.compile(r"\btarget\b"))
    expect(line).to_be_in_viewport()
    # the summary's text is still the summary's own
    expect(summary.locator(".failure-text")).to_contain_text(
        "The model said:\n  ERROR: albedo too high for open water"
    )


def test_a_log_has_line_numbers_and_a_search_that_keeps_the_matching_lines(
    server: Server, logged_in: Page
) -> None:
    run_id = start_run(server, days=12)
    assert server.wait_for_run(run_id)["state"] == "succeeded"
    page = logged_in
    page.goto(f"{server.url}/runs/{run_id}")
    box = page.locator("#logbox-simulate")
    assert box.evaluate("d => d.open") is False  # a finished task's log is folded
    box.locator("summary").click()
    lines = page.locator("#log-simulate .line")
    expect(lines).to_have_count(12)
    numbers = lines.evaluate_all("ls => ls.map(l => getComputedStyle(l, '::before').content)")
    assert numbers == [f'"{n}"' for n in range(1, 13)]
    # the number is drawn, not text: the log reads as the model wrote it
    expect(lines.nth(1)).to_have_text(re.compile(r"^day 2 of 12$"))
    at = lines.nth(0).locator(".at").get_attribute("data-at")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", at or "")

    search = page.get_by_label("Search the log of task simulate")
    search.fill("DAY 1")  # any case: day 1, day 10, day 11, day 12
    expect(lines).to_have_count(4)
    expect(lines.locator("mark").first).to_have_text("day 1")
    assert lines.evaluate_all("ls => ls.map(l => l.dataset.n)") == ["1", "10", "11", "12"]
    expect(box.locator(".log-matches")).to_have_text("4 matching lines")
    search.fill("no such words")
    expect(lines).to_have_count(0)
    expect(box.locator(".log-matches")).to_have_text("no line matches")
    search.fill("")
    expect(lines).to_have_count(12)


MANY_MANIFEST = """\
simyard: 1
name: many
version: "1"
parameters:
  wait: {type: number, default: 0, min: 0, max: 30}
tasks:
  write:
    command: [python3, write.py, "{wait}"]
    outputs: [out/]
"""

MANY_WRITE = """
import os, sys, time
time.sleep(float(sys.argv[1]))
for folder in "abc":
    os.makedirs(f"out/{folder}")
    for n in range(50):
        open(f"out/{folder}/f{n:03d}.txt", "w").write(f"{folder} {n}\\n")
"""


def test_many_outputs_show_as_folders_that_open_to_their_files(
    server: Server, logged_in: Page, make_model: MakeModel
) -> None:
    added = server.cli("models", "add", make_model(MANY_MANIFEST, {"write.py": MANY_WRITE}))
    assert added.returncode == 0, added.stderr
    run_id = start_run(server, "many", forcing=None, wait=3)
    wait_for_task_state(server, run_id, "write", "running")
    page = logged_in
    errors = page_errors(page)
    page.goto(f"{server.url}/runs/{run_id}")
    mark_page(page)
    expect(page.locator("#run-state")).to_have_text("succeeded")
    # the run ended while the page was open: its 150 outputs come as 3 folders
    folders = page.locator("#outputs details.output-folder")
    expect(folders).to_have_count(3)
    expect(page.locator("#outputs-section")).to_contain_text("150 files in 3 folders")
    folder_b = folders.nth(1)
    expect(folder_b.locator("summary")).to_contain_text("out/b/")
    expect(folder_b.locator("summary")).to_contain_text("50 files")
    expect(page.locator("#outputs a", has_text="out/b/f007.txt")).to_have_count(0)
    folder_b.locator("summary .muted").click()  # opens it; the folder's name is a link
    link = folder_b.locator("a[download]", has_text="out/b/f007.txt")
    expect(link).to_be_visible()
    expect(folder_b.locator(".folder-files tr")).to_have_count(50)
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "b 7\n"
    assert_not_reloaded(page)
    # the filter keeps the folders (and the opened folder's files) that match
    page.get_by_label("Filter the outputs").fill("out/c")
    expect(folders.nth(2)).to_be_visible()
    expect(folders.nth(0)).to_be_hidden()
    expect(folder_b).to_be_hidden()
    page.get_by_label("Filter the outputs").fill("F007")
    expect(folder_b).to_be_visible()
    expect(folder_b.locator(".folder-files tr:visible")).to_have_count(1)
    expect(folders.nth(2)).to_be_hidden()
    page.get_by_label("Filter the outputs").fill("")
    expect(folder_b.locator(".folder-files tr:visible")).to_have_count(50)
    # without script the folder's name leads to its own page of files
    folder_b.locator("summary a").click()
    expect(page.get_by_role("heading", name="out/b/", level=1)).to_be_visible()
    expect(page.locator("#folder-files a[download]")).to_have_count(50)
    assert errors == []
