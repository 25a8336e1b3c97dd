"""Edit and rerun, in the browser: the form filled from a run, its input kept, one value
changed, a name and tags given; the new run keeps the same forcing file."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_edit_and_rerun_fills_the_form_from_the_run(server: Server, logged_in: Page) -> None:
    first = start_run(server, days=2, site="Lake North")
    server.wait_for_run(first)
    page = logged_in
    page.goto(f"{server.url}/runs/{first}")
    inputs = page.locator("#inputs")  # what the run was given: name, size, sha256, first rows
    expect(inputs).to_contain_text("forcing.csv")
    inputs.locator(".input-head summary").click()
    expect(inputs.locator(".input-head table")).to_be_visible()
    expect(page.locator("#provenance")).to_contain_text("sha256:")
    page.get_by_role("link", name="Edit and rerun").click()

    expect(page.locator("#from-run-note")).to_contain_text(f"run #{first}")
    days = page.get_by_label(re.compile(r"\bdays\b", re.I))
    expect(days).to_have_value("2")
    expect(page.get_by_label(re.compile(r"\bsite\b", re.I))).to_have_value("Lake North")
    expect(page.locator(".kept-input")).to_contain_text("forcing.csv")
    days.fill("3")
    page.get_by_label("Name", exact=True).fill("three days")
    page.get_by_label("Tags").fill("calibration, v2")
    page.get_by_role("button", name="Start run").click()

    expect(page.locator("#run-state")).to_have_text("succeeded")
    second = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert second != first
    with server.http() as api:
        run = api.get(f"/runs/{second}").json()
        inputs = [e for e in api.get(f"/runs/{second}/provenance").json()["@graph"]
                  if str(e["@id"]).endswith("/inputs/forcing")]  # fmt: skip
        before = [e for e in api.get(f"/runs/{first}/provenance").json()["@graph"]
                  if str(e["@id"]).endswith("/inputs/forcing")]  # fmt: skip
    assert run["params"]["days"] == 3
    assert run["params"]["site"] == "Lake North"
    assert run["name"] == "three days"
    assert run["tags"] == ["calibration", "v2"]
    assert run["rerun_of"] == first
    assert inputs[0]["sha256"] == before[0]["sha256"]
