"""The browser side, for real: Debian's Chromium driven by Playwright against a real server.

One browser for the session; per test a fresh ``simyard serve`` (own SIMYARD_HOME, the
toy model registered) and fresh browser contexts, so no cookie leaks between tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.conftest import EXAMPLES, REPO, MakeModel
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"  # what Server.add_user gives every account
SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
WAIT_MS = 30_000  # generous: a slow CI machine runs a server, a model and a browser at once

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("the e2e tests need Debian's Chromium: apt-get install -y chromium")
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
    yield launched
    launched.close()


@pytest.fixture
def server(tmp_path: Path, make_model: MakeModel) -> Iterator[Server]:
    """A real server with an admin (``admin``) and the toy model registered."""
    for srv in _server(tmp_path, {}):
        added = srv.cli("models", "add", make_model(MODEL, FILES))
        assert added.returncode == 0, added.stderr
        yield srv


def add_lake_heat(server: Server) -> None:
    """Register the bundled lake-heat example (it has a plot, labels and a pace parameter)."""
    added = server.cli("models", "add", EXAMPLES / "lake-heat")
    assert added.returncode == 0, added.stderr


NewPage = Callable[..., Page]


@pytest.fixture
def csp_violations() -> list[str]:
    """The Content-Security-Policy reports of the test's pages (a test that provokes one on
    purpose takes it out of this list)."""
    return []


@pytest.fixture
def new_page(browser: Browser, server: Server, csp_violations: list[str]) -> Iterator[NewPage]:
    """``new_page()``: an anonymous page in its own context; ``new_page("carol")``: logged in."""
    contexts: list[BrowserContext] = []
    violations = csp_violations

    def make(user: str | None = None) -> Page:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        watch_csp(page, violations)
        if user is not None:
            log_in(page, server, user)
            expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
        return page

    yield make
    for context in contexts:
        context.close()
    # Every page the test opened worked under the Content-Security-Policy, with no violation.
    assert violations == []


def watch_csp(page: Page, violations: list[str]) -> None:
    """Fill ``violations`` with every Content-Security-Policy report of ``page``'s documents."""
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI + ' in ' + e.documentURI"
        " + ' from ' + e.sourceFile + ':' + e.lineNumber + ':' + e.columnNumber + ' ' + e.sample))"
    )

    def on_console(message: Any) -> None:
        if "CSP violation" in message.text or "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)


@pytest.fixture
def logged_in(new_page: NewPage) -> Page:
    """A page of the admin, logged in through the real login form, on the model catalog."""
    return new_page("admin")


def log_in(page: Page, server: Server, user: str, password: str = PASSWORD) -> None:
    """Fill and send the login form as a person would."""
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def screenshot(page: Page, name: str) -> None:
    """Keep what the user sees as ``docs/screenshots/<name>.png`` (for docs/web.md)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def start_run(
    server: Server,
    model: str = "toy",
    *,
    user: str = "admin",
    forcing: str | None = FORCING,
    **params: Any,
) -> int:
    """Start a run through the API (the form has its own tests); return its id."""
    files = {"inputs.forcing": ("forcing.csv", forcing.encode())} if forcing else None
    fields = {"model": model, "params": json.dumps(params)}
    with server.http(user) as api:
        answer = api.post("/runs", data=fields, files=files)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def wait_for_task_state(
    server: Server, run_id: int, task: str, state: str, timeout: float = 60
) -> None:
    """Poll the API until ``task`` of the run is in ``state``."""
    deadline = time.monotonic() + timeout
    with server.http() as api:
        while time.monotonic() < deadline:
            tasks = {t["name"]: t["state"] for t in api.get(f"/runs/{run_id}").json()["tasks"]}
            if tasks.get(task) == state:
                return
            time.sleep(0.1)
    raise AssertionError(f"task {task} of run {run_id} never became {state}: {tasks}")


def page_errors(page: Page) -> list[str]:
    """A list that fills with the page's uncaught JavaScript errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors
