"""Sharing in the browser: the owner shares a run with a second user on the run page; that
user, signed in, sees it read-only (no cancel, rerun or share controls) until unshared."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import NewPage, page_errors, screenshot, start_run
from tests.integration.conftest import Server

pytestmark = pytest.mark.slow


def test_the_owner_shares_a_run_and_the_reader_sees_it_read_only(
    server: Server, new_page: NewPage
) -> None:
    server.add_user("alice")
    server.add_user("bob")
    # A run still going, so its owner sees a Cancel button and the reader must not.
    run_id = start_run(server, user="alice", days=25, pace=0.15)  # ~4 s of its 8 s limit

    owner = new_page("alice")
    owner.goto(f"{server.url}/runs/{run_id}")
    expect(owner.get_by_role("button", name="Cancel run")).to_be_visible()
    owner.locator("#shares > summary").click()
    expect(owner.locator("#share-list")).to_contain_text("Not shared")
    owner.get_by_label("Share read-only with user").fill("nobody")
    owner.get_by_role("button", name="Share", exact=True).click()
    expect(owner.locator("#share-error")).to_have_text("no user 'nobody'")
    owner.get_by_label("Share read-only with user").fill("bob")
    owner.get_by_role("button", name="Share", exact=True).click()
    expect(
        owner.get_by_role("status").filter(has_text="Shared read-only with bob.")
    ).to_be_visible()
    expect(owner.locator("#share-list")).to_contain_text("bob")
    expect(owner.get_by_role("button", name="Unshare with bob")).to_be_visible()
    screenshot(owner, "run-share")

    reader = new_page("bob")
    errors = page_errors(reader)
    reader.goto(f"{server.url}/runs/{run_id}")
    expect(reader.locator("#read-only-note")).to_contain_text("shared with you by alice, read-only")
    expect(reader.locator("#run-state")).to_be_visible()
    expect(reader.get_by_role("button", name="Cancel run")).to_be_hidden()
    expect(reader.get_by_role("link", name="Edit and rerun")).to_be_hidden()
    expect(reader.locator("#shares")).to_have_count(0)
    screenshot(reader, "run-read-only")
    # The page stays read-only as the run goes on and ends (run.js shows the buttons it may).
    expect(reader.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    expect(reader.get_by_role("button", name="Rerun", exact=True)).to_be_hidden()
    assert errors == []
    # The reader's runs list has it under "shared with me", marked read-only.
    reader.goto(f"{server.url}/runs")
    reader.get_by_label("Whose").select_option("shared")
    reader.get_by_role("button", name="Filter").click()
    row = reader.locator(f'tr[data-run="{run_id}"]')
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("read-only")

    owner.reload()  # the fold is closed again; its summary counts the shares
    expect(owner.locator("#shares > summary")).to_have_text("Share (1)")
    owner.locator("#shares > summary").click()
    owner.get_by_role("button", name="Unshare with bob").click()
    expect(
        owner.get_by_role("status").filter(has_text="No longer shared with bob.")
    ).to_be_visible()
    reader.goto(f"{server.url}/runs/{run_id}")
    expect(reader.get_by_text(f"run {run_id} not found")).to_be_visible()
