"""Logging in through the login form."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import NewPage, log_in, screenshot
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_catalog(
    server: Server, new_page: NewPage
) -> None:
    page = new_page()
    log_in(page, server, "admin", password="not my password")
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Username")).to_have_value("admin")  # kept for the second try
    screenshot(page, "login")

    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("link", name="toy")).to_be_visible()
    screenshot(page, "catalog")


def test_anonymous_visitors_are_sent_to_the_login_page_and_back(
    server: Server, new_page: NewPage
) -> None:
    page = new_page()
    page.goto(server.url + "/runs")
    expect(page).to_have_url(server.url + "/login?next=/runs")
    log_in_button = page.get_by_role("button", name="Log in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("correct horse battery")
    log_in_button.click()
    expect(page.get_by_role("heading", name="All runs")).to_be_visible()
