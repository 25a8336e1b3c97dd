"""Accounts like a shared service needs them: sessions that really end, scoped tokens that can
be listed, expire and be revoked, password changes, and disabling that cuts a user off."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import csrf_of
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"  # what Server.add_user gives every account


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: the toy model, users made per test."""
    tmp = tmp_path_factory.mktemp("accounts")
    for srv in _server(tmp, {"SIMYARD_SESSION_IDLE_TIMEOUT": "4"}):
        assert srv.cli("models", "add", write_model(tmp / "toy", MODEL, FILES)).returncode == 0
        yield srv


_names = iter(range(10_000))


def new_user(server: Server) -> str:
    name = f"user{next(_names)}"
    server.add_user(name)
    return name


@contextmanager
def browser_of(server: Server, user: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = client.post(
            "/login",
            data={"username": user, "password": password, "csrf_token": token.group(1)},
        )
        assert answer.status_code == 303, answer.text
        yield client


def logged_in(client: httpx.Client) -> bool:
    """Whether a page of the app opens (not a redirect to the login page)."""
    answer = client.get("/runs")
    return answer.status_code == 200


def copy_of(client: httpx.Client) -> httpx.Client:
    """Another client holding the same cookies, as an attacker who copied them would."""
    twin = httpx.Client(base_url=str(client.base_url), timeout=30, follow_redirects=False)
    for cookie in client.cookies.jar:
        twin.cookies.set(cookie.name, cookie.value)
    return twin


def test_logout_ends_the_session_even_for_a_copied_cookie(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as client, copy_of(client) as thief:
        assert logged_in(thief)
        csrf = csrf_of(client.get("/runs").text)
        client.post("/logout", data={"csrf_token": csrf})
        assert not logged_in(thief)
        refused = thief.post("/api/v1/runs", json={"model": "toy"}, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 401


def test_a_cookie_from_before_the_login_does_not_become_logged_in(accounts: Server) -> None:
    user = new_user(accounts)
    with httpx.Client(base_url=accounts.url, timeout=30, follow_redirects=False) as victim:
        page = victim.get("/login")
        with copy_of(victim) as planted:  # a session id fixed before the victim logs in
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            victim.post(
                "/login",
                data={"username": user, "password": PASSWORD, "csrf_token": token.group(1)},
            )
            assert logged_in(victim)
            assert not logged_in(planted)


def test_an_idle_session_ends(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as client:
        assert logged_in(client)
        time.sleep(5)  # SIMYARD_SESSION_IDLE_TIMEOUT=4 on this server
        assert not logged_in(client)


def test_an_active_session_stays_until_it_idles(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as client:
        for _ in range(4):  # 6 s of use, every 1.5 s: longer than the idle time
            time.sleep(1.5)
            assert logged_in(client)


def test_changing_the_password_ends_the_other_sessions_only(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as here, browser_of(accounts, user) as there:
        csrf = csrf_of(here.get("/account").text)
        answer = here.post(
            "/account/password",
            data={"csrf_token": csrf, "current_password": PASSWORD,
                  "new_password": "a much better one", "repeat_password": "a much better one"},
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        assert logged_in(here)
        assert not logged_in(there)
    with browser_of(accounts, user, "a much better one") as again:
        assert logged_in(again)


def test_a_wrong_current_password_is_named_and_changes_nothing(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as client:
        csrf = csrf_of(client.get("/account").text)
        answer = client.post(
            "/account/password",
            data={"csrf_token": csrf, "current_password": "not it",
                  "new_password": "a much better one", "repeat_password": "a much better one"},
        )  # fmt: skip
        assert answer.status_code == 422
        assert "this is not your password" in answer.text
    with browser_of(accounts, user, PASSWORD) as again:
        assert logged_in(again)


def test_log_out_everywhere_else(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as here, browser_of(accounts, user) as there:
        page = here.get("/account").text
        assert page.count("this browser") == 1
        here.post("/account/sessions/end", data={"csrf_token": csrf_of(page)})
        assert logged_in(here)
        assert not logged_in(there)


def test_a_temporary_password_must_be_changed_at_the_next_login(accounts: Server) -> None:
    user = new_user(accounts)
    with browser_of(accounts, user) as before:
        set_it = accounts.cli(
            "users", "passwd", user, "--temporary", "--password-stdin", stdin="temporary 123\n"
        )
        assert set_it.returncode == 0, set_it.stderr
        assert not logged_in(before)  # the operator's change ended every session
    with browser_of(accounts, user, "temporary 123") as client:
        assert client.get("/runs").headers["location"] == "/account/password"
        csrf = csrf_of(client.get("/account/password").text)
        api = client.get("/api/v1/runs", headers={"X-CSRF-Token": csrf})
        assert api.status_code == 403
        assert "new password" in api.json()["detail"]
        client.post(
            "/account/password",
            data={"csrf_token": csrf, "current_password": "temporary 123",
                  "new_password": "my own secret", "repeat_password": "my own secret"},
        )  # fmt: skip
        assert logged_in(client)


def token_of(server: Server, user: str, **extra: object) -> str:
    answer = httpx.post(
        server.url + "/api/v1/tokens",
        json={"username": user, "password": PASSWORD, **extra},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def test_a_read_token_reads_but_cannot_start_or_cancel(accounts: Server) -> None:
    user = new_user(accounts)
    token = token_of(accounts, user, scope="read", token_name="dashboard")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=accounts.url + "/api/v1", headers=headers, timeout=30) as api:
        assert api.get("/runs").status_code == 200
        refused = api.post("/runs", json={"model": "toy", "params": {}})
        assert refused.status_code == 403
        assert "read" in refused.json()["detail"]


def test_tokens_are_listed_without_their_secret_and_revoked_at_once(accounts: Server) -> None:
    user, other = new_user(accounts), new_user(accounts)
    token = token_of(accounts, user, token_name="laptop", expires_in_days=30)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=accounts.url + "/api/v1", headers=headers, timeout=30) as api:
        listed = api.get("/tokens").json()
        laptop = next(t for t in listed if t["name"] == "laptop")
        assert laptop["scope"] == "run"
        assert laptop["last_used_at"] is not None
        assert laptop["expires_at"] is not None
        assert token not in json.dumps(listed)
        assert {t["user"] for t in listed} == {user}
        with accounts.http(other) as intruder:
            assert intruder.delete(f"/tokens/{laptop['id']}").status_code == 404
        assert api.delete(f"/tokens/{laptop['id']}").status_code == 204
        assert api.get("/runs").status_code == 401
    with accounts.http() as admin:
        everyone = {t["user"] for t in admin.get("/tokens", params={"all_users": True}).json()}
        assert {"admin", other} <= everyone


def test_operator_lists_and_revokes_tokens(accounts: Server) -> None:
    user = new_user(accounts)
    token = token_of(accounts, user, token_name="ci-runner")
    listed = accounts.cli("tokens", "list", "--user", user)
    assert listed.returncode == 0, listed.stderr
    assert "ci-runner" in listed.stdout
    assert token not in listed.stdout
    with accounts.http() as admin:
        mine = [t for t in admin.get("/tokens", params={"all_users": True}).json()
                if t["name"] == "ci-runner"]  # fmt: skip
    assert str(mine[0]["id"]) in listed.stdout
    assert accounts.cli("tokens", "revoke", str(mine[0]["id"])).returncode == 0
    answer = httpx.get(
        accounts.url + "/api/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 401


def test_a_token_with_a_bad_scope_is_refused_naming_it(accounts: Server) -> None:
    user = new_user(accounts)
    answer = httpx.post(
        accounts.url + "/api/v1/tokens",
        json={"username": user, "password": PASSWORD, "scope": "everything"},
        timeout=30,
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "scope"


def start_long_run(api: httpx.Client) -> int:
    started = api.post(
        "/runs",
        data={"model": "toy", "params": json.dumps({"pace": 30})},
        files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
    )
    assert started.status_code == 201, started.text
    return int(started.json()["id"])


def disable(server: Server, user: str, runs: str) -> str:
    """Disable ``user`` on the admin page, choosing what happens to their runs; the notice."""
    with browser_of(server, "admin") as admin:
        page = admin.get("/admin").text
        target = re.search(rf'id="user-{user}".*?/admin/users/(\d+)/disabled', page, re.S)
        assert target
        done = admin.post(
            f"/admin/users/{target.group(1)}/disabled",
            data={"csrf_token": csrf_of(page), "disabled": "true", "runs": runs},
        )
        assert done.status_code == 303
        notice = re.search(r'<p class="ok" role="status">([^<]*)</p>', admin.get("/admin").text)
        assert notice
        return notice.group(1)


def test_disabling_a_user_ends_sessions_tokens_and_streams_at_once(accounts: Server) -> None:
    user = new_user(accounts)
    token = token_of(accounts, user)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=accounts.url + "/api/v1", headers=headers, timeout=30) as api:
        run_id = start_long_run(api)
        stream_ended = threading.Event()

        def follow() -> None:
            with (
                httpx.Client(base_url=accounts.url, headers=headers, timeout=120) as reader,
                reader.stream("GET", f"/api/v1/runs/{run_id}/events/follow") as events,
            ):
                for _ in events.iter_lines():
                    pass
            stream_ended.set()

        follower = threading.Thread(target=follow, daemon=True)
        with browser_of(accounts, user) as session:
            follower.start()
            time.sleep(1)
            assert not stream_ended.is_set()
            notice = disable(accounts, user, "leave")
            assert "logged out everywhere, runs left to finish" in notice
            assert not logged_in(session)
            assert api.get("/runs").status_code == 401
            assert stream_ended.wait(10), "the disabled user's stream kept going"
    with accounts.http() as admin:
        assert admin.get(f"/runs/{run_id}").json()["state"] in ("queued", "running")
        admin.post(f"/runs/{run_id}/cancel")
    assert accounts.wait_for_run(run_id)["state"] == "cancelled"


def test_disabling_a_user_can_cancel_their_runs(accounts: Server) -> None:
    user = new_user(accounts)
    with accounts.http(user) as api:
        run_id = start_long_run(api)
    assert "1 unfinished run(s) cancelled" in disable(accounts, user, "cancel")
    assert accounts.wait_for_run(run_id)["state"] == "cancelled"
