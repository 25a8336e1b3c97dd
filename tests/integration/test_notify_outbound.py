"""The outbound policy of every channel on a real server: refused when saved, refused when
sent (the outbox says why), and delivered to an allowed loopback listener."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.integration.test_notify import Receiver, run_toy
from tests.integration.test_web_pages import browser, csrf_of
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    listener = Receiver(fail_first=0)
    yield listener
    listener.close()


def toy_server(tmp_path: Path, make_model: MakeModel, **env: str) -> Iterator[Server]:
    gen = _server(tmp_path, env)
    server = next(gen)
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "forcing.csv").write_text(FORCING)
    yield server
    for _ in gen:
        pass


def test_saving_a_loopback_chat_or_webhook_url_is_refused_naming_the_field(
    tmp_path: Path, make_model: MakeModel, receiver: Receiver
) -> None:
    port = receiver.httpd.server_address[1]
    for server in toy_server(tmp_path, make_model):
        with server.http() as api:
            answer = api.put("/users/me/notifications", json={
                "apprise_urls": ["ntfy://topic", f"json://127.0.0.1:{port}/x"],
                "webhook_url": f"http://localhost:{port}/hook"})  # fmt: skip
            assert answer.status_code == 422
            errors = {e["field"]: e["message"] for e in answer.json()["errors"]}
            assert set(errors) == {"apprise_urls[1]", "webhook_url"}
            assert "127.0.0.1 is a loopback address" in errors["apprise_urls[1]"]
            assert "loopback address" in errors["webhook_url"]
            assert api.get("/users/me/notifications").json()["apprise_urls"] == []
        with browser(server) as page:
            form = {"csrf_token": csrf_of(page.get("/settings").text), "email": "true",
                    "apprise_urls": f"json://[::1]:{port}/x"}  # fmt: skip
            answer = page.post("/settings", data=form)
        assert answer.status_code == 422
        assert "line 1: ::1 is not allowed (::1 is a loopback address)" in answer.text
        run_toy(server, tmp_path)
        time.sleep(2)
        assert receiver.requests == []


def test_chat_and_webhook_reach_an_allowed_listener_and_are_refused_once_no_longer_allowed(
    tmp_path: Path, make_model: MakeModel, receiver: Receiver
) -> None:
    port = receiver.httpd.server_address[1]
    for server in toy_server(tmp_path, make_model, SIMYARD_OUTBOUND_ALLOW="127.0.0.1/32"):
        with server.http() as api:
            answer = api.put("/users/me/notifications", json={
                "email": False, "apprise_urls": [f"json://127.0.0.1:{port}/chat"],
                "webhook_url": receiver.url})  # fmt: skip
            assert answer.status_code == 200, answer.text
        first = run_toy(server, tmp_path)
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        bodies = sorted((json.loads(body) for _, body in receiver.requests), key=len)
        assert len(bodies) == 2
        assert f"run {first['id']} succeeded" in bodies[0]["title"]  # the chat message
        assert bodies[1]["run_id"] == first["id"]  # the webhook's event

        # The admin takes loopback off the list: the saved URLs are refused when sent.
        server.stop()
        server.env.pop("SIMYARD_OUTBOUND_ALLOW")
        server.start()
        run_toy(server, tmp_path)
        with browser(server) as page:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                outbox = page.get("/admin/outbox").text
                if outbox.count("127.0.0.1 is a loopback address") >= 2:
                    break
                time.sleep(0.2)
        assert outbox.count("127.0.0.1 is not allowed (127.0.0.1 is a loopback address)") == 2
        assert len(receiver.requests) == 2  # nothing more arrived
