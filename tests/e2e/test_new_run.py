"""The new-run form: inline validation of parameters and of uploaded files."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot
from tests.integration.conftest import Server
from tests.toymodel import FORCING

pytestmark = pytest.mark.slow

HOT_DAY = b"day,temp\n1,10.5\n2,75\n"  # row 3 (the header is row 1): 75 is above max 60


def upload(page: Page, label: str, name: str, content: bytes) -> None:
    page.get_by_label(re.compile(label, re.I)).set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": content}]
    )


def test_the_form_names_an_out_of_range_value_and_a_bad_csv_row_next_to_their_fields(
    server: Server, logged_in: Page
) -> None:
    page = logged_in
    page.get_by_role("link", name="New run").click()
    expect(page).to_have_url(server.url + "/models/toy/run")
    days = page.get_by_label(re.compile(r"\bdays\b", re.I))
    days.fill("1000")
    days.press("Tab")
    expect(page.locator("#error-param-days")).to_contain_text("must be at most 100")

    upload(page, "forcing", "forcing.csv", HOT_DAY)
    expect(page.locator("#error-input-forcing")).to_contain_text("row 3, column temp")
    screenshot(page, "new-run")

    days.fill("5")
    days.press("Tab")
    expect(page.locator("#error-param-days")).to_be_empty()
    upload(page, "forcing", "forcing.csv", FORCING.encode())
    expect(page.locator("#error-input-forcing")).to_be_empty()
    start = page.get_by_role("button", name="Start run")
    expect(start).to_be_enabled()

    notify_me = page.get_by_label("Notify me when this run ends")
    expect(notify_me).to_be_checked()  # by default: as the user's notification settings say
    notify_me.uncheck()
    start.click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    with server.http() as api:
        run = api.get(f"/runs/{run_id}").json()
    assert run["params"]["days"] == 5
    assert run["notify"] is False
