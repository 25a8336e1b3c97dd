"""The admin pages: users (add, refuse a taken name, disable) and executor health."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import NewPage, add_lake_heat, log_in, screenshot, start_run
from tests.e2e.conftest import wait_for_task_state as wait_for_task
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def add_user_through_form(page: Page, name: str, email: str, password: str) -> None:
    form = page.locator("#add-user")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Add user").click()


def test_an_admin_adds_a_user_who_can_then_log_in(
    server: Server, logged_in: Page, new_page: NewPage
) -> None:
    page = logged_in
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()

    add_user_through_form(page, "dora", "dora@example.org", "a long enough password")
    expect(page.get_by_role("status")).to_have_text("Added user dora.")
    row = page.locator("#user-dora")
    expect(row).to_contain_text("dora@example.org")
    expect(row.get_by_role("button", name="Disable dora")).to_be_visible()
    screenshot(page, "admin-users")

    other = new_page()
    log_in(other, server, "dora", "a long enough password")
    expect(other.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(other.get_by_role("link", name="Admin")).to_have_count(0)


def test_a_taken_name_and_a_short_password_are_named_next_to_their_fields(
    logged_in: Page, server: Server
) -> None:
    page = logged_in
    page.goto(server.url + "/admin")
    add_user_through_form(page, "admin", "someone@example.org", "short")
    expect(page.locator("#error-password")).to_have_text("must be at least 8 characters")
    add_user_through_form(page, "admin", "someone@example.org", "long enough, really")
    expect(page.locator("#error-name")).to_have_text("this name is taken")
    expect(page.locator("#add-user").get_by_label("Email")).to_have_value("someone@example.org")
    expect(page.locator("#users tbody tr")).to_have_count(1)


def test_a_disabled_user_cannot_log_in_until_enabled_again(
    server: Server, logged_in: Page, new_page: NewPage
) -> None:
    server.add_user("carol")
    page = logged_in
    page.goto(server.url + "/admin")
    # Not oneself: no Disable or Remove admin for one's own row (only the quota's Save).
    expect(page.locator("#user-admin").get_by_role("button")).to_have_text(["Save"])
    page.get_by_role("button", name="Disable carol").click()
    expect(page.locator("#user-carol")).to_contain_text("disabled")

    carol = new_page()
    log_in(carol, server, "carol")
    expect(carol.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_role("button", name="Enable carol").click()
    expect(page.locator("#user-carol")).not_to_contain_text("disabled")  # the new page is in
    page.get_by_role("button", name="Make admin carol").click()
    expect(page.locator("#user-carol")).to_contain_text("yes")
    log_in(carol, server, "carol")
    expect(carol.get_by_role("link", name="Admin")).to_be_visible()


def test_a_user_change_without_the_forms_csrf_token_is_refused(
    server: Server, logged_in: Page
) -> None:
    server.add_user("carol")
    page = logged_in
    page.goto(server.url + "/admin")
    make_admin = page.get_by_role("button", name="Make admin carol")
    action = make_admin.locator("xpath=ancestor::form").get_attribute("action")
    # The admin's own session cookie, but not the page's token: what a forged form sends.
    answer = page.request.post(server.url + str(action), form={"is_admin": "true"})
    assert answer.status == 403
    page.reload()
    expect(make_admin).to_be_visible()
    expect(page.locator("#user-carol td").nth(2)).to_have_text("no")


def test_a_modeller_gets_403_on_the_admin_pages(server: Server, new_page: NewPage) -> None:
    server.add_user("carol")
    page = new_page("carol")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ("/admin", "/admin/health"):
        answer = page.goto(server.url + path)
        assert answer is not None
        assert answer.status == 403
    expect(page.get_by_text("only an admin may open this page")).to_be_visible()


def test_the_health_page_shows_slots_and_the_running_task_run(
    server: Server, logged_in: Page
) -> None:
    add_lake_heat(server)
    run_id = start_run(server, "lake-heat", forcing=None, days=400, pace=0.5)
    wait_for_task(server, run_id, "simulate", "running")
    page = logged_in
    page.goto(server.url + "/admin")
    page.get_by_role("link", name="Executor health").click()
    expect(page.locator("#slots-total")).to_have_text("2")  # SIMYARD_MAX_PARALLEL of the fixture
    expect(page.locator("#slots-used")).to_have_text("1")
    expect(page.locator("#slots-free")).to_have_text("1")
    expect(page.locator("#queued")).to_have_text("0")
    row = page.locator("#running tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("simulate")
    expect(row.get_by_role("link", name=f"#{run_id}")).to_have_attribute("href", f"/runs/{run_id}")
    screenshot(page, "admin-health")
    page.get_by_role("link", name="All runs").first.click()
    expect(page.get_by_role("heading", name="All runs")).to_be_visible()
    assert server.cli("runs", "cancel", str(run_id)).returncode == 0
