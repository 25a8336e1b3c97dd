"""The audit log on a real server: the admin's page and API list logins (with the client's
address), tokens, user changes, model registration and notification settings, filtered, and
never a password, token, webhook secret or webhook path; a modeller may see neither."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server
from tests.integration.test_rate_limits import PASSWORD, QUICK_MODEL, Client, new_user

pytestmark = pytest.mark.slow

WRONG = "Wr0ng-pa55word-for-the-audit"
TYPED_AS_NAME = "hunter2-typed-in-the-name-field"
HOOK_PATH = "T0KEN-in-the-webhook-path"
HOOK_SECRET = "whsec-signing-secret-of-the-test"
SPOOFED = "203.0.113.77"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("audit")
    yield from _server(tmp, {"SIMYARD_OUTBOUND_ALLOW": "127.0.0.1"})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found
    return found.group(1)


def entries(api: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    answer = api.get("/audit", params=filters)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def test_the_audit_page_and_api_list_security_events_and_no_secret(
    audited: Server, tmp_path: Any
) -> None:
    victim = new_user(audited)
    with Client(audited, "127.0.0.2") as stranger:  # a failed login, with a forged header
        page = stranger.http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        failed = stranger.http.post(
            "/login",
            data={"username": victim, "password": WRONG, "csrf_token": token.group(1)},
            headers={"X-Forwarded-For": SPOOFED},
        )
        assert failed.status_code == 401
        assert stranger.form_login(TYPED_AS_NAME, WRONG).status_code == 401
    with Client(audited, "127.0.0.3") as owner:
        made = owner.token_request(victim, PASSWORD)
        assert made.status_code == 201
        secret_token = made.json()["token"]
    headers = {"Authorization": f"Bearer {secret_token}"}
    with httpx.Client(base_url=audited.url + "/api/v1", headers=headers) as mine:
        saved = mine.put(
            "/users/me/notifications",
            json={"webhook_url": f"http://127.0.0.1:9/hooks/{HOOK_PATH}",
                  "webhook_secret": HOOK_SECRET},
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
    assert (
        audited.cli("models", "add", write_model(tmp_path / "quick", QUICK_MODEL)).returncode == 0
    )
    with Client(audited, "127.0.0.4") as admin:
        assert admin.form_login("admin", PASSWORD).status_code == 303
        users = admin.http.get("/admin").text
        victim_id = re.search(r"/admin/users/(\d+)/", users.split(f'id="user-{victim}"')[1])
        assert victim_id
        disabled = admin.http.post(
            f"/admin/users/{victim_id.group(1)}/disabled",
            data={"disabled": "true", "runs": "leave", "csrf_token": csrf_of(users)},
        )
        assert disabled.status_code == 303
        page = admin.http.get("/admin/audit")
        assert page.status_code == 200
        filtered = admin.http.get(
            "/admin/audit", params={"user": victim, "action": "user.disabled"}
        )

    with audited.http("admin") as api:
        listed = entries(api)
        raw = api.get("/audit").text
        by_action = {entry["action"]: entry for entry in reversed(listed)}  # the newest wins
        failed_login = next(
            e for e in listed if e["action"] == "login.failed" and e["account"] == victim
        )
        assert (failed_login["actor"], failed_login["client"]) == ("anonymous", "127.0.0.2")
        assert failed_login["detail"] == {"reason": "wrong password", "via": "form"}
        unknown = next(e for e in listed if e["action"] == "login.failed" and e["account"] is None)
        assert unknown["detail"]["reason"] == "no such user"
        created = next(
            e for e in listed if e["action"] == "token.created" and e["account"] == victim
        )
        assert (created["actor"], created["client"]) == (victim, "127.0.0.3")
        assert by_action["user.disabled"]["actor"] == "admin"
        assert by_action["user.disabled"]["account"] == victim
        assert by_action["user.disabled"]["client"] == "127.0.0.4"
        assert by_action["model.registered"]["target"] == "model quick 1"
        assert by_action["notifications.changed"]["detail"]["webhook"] == "http://127.0.0.1:9/…"
        assert by_action["user.added"]["actor"] == "admin"  # the Users page added the victim
        # filters
        assert {e["action"] for e in entries(api, action="login.failed")} == {"login.failed"}
        for entry in entries(api, user=victim):
            assert victim in (entry["actor"], entry["account"])
        assert [e["action"] for e in entries(api, user=victim, action="user.disabled")] == [
            "user.disabled"
        ]
        newest = entries(api, limit=2)
        older = entries(api, limit=2, before=newest[-1]["id"])
        assert [e["id"] for e in newest + older] == [e["id"] for e in listed[:4]]

    for answer in (raw, page.text, filtered.text):
        for secret in (WRONG, TYPED_AS_NAME, secret_token, HOOK_PATH, HOOK_SECRET, SPOOFED,
                       PASSWORD, audited.tokens["admin"]):  # fmt: skip
            assert secret not in answer
    table = page.text.split('id="audit"')[1]  # the rows, not the filter's list of actions
    for shown in ("login.failed", "127.0.0.2", "token.created", "user.disabled",
                  "model.registered", victim):  # fmt: skip
        assert shown in table
    rows = filtered.text.split('id="audit"')[1]
    assert "user.disabled" in rows
    assert "model.registered" not in rows
    assert "token.created" not in rows


def test_a_modeller_may_see_neither_the_audit_page_nor_the_api(audited: Server) -> None:
    modeller = new_user(audited)
    with Client(audited, "127.0.0.5") as client:
        assert client.form_login(modeller, PASSWORD).status_code == 303
        assert client.http.get("/admin/audit").status_code == 403
        token = client.token_request(modeller, PASSWORD).json()["token"]
        refused = client.http.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403
