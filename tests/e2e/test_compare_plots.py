"""The compare page in the browser charts each run from its own result file: two runs whose
plot's file is ``out/{k}.csv`` show a line each; a run with no such file is noted."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import MakeModel
from tests.e2e.conftest import page_errors, start_run
from tests.integration.conftest import Server
from tests.integration.test_compare_plots import CURVES, CURVES_FILES

pytestmark = pytest.mark.slow


def test_compare_draws_each_run_from_its_own_placeholder_file(
    server: Server, logged_in: Page, make_model: MakeModel
) -> None:
    added = server.cli("models", "add", make_model(CURVES, CURVES_FILES))
    assert added.returncode == 0, added.stderr
    two, three, none = (start_run(server, "curves", forcing=None, k=k) for k in (2, 3, 9))
    for run_id in (two, three, none):
        assert server.wait_for_run(run_id)["state"] == "succeeded"
    page = logged_in
    errors = page_errors(page)
    page.goto(f"{server.url}/compare?run={two},{three},{none}")
    chart = page.locator("#plot-0")
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(chart.locator(".scatterlayer .trace path.js-line")).to_have_count(2)
    legend = chart.locator(".legend .traces")
    expect(legend).to_have_text([f"#{two} v", f"#{three} v"])
    # each line is its run's own file: v = k * t, so the last points differ
    ys = page.evaluate(
        "() => document.querySelector('#plot-0 .plot-area').data.map(t => t.y.at(-1))"
    )
    assert ys == [8, 12]
    expect(chart.locator(".plot-note")).to_have_text(
        [f"#{none} No chart: out/{{k}}.csv is not among this run's outputs."]
    )
    expect(page.locator("#page-error")).to_be_hidden()
    # the glob's chart: each run's last match in natural order (step10, not step2)
    glob = page.locator("#plot-1")
    expect(glob.locator(".scatterlayer .trace path.js-line")).to_have_count(2)
    last = page.evaluate(
        "() => document.querySelector('#plot-1 .plot-area').data.map(t => t.y.at(-1))"
    )
    assert last == [10, 10]
    assert errors == []
