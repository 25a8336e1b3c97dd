"""Pages over plain HTTP (no browser): login with CSRF, notification settings, the outbox."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Server]:
    yield from _server(tmp_path, {})


@contextmanager
def browser(server: Server, user: str = "admin") -> Iterator[httpx.Client]:
    """A cookie-keeping client logged in through the login form."""
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        log_in(client, user)
        yield client


def log_in(client: httpx.Client, user: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    answer = client.post("/login", data={"username": user, "password": "correct horse battery",
                                         "csrf_token": token.group(1), "next": "/"})  # fmt: skip
    assert answer.status_code == 303, answer.text


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)


def test_wrong_password_is_told_and_pages_need_a_login(web_server: Server) -> None:
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        assert client.get("/runs", follow_redirects=False).headers["location"].startswith("/login")
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = client.post("/login", data={"username": "admin", "password": "nope",
                                             "csrf_token": token.group(1)})  # fmt: skip
        assert answer.status_code == 401
        assert "Wrong username or password." in answer.text


def test_a_form_without_the_csrf_token_is_refused(web_server: Server) -> None:
    with browser(web_server) as client:
        assert client.post("/settings", data={"email": "true"}).status_code == 403
        assert client.post("/api/v1/runs/1/cancel").status_code == 403  # cookie without token


def test_mail_without_smtp_lands_in_the_outbox_page(
    web_server: Server, make_model: MakeModel, tmp_path: Path
) -> None:
    assert web_server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "f.csv").write_text(FORCING)
    done = web_server.cli("run", "toy", "-i", f"forcing={tmp_path / 'f.csv'}", "--wait", "--json")
    run_id = json.loads(done.stdout)["id"]
    with browser(web_server) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = client.get("/admin/outbox").text
            if f"toy run {run_id} succeeded" in page:
                break
            time.sleep(0.2)
        assert f"[simyard] toy run {run_id} succeeded" in page
        assert "admin@example.org" in page


def test_settings_are_saved_and_a_bad_webhook_url_is_named(web_server: Server) -> None:
    with browser(web_server) as client:
        token = csrf_of(client.get("/settings").text)
        bad = client.post("/settings", data={"csrf_token": token, "webhook_url": "ftp://x",
                                             "outcomes": ["failed"]})  # fmt: skip
        assert bad.status_code == 422
        assert "must start with http:// or https://" in bad.text
        assert 'value="ftp://x"' in bad.text  # what the user typed is kept
        ticked = client.post("/settings", data={"csrf_token": token, "webhook_url": "ftp://x",
                                                "email": "true"})  # fmt: skip
        assert ticked.status_code == 422
        assert re.search(r'name="email" value="true"\s+checked', ticked.text), "email unticked"
        good = client.post("/settings", data={"csrf_token": token, "outcomes": ["failed"],
                                              "webhook_url": "https://example.org/h"})  # fmt: skip
        assert good.status_code == 303
        prefs = client.get("/api/v1/users/me/notifications").json()
        assert prefs["outcomes"] == ["failed"]
        assert prefs["email"] is False
        assert prefs["webhook_url"] == "https://example.org/h"


def test_a_modeller_cannot_open_the_outbox(web_server: Server) -> None:
    web_server.add_user("carol")
    with browser(web_server, "carol") as client:
        assert client.get("/admin/outbox").status_code == 403


def test_another_user_gets_404_on_a_run_page_and_anonymous_the_login(
    web_server: Server, make_model: MakeModel, tmp_path: Path
) -> None:
    assert web_server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "f.csv").write_text(FORCING)
    done = web_server.cli("run", "toy", "-i", f"forcing={tmp_path / 'f.csv'}", "--wait", "--json")
    run_id = json.loads(done.stdout)["id"]
    web_server.add_user("dave")
    with browser(web_server) as owner:
        page = owner.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert 'id="run-state"' in page.text
    with browser(web_server, "dave") as other:
        missing = other.get(f"/runs/{run_id}", headers={"accept": "text/html"})
        assert missing.status_code == 404
        # The error page keeps the navigation (and who is logged in) to go on from.
        assert '<nav aria-label="Main">' in missing.text
        assert 'href="/runs"' in missing.text
        assert "dave" in missing.text
    with httpx.Client(base_url=web_server.url, timeout=30) as anonymous:
        answer = anonymous.get(f"/runs/{run_id}", follow_redirects=False)
        assert answer.headers["location"].startswith("/login")


def test_the_form_without_javascript_starts_a_run_and_keeps_the_notify_choice(
    web_server: Server, make_model: MakeModel
) -> None:
    assert web_server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    with browser(web_server) as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/models/toy/run").text)
        assert token
        files = {"inputs.forcing": ("forcing.csv", FORCING.encode(), "text/csv")}
        started = {}
        for notify_me in (True, False):
            form = {"csrf_token": token.group(1), "version": "0.1", "params.days": "2"}
            if notify_me:
                form["notify_me"] = "on"
            answer = client.post("/models/toy/run", data=form, files=files)
            assert answer.status_code == 303, answer.text
            started[notify_me] = client.get("/api/v1" + answer.headers["location"]).json()
    assert started[True]["notify"] is None  # the owner's settings decide
    assert started[False]["notify"] is False
    assert started[False]["params"]["days"] == 2


def test_a_sweep_from_the_form_shows_every_run_and_a_refusal_keeps_what_was_typed(
    web_server: Server, make_model: MakeModel
) -> None:
    assert web_server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    web_server.add_user("bob")
    with browser(web_server) as client:
        form_page = client.get("/models/toy/sweep")
        assert form_page.status_code == 200
        assert "Start sweep" in form_page.text
        token = csrf_of(form_page.text)
        files = {"inputs.forcing": ("forcing.csv", FORCING.encode(), "text/csv")}
        form = {"csrf_token": token, "version": "0.1", "values.days": "2, 500",
                "values.albedo": "0.1", "mode": "grid", "notify_me": "on"}  # fmt: skip
        refused = client.post("/models/toy/sweep", data=form, files=files)
        assert refused.status_code == 422
        field_error = re.search(r'id="error-sweep-days">([^<]*)<', refused.text)
        assert field_error
        assert "500: must be at most 100" in field_error.group(1)
        assert 'value="2, 500"' in refused.text  # what the user typed is kept
        assert "select them again (forcing.csv)" in refused.text

        form["values.days"] = "2, 3"
        started = client.post("/models/toy/sweep", data=form, files=files)
        assert started.status_code == 303, started.text
        sweep_path = started.headers["location"]
        sweep_id = int(sweep_path.rsplit("/", 1)[1])
        deadline = time.monotonic() + 120
        while client.get(f"/api/v1/sweeps/{sweep_id}").json()["state"] != "finished":
            assert time.monotonic() < deadline, "the sweep did not finish"
            time.sleep(0.3)
        page = client.get(sweep_path).text
        rows = re.findall(r'<tr id="sweep-run-(\d+)">(.*?)</tr>', page, re.S)
        assert len(rows) == 2
        assert all("succeeded" in cells for _, cells in rows)
        assert sorted(re.findall(r"<td>(20|30)</td>", page)) == ["20", "30"]  # metric total
        assert f'href="/sweeps/{sweep_id}"' in client.get("/sweeps").text
        run_page = client.get(f"/runs/{rows[0][0]}").text
        assert f'part of <a href="/sweeps/{sweep_id}">sweep #{sweep_id}</a>' in run_page
    with browser(web_server, "bob") as other:
        assert other.get(sweep_path).status_code == 404
        assert f"/sweeps/{sweep_id}" not in other.get("/sweeps").text
