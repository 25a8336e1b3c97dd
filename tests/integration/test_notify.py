"""Notifications with a real SMTP server (aiosmtpd) and a real webhook receiver on loopback."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.chaos import ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server, free_port
from tests.integration.test_web_pages import browser
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


class Smtp:
    """A real SMTP server on a loopback port that can be started and stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.box = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count: int, timeout: float = 60) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + timeout
        while len(self.box.messages) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.box.messages


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    server = Smtp(free_port())
    server.start()
    yield server
    server.stop()


def notify_server(tmp_path: Path, smtp_port: int, **extra: str) -> Iterator[Server]:
    env = {"SIMYARD_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
           "SIMYARD_MAIL_FROM": "simyard@example.org",
           "SIMYARD_BASE_URL": "http://simyard.example.org", **extra}  # fmt: skip
    yield from _server(tmp_path, env)


@pytest.fixture
def mail_server(tmp_path: Path, smtp: Smtp, make_model: MakeModel) -> Iterator[Server]:
    gen = notify_server(tmp_path, smtp.port)
    server = next(gen)
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "forcing.csv").write_text(FORCING)
    yield server
    for _ in gen:
        pass


def run_toy(server: Server, tmp_path: Path, *params: str) -> dict[str, Any]:
    args = [a for p in params for a in ("-p", p)]
    done = server.cli("run", "toy", *args, "-i", f"forcing={tmp_path / 'forcing.csv'}", "--wait",
                      "--json")  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_success_email_has_outcome_parameters_metrics_link_and_outputs(
    mail_server: Server, smtp: Smtp, tmp_path: Path
) -> None:
    run = run_toy(mail_server, tmp_path, "days=4")
    assert run["state"] == "succeeded"
    ((rcpts, message),) = smtp.wait_for(1)
    time.sleep(1.5)  # a second message would have arrived by now
    assert len(smtp.box.messages) == 1
    assert rcpts == ["admin@example.org"]
    assert message["Subject"] == f"[simyard] toy run {run['id']} succeeded"
    text = message.get_body(("plain",)).get_content()
    assert "Duration:" in text
    assert "days = 4" in text
    assert "total = 40" in text
    assert f"http://simyard.example.org/runs/{run['id']}" in text
    assert "results/summary.json" in text
    assert message.get_body(("html",)) is not None


def test_failure_email_quotes_the_models_error_line(
    mail_server: Server, smtp: Smtp, tmp_path: Path
) -> None:
    run = run_toy(mail_server, tmp_path, "albedo=0.95")
    assert run["state"] == "failed"
    ((_, message),) = smtp.wait_for(1)
    assert message["Subject"] == f"[simyard] toy run {run['id']} failed"
    text = message.get_body(("plain",)).get_content()
    assert "the model reported an error" in text
    assert "Failed task: simulate" in text
    assert "ERROR: albedo too high for open water" in text


def test_no_notify_sends_nothing(mail_server: Server, smtp: Smtp, tmp_path: Path) -> None:
    done = mail_server.cli("run", "toy", "--no-notify", "-i", f"forcing={tmp_path / 'forcing.csv'}",
                           "--wait")  # fmt: skip
    assert done.returncode == 0
    run_toy(mail_server, tmp_path)  # this one notifies: when it arrived, the first was skipped
    assert len(smtp.wait_for(1)) == 1
    time.sleep(1.0)
    assert len(smtp.box.messages) == 1


def test_smtp_down_during_the_run_then_up_delivers_once(
    tmp_path: Path, make_model: MakeModel
) -> None:
    smtp = Smtp(free_port())  # not started: nothing listens yet
    gen = notify_server(tmp_path, smtp.port)
    server = next(gen)
    try:
        assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
        (tmp_path / "forcing.csv").write_text(FORCING)
        run = run_toy(server, tmp_path)
        assert run["state"] == "succeeded"  # the mail server being down never held the run
        time.sleep(2.5)
        smtp.start()
        messages = smtp.wait_for(1, timeout=90)
        time.sleep(2)
        assert len(messages) == 1
    finally:
        smtp.stop()
        for _ in gen:
            pass


@pytest.mark.chaos
def test_server_killed_before_delivery_then_restarted_delivers_once(
    tmp_path: Path, make_model: MakeModel, process_watch: Callable[..., ProcessWatch]
) -> None:
    smtp = Smtp(free_port())
    gen = notify_server(tmp_path, smtp.port)
    server = next(gen)
    watch = process_watch(server.work_root)
    try:
        assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
        (tmp_path / "forcing.csv").write_text(FORCING)
        run = run_toy(server, tmp_path)
        assert run["state"] == "succeeded"
        server.stop(signal.SIGKILL)  # the message could not go out yet: SMTP is down
        smtp.start()
        server.start()
        messages = smtp.wait_for(1, timeout=60)
        time.sleep(2)
        assert len(messages) == 1
        # Killed before any delivery was tried: once, although a kill happened.
        assert_clean_outcome(server, [run["id"]], watch, kills=False, outputs=toy_outputs,
                             smtp=smtp, states={run["id"]: "succeeded"})  # fmt: skip
    finally:
        smtp.stop()
        for _ in gen:
            pass


NOTE_MODEL = """\
simyard: 1
name: noted
version: "1"
parameters:
  note: {type: string, multiline: true, default: ""}
tasks:
  run: {command: [python3, -c, "print('ok')"]}
"""


def test_a_parameter_holding_cr_lf_does_not_create_a_header(
    mail_server: Server, smtp: Smtp, make_model: MakeModel
) -> None:
    assert mail_server.cli("models", "add", make_model(NOTE_MODEL)).returncode == 0
    with mail_server.http() as api:
        answer = api.post("/runs", json={"model": "noted", "params": {
            "note": "hi\r\nBcc: attacker@example.org\r\nSubject: pwned"}})  # fmt: skip
    assert answer.status_code == 201, answer.text
    ((rcpts, message),) = smtp.wait_for(1)
    assert rcpts == ["admin@example.org"]
    assert message["Bcc"] is None
    assert message["Subject"].startswith("[simyard] noted run")


HOOK_TOKEN = "T0k3n-in-the-path"


class Receiver:
    """A webhook receiver on loopback: answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(500 if len(outer.requests) <= outer.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        # The path holds a token, as many services' webhook URLs do: it must stay secret.
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook/{HOOK_TOKEN}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_is_signed_and_retried(tmp_path: Path, smtp: Smtp, make_model: MakeModel) -> None:
    receiver = Receiver(fail_first=1)
    gen = notify_server(tmp_path, smtp.port, SIMYARD_WEBHOOK_ALLOW="127.0.0.1/32")
    server = next(gen)
    try:
        assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
        (tmp_path / "forcing.csv").write_text(FORCING)
        with server.http() as api:
            prefs = {"email": False, "webhook_url": receiver.url, "webhook_secret": "hush"}
            answer = api.put("/users/me/notifications", json=prefs)
            assert answer.status_code == 200
            assert "hush" not in answer.text
        run = run_toy(server, tmp_path)
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(receiver.requests) == 2  # one refused with 500, then delivered
        for headers, body in receiver.requests:
            expected = hmac.new(b"hush", headers["X-Simyard-Timestamp"].encode() + b"." + body,
                                hashlib.sha256).hexdigest()  # fmt: skip
            assert headers["X-Simyard-Signature"] == "sha256=" + expected
        event = json.loads(receiver.requests[-1][1])
        assert event["run_id"] == run["id"]
        assert event["state"] == "succeeded"
        assert smtp.box.messages == []  # email switched off in the preferences
        # The failed attempt was logged and is listed on the outbox page, without the token.
        log = (server.home / "server.log").read_text()
        assert "answered 500" in log
        assert HOOK_TOKEN not in log
        with browser(server) as page:
            outbox = page.get("/admin/outbox").text
        assert "http://127.0.0.1:" in outbox
        assert HOOK_TOKEN not in outbox
    finally:
        receiver.close()
        for _ in gen:
            pass


def test_webhook_to_a_loopback_address_is_refused_without_the_allow_list(
    tmp_path: Path, smtp: Smtp, make_model: MakeModel
) -> None:
    receiver = Receiver(fail_first=0)
    gen = notify_server(tmp_path, smtp.port)
    server = next(gen)
    try:
        assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
        (tmp_path / "forcing.csv").write_text(FORCING)
        with server.http() as api:
            api.put("/users/me/notifications", json={"email": True, "webhook_url": receiver.url})
        run_toy(server, tmp_path)
        smtp.wait_for(1)  # the email went out; the webhook was refused
        time.sleep(1)
        assert receiver.requests == []
    finally:
        receiver.close()
        for _ in gen:
            pass


def test_the_email_names_the_run_and_tells_its_warnings(
    mail_server: Server, smtp: Smtp, tmp_path: Path, make_model: MakeModel
) -> None:
    patterns = '    error_patterns: ["^ERROR"]'
    warned = MODEL.replace("name: toy", "name: toywarn").replace(
        patterns, patterns + '\n    warning_patterns: ["^day 2 "]'
    )
    assert mail_server.cli("models", "add", make_model(warned, FILES)).returncode == 0
    done = mail_server.cli(
        "run", "toywarn", "-p", "days=3", "-p", "albedo=0.5", "-i",
        f"forcing={tmp_path / 'forcing.csv'}", "--name", "hot lake", "--tag", "heatwave",
        "--wait", "--json",
    )  # fmt: skip
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded", done.stderr
    ((_, message),) = smtp.wait_for(1)
    assert message["Subject"] == f"[simyard] toywarn run {run['id']} “hot lake” succeeded"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Tags: heatwave" in text
    warnings = text.split("Warnings:\n", 1)[1].split("\n\n", 1)[0]
    assert "params.albedo: " in warnings  # the soft limit it was started past
    assert "task simulate: day 2 of 3" in warnings  # a line of its warning_patterns
