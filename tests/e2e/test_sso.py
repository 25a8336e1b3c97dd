"""Single sign-on in Chromium against a real OpenID Connect provider (oidc-provider on Node,
tests/oidc), through its own login and consent pages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import MakeModel
from tests.e2e.conftest import PASSWORD, NewPage
from tests.integration.conftest import Server, free_port
from tests.oidc import run_provider
from tests.toymodel import FILES, MODEL

pytestmark = pytest.mark.slow

ADMIN_GROUP = "simyard-admins"
ACCOUNTS: dict[str, dict[str, Any]] = {  # the provider's people: login -> claims
    "ana": {"email": "ana@example.org", "email_verified": True, "preferred_username": "ana",
            "name": "Ana Lima", "groups": ["staff"]},
    "boss": {"email": "boss@example.org", "email_verified": True, "preferred_username": "boss",
             "groups": ["staff", ADMIN_GROUP]},
    "carol": {"email": "carol@example.org", "email_verified": True,
              "preferred_username": "carol.at.provider", "groups": []},
}  # fmt: skip


@pytest.fixture
def sso_settings() -> dict[str, str]:
    """More SIMYARD_* settings for the server (a test parametrizes this to change them)."""
    return {}


@pytest.fixture
def server(tmp_path: Path, make_model: MakeModel, sso_settings: dict[str, str]) -> Iterator[Server]:
    """A server (an admin with a password, the toy model) that signs people in at a real
    provider, which has a client for this server's callback and the ACCOUNTS."""
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    with run_provider(
        redirect_uri=f"http://127.0.0.1:{port}/login/sso/callback",
        accounts=ACCOUNTS,
        log=tmp_path / "provider.log",
    ) as provider:
        env = {
            **os.environ,
            "SIMYARD_HOME": str(home),
            "SIMYARD_KILL_GRACE": "1",
            "SIMYARD_MAX_PARALLEL": "2",
            "SIMYARD_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
            "SIMYARD_BASE_URL": f"http://127.0.0.1:{port}",
            "SIMYARD_OIDC_SCOPES": "openid email profile groups",
            "SIMYARD_OIDC_ADMIN_GROUP": ADMIN_GROUP,
            **provider.settings(),
            **sso_settings,
        }
        env.pop("SIMYARD_URL", None)
        env.pop("SIMYARD_TOKEN", None)
        srv = Server(home=home, port=port, env=env)
        srv.add_user("admin", admin=True)
        try:
            srv.start()
            added = srv.cli("models", "add", make_model(MODEL, FILES))
            assert added.returncode == 0, added.stderr
            yield srv
        finally:
            srv.stop()


def only_loopback(page: Page) -> None:
    """Nothing leaves 127.0.0.1 (the provider's dev pages @import a web font)."""

    def route(request: Route) -> None:
        if urlsplit(request.request.url).hostname == "127.0.0.1":
            request.continue_()
        else:
            request.abort()

    page.context.route("**/*", route)


def sign_in_at_provider(page: Page, login: str, *, consent: bool = True) -> None:
    """From simyard's login page through the provider's login and consent pages."""
    page.get_by_role("link", name="Log in with single sign-on").click()
    page.get_by_placeholder("Enter any login").fill(login)
    page.get_by_placeholder("and password").fill("the provider checks no password")
    page.get_by_role("button", name="Sign-in").click()
    if consent:
        page.get_by_role("button", name="Continue").click()


def sso_page(new_page: NewPage, server: Server, path: str = "/login") -> Page:
    page = new_page()
    only_loopback(page)
    page.goto(server.url + path)
    return page


def who(page: Page) -> Any:
    return page.locator("header .who")


def test_a_new_user_signs_in_through_the_provider_and_comes_back_to_the_same_account(
    server: Server, new_page: NewPage
) -> None:
    page = sso_page(new_page, server, "/runs")
    expect(page).to_have_url(server.url + "/login?next=/runs")
    expect(page.get_by_label("Password")).to_be_visible()  # passwords still work beside SSO
    sign_in_at_provider(page, "ana")
    expect(page).to_have_url(server.url + "/runs")
    expect(page.get_by_role("heading", name="My runs")).to_be_visible()
    expect(who(page)).to_have_text("ana")  # a new account, not an admin

    again = sso_page(new_page, server)  # another browser: a fresh sign-in at the provider
    sign_in_at_provider(again, "ana")
    expect(again.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(who(again)).to_have_text("ana")

    admin = new_page("admin")
    admin.goto(server.url + "/admin")
    expect(admin.locator("#users tbody tr", has_text="ana@example.org")).to_have_count(1)
    expect(admin.locator("#user-ana")).to_be_visible()


def test_a_member_of_the_admin_group_becomes_an_admin(server: Server, new_page: NewPage) -> None:
    page = sso_page(new_page, server)
    sign_in_at_provider(page, "boss")
    expect(who(page)).to_have_text("boss · admin")
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()


def test_a_local_user_with_the_same_verified_email_is_linked_not_duplicated(
    server: Server, new_page: NewPage
) -> None:
    server.add_user("carol")  # carol@example.org, with a password
    page = sso_page(new_page, server)
    sign_in_at_provider(page, "carol")
    expect(who(page)).to_have_text("carol")  # not a new "carol.at.provider"

    admin = new_page("admin")
    admin.goto(server.url + "/admin")
    expect(admin.locator("#users tbody tr", has_text="carol@example.org")).to_have_count(1)
    expect(admin.locator("#user-carol\\.at\\.provider")).to_have_count(0)
    with httpx.Client(base_url=server.url) as http:  # and her password still works
        answer = http.post("/api/v1/tokens", json={"username": "carol", "password": PASSWORD})
    assert answer.status_code == 201, answer.text


def test_logging_out_ends_the_local_session(server: Server, new_page: NewPage) -> None:
    page = sso_page(new_page, server)
    sign_in_at_provider(page, "ana")
    expect(who(page)).to_have_text("ana")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(server.url + "/login")
    page.goto(server.url + "/runs")
    expect(page).to_have_url(server.url + "/login?next=/runs")
    expect(page.get_by_role("link", name="Log in with single sign-on")).to_be_visible()


def test_a_disabled_user_cannot_sign_in_by_sso(server: Server, new_page: NewPage) -> None:
    page = sso_page(new_page, server)
    sign_in_at_provider(page, "ana")
    expect(who(page)).to_have_text("ana")

    admin = new_page("admin")
    admin.goto(server.url + "/admin")
    admin.get_by_role("button", name="Disable ana").click()
    expect(admin.locator("#user-ana")).to_contain_text("disabled")

    page.goto(server.url + "/runs")  # the open session ended with the account
    expect(page).to_have_url(server.url + "/login?next=/runs")
    # The provider still knows her browser: it sends her straight back, and simyard refuses.
    page.get_by_role("link", name="Log in with single sign-on").click()
    expect(page.get_by_role("alert")).to_contain_text("this account is disabled")
    page.goto(server.url + "/runs")
    expect(page).to_have_url(server.url + "/login?next=/runs")


@pytest.mark.parametrize("sso_settings", [{"SIMYARD_LOCAL_PASSWORDS": "false"}])
def test_with_local_passwords_off_only_single_sign_on_lets_people_in(
    server: Server, new_page: NewPage
) -> None:
    page = sso_page(new_page, server)
    expect(page.get_by_role("link", name="Log in with single sign-on")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.get_by_label("Username")).to_have_count(0)

    with httpx.Client(base_url=server.url) as http:
        form = http.get("/login")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', form.text)
        assert csrf is not None
        refused = http.post("/login", data={"username": "admin", "password": PASSWORD,
                                            "csrf_token": csrf.group(1)})  # fmt: skip
        assert refused.status_code == 403
        assert "switched off" in refused.text
        token = http.post("/api/v1/tokens", json={"username": "admin", "password": PASSWORD})
        assert token.status_code == 403
        assert "/account" in token.json()["detail"]

    sign_in_at_provider(page, "boss")
    expect(who(page)).to_have_text("boss · admin")
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Account", level=1)).to_be_visible()


def test_the_providers_answer_replayed_in_another_browser_signs_nobody_in(
    server: Server, new_page: NewPage
) -> None:
    page = sso_page(new_page, server)
    answers: list[str] = []
    page.on("request", lambda r: answers.append(r.url) if "/login/sso/callback" in r.url else None)
    sign_in_at_provider(page, "ana")
    expect(who(page)).to_have_text("ana")
    assert len(answers) == 1

    thief = sso_page(new_page, server)  # the code and state, without the browser they belong to
    thief.goto(answers[0])
    expect(thief.get_by_role("alert")).to_contain_text("Single sign-on failed")
    thief.goto(server.url + "/runs")
    expect(thief).to_have_url(server.url + "/login?next=/runs")
