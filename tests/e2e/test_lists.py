"""The runs list, compare and sweep pages in the browser: selecting runs to compare, the
column chooser, live rows, local times, and exploring a sweep."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    VIEWPORT,
    WAIT_MS,
    NewPage,
    add_lake_heat,
    log_in,
    screenshot,
    start_run,
    watch_csp,
)
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def seconds(shown: str) -> float:
    """``1 min 05 s`` or ``3.2 s`` as seconds."""
    found = re.fullmatch(r"(?:(\d+) min )?([\d.]+) s", shown.strip())
    assert found, shown
    return int(found.group(1) or 0) * 60 + float(found.group(2))


def mark_page(page: Page) -> None:
    """Leave a mark on the page's window: a reload would wipe it."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def test_three_ticked_runs_open_a_compare_page_with_a_colour_each(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    ids = [
        start_run(server, "lake-heat", forcing=None, days=5, pace=0, albedo=albedo)
        for albedo in (0.05, 0.1, 0.2)
    ]
    for run_id in ids:
        assert server.wait_for_run(run_id)["state"] == "succeeded"
    page = logged_in
    page.goto(server.url + "/runs")
    button = page.get_by_role("button", name=re.compile("Compare"))
    expect(button).to_be_disabled()
    for run_id in ids:
        page.get_by_label(f"Select run #{run_id}").check()
    expect(button).to_have_text("Compare 3 runs")
    button.click()

    expect(page).to_have_url(re.compile(r"/compare\?run=\d+&run=\d+&run=\d+$"))
    expect(page.get_by_role("heading", name="Compare 3 runs", level=1)).to_be_visible()
    albedo = page.locator("#param-diff tr", has_text="albedo")
    expect(albedo.locator("td")).to_have_text(["0.2", "0.1", "0.05", "changed"])  # newest first
    expect(albedo.locator("td.differs")).to_have_count(2)  # unlike the first run's value
    chart = page.locator("#plot-0")
    expect(chart.locator(".main-svg").first).to_be_visible()
    # two columns a run: six lines, in three colours, one per run, as the legend shows
    lines = chart.locator(".scatterlayer .trace path.js-line")
    expect(lines).to_have_count(6)
    strokes = [re.sub(r"\s", "", s) for s in lines.evaluate_all(
        "paths => paths.map(p => getComputedStyle(p).stroke)")]  # fmt: skip
    assert len(set(strokes)) == 3, strokes
    legend = chart.locator(".legend .traces")
    expect(legend).to_have_count(6)
    for run_id in ids:
        expect(legend.filter(has_text=f"#{run_id} surface_temp")).to_have_count(1)
    legend_strokes = legend.locator("path.js-line").evaluate_all(
        "paths => paths.map(p => getComputedStyle(p).stroke)"
    )
    assert {re.sub(r"\s", "", s) for s in legend_strokes} == set(strokes)
    # the same colour marks each run in the tables
    swatches = page.locator("#param-diff thead .run-swatch")
    colours = swatches.evaluate_all("s => s.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) == 3
    screenshot(page, "compare-three")


def test_the_column_chooser_shows_a_metric_column_and_remembers_it(
    server: Server, logged_in: Page
) -> None:
    run_id = start_run(server, days=2, albedo=0.2)
    assert server.wait_for_run(run_id)["state"] == "succeeded"
    page = logged_in
    page.goto(server.url + "/runs")
    table = page.locator("#runs")
    total = table.locator("th", has_text="total")
    expect(total).to_be_hidden()
    expect(table.get_by_role("columnheader", name="Model")).to_be_visible()
    page.get_by_text("Columns", exact=True).click()
    page.get_by_label("metric total").check()
    page.get_by_role("checkbox", name="Model", exact=True).uncheck()
    expect(total).to_be_visible()
    expect(table.locator(f'tr[data-run="{run_id}"] td[data-col="metric:total"]')).to_have_text("20")
    expect(table.get_by_role("columnheader", name="Model")).to_be_hidden()
    page.reload()  # kept in this browser's localStorage
    expect(total).to_be_visible()
    expect(table.get_by_role("columnheader", name="Model")).to_be_hidden()
    page.get_by_text("Columns", exact=True).click()
    page.get_by_label("parameter albedo").check()
    expect(table.locator(f'tr[data-run="{run_id}"] td[data-col="param:albedo"]')).to_have_text(
        "0.2"
    )


def test_a_run_on_the_runs_list_changes_state_without_a_reload(
    server: Server, logged_in: Page
) -> None:
    page = logged_in
    run_id = start_run(server, days=6, pace=1)
    page.goto(server.url + "/runs")
    mark_page(page)
    row = page.locator(f'#runs tr[data-run="{run_id}"]')
    expect(row.locator(".state")).to_have_text(re.compile("queued|running"))
    expect(row.locator(".state")).to_have_text("running")
    expect(row.locator("progress")).to_be_visible()
    expect(row.locator(".state")).to_have_text("succeeded", timeout=60_000)
    expect(row.locator("progress")).to_have_count(0)
    expect(row.locator('[data-cell="ran"]')).to_have_text(re.compile(r"^\d+\.\d s$"))
    # a run started meanwhile is announced, not slipped in under the reader's eyes
    start_run(server, days=1)
    expect(page.locator("#runs-news")).to_contain_text("1 new run since this page was loaded")
    assert_not_reloaded(page)


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


def test_times_are_shown_in_the_browsers_zone_with_utc_on_hover(
    server: Server, tokyo_page: Page
) -> None:
    run_id = start_run(server, days=1)
    with server.http() as api:
        created = api.get(f"/runs/{run_id}").json()["created_at"]  # "2026-12-01T19:03:05Z"
    day, hour, minute = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d)", created).groups()  # type: ignore[union-attr]
    page = tokyo_page
    page.goto(server.url + "/runs")
    shown = page.locator(f'#runs tr[data-run="{run_id}"] td[data-col="created"] time')
    local_hour = (int(hour) + 9) % 24
    expect(shown).to_contain_text(f"{local_hour:02d}:{minute} GMT+9")
    expect(shown).to_contain_text(re.compile(r"\((just now|\d+ min ago)\)"))
    expect(shown).to_have_attribute("title", re.compile(rf"^{day} {hour}:{minute}:\d\d UTC"))


def test_a_sweep_is_explored_sorted_and_plotted_from_its_page(
    server: Server, new_page: NewPage
) -> None:
    add_lake_heat(server)
    page = new_page("admin")
    page.goto(server.url + "/models/lake-heat/sweep")
    count = page.locator("#sweep-count")
    page.get_by_label("Water albedo").fill("0.05, 0.2, 0.4")
    expect(count).to_have_text("This creates 3 runs.")
    page.get_by_label("drought").check()
    page.get_by_label("flood").check()
    expect(count).to_have_text("This creates 6 runs.")
    page.get_by_label("Water albedo").fill("0.05, 2")
    expect(page.locator("#error-sweep-albedo")).to_contain_text("must be at most 1")
    expect(count).to_contain_text("Not startable yet")
    page.get_by_label("Water albedo").fill("0.05, 0.2, 0.4")
    page.get_by_label("Simulation length").fill("8")
    page.get_by_label("Pace").fill("0")
    expect(count).to_have_text("This creates 6 runs.")
    expect(page.locator("#warning-sweep-albedo")).to_contain_text("above the usual maximum")
    page.get_by_role("button", name="Start sweep").click()

    expect(page).to_have_url(re.compile(r"/sweeps/\d+$"))
    expect(page.locator("#sweep-warnings")).to_contain_text(
        "albedo: 0.4 is above the usual maximum 0.3"
    )
    expect(page.locator("#sweep-state")).to_contain_text("finished", timeout=120_000)
    expect(page.locator("#sweep-progress-text")).to_contain_text("6 of 6 runs ended · 100 %")
    rows = page.locator("#sweep-results tbody tr")
    expect(rows).to_have_count(6)

    albedo_header = page.locator("#sweep-results thead th", has_text="albedo")
    albedo_column = 1 + ["albedo", "scenario"].index("albedo")
    cells = page.locator(f"#sweep-results tbody tr td:nth-child({albedo_column + 1})")
    albedo_header.click()
    expect(albedo_header).to_have_attribute("aria-sort", "ascending")
    expect(cells).to_have_text(["0.05", "0.05", "0.2", "0.2", "0.4", "0.4"])
    albedo_header.click()
    expect(albedo_header).to_have_attribute("aria-sort", "descending")
    expect(cells).to_have_text(["0.4", "0.4", "0.2", "0.2", "0.05", "0.05"])

    ran_header = page.locator("#sweep-results thead th", has_text="Ran for")
    ran_header.click()
    ran = [seconds(text) for text in page.locator(
        "#sweep-results tbody td[data-cell='ran']").all_inner_texts()]  # fmt: skip
    assert ran == sorted(ran), ran  # durations sort as times, not as text

    page.get_by_label("Metric").select_option("max_surface_temp")
    page.get_by_label("against parameter").select_option("albedo")
    scatter = page.locator("#explore-scatter")
    expect(scatter.locator(".scatterlayer .point")).to_have_count(6)
    expect(scatter.locator(".xtitle")).to_have_text("albedo")
    expect(scatter.locator(".ytitle")).to_have_text("max_surface_temp")
    page.get_by_label("against parameter").select_option("scenario")
    expect(scatter.locator(".xtitle")).to_have_text("scenario")
    parallel = page.locator("#explore-parallel")
    expect(parallel.locator(".scatterlayer .trace")).to_have_count(6)  # a line per run
    expect(parallel.locator(".xtick")).to_have_text(["albedo", "scenario", "max_surface_temp"])
    screenshot(page, "sweep-explore")


def test_the_executor_health_page_follows_a_task_run_without_a_reload(
    server: Server, logged_in: Page
) -> None:
    page = logged_in
    page.goto(server.url + "/admin/health")
    mark_page(page)
    running = page.locator("#running tbody tr")
    expect(running).to_have_text(["Nothing is running."])
    run_id = start_run(server, days=8, pace=1)
    expect(running.get_by_role("link", name=f"#{run_id}")).to_be_visible()
    expect(page.locator("#slots-used")).to_have_text("1")
    expect(page.locator("#health-note")).to_contain_text("Updated every 5 s")
    server.wait_for_run(run_id)
    expect(running).to_have_text(["Nothing is running."])
    assert_not_reloaded(page)
