"""The notifier contract (notify/base.py), run against every channel: email to a real
SMTP server (aiosmtpd), a webhook to a real HTTP server, and apprise's ``json://`` to
the same kind of server, all on loopback.

A notifier delivers one message to one target or raises NotifyError; it never retries
or sleeps (the outbox does); and a channel whose targets users choose goes through the
outbound policy, which refuses loopback unless an admin allowed it.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from simyard.notify.base import Message, Notifier, NotifyError
from simyard.notify.chat import AppriseNotifier
from simyard.notify.email import SmtpNotifier
from simyard.notify.outbound import OutboundPolicy
from simyard.notify.webhook import WebhookNotifier
from tests.ports import free_port

MESSAGE = Message(
    subject="Run #7 of toy succeeded",
    text="Run #7 of toy succeeded in 3 s.",
    html="<p>Run #7 of toy succeeded in 3 s.</p>",
    event={"kind": "run.succeeded", "run_id": 7},
    message_id="<7@simyard>",
)
LOOPBACK = OutboundPolicy(allow=[ipaddress.ip_network("127.0.0.1/32")])


def closed_port() -> int:
    return free_port()  # claimed for this run: no other test's server listens on it


class HttpReceiver:
    """An HTTP server on loopback keeping every POST; answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.status = "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.status.startswith("250"):
            self.bodies.append(({"To": ",".join(envelope.rcpt_tos)}, envelope.content))
        return self.status


@dataclass
class Channel:
    """One channel under test: its notifier, a target that works, one nobody listens on,
    what arrived (subject and text as the receiver got them), and how to refuse."""

    notifier: Notifier
    target: str
    dead_target: str
    received: Callable[[], list[tuple[str, str]]]
    refuse: Callable[[], None]


def _smtp() -> Iterator[Channel]:
    box = Mailbox()
    port = closed_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()

    def received() -> list[tuple[str, str]]:
        found = []
        for _, raw in box.bodies:
            mail = email.message_from_bytes(raw, policy=email.policy.default)
            body = mail.get_body(("plain",))  # type: ignore[attr-defined]
            found.append((str(mail["Subject"]), body.get_content().strip() if body else ""))
        return found

    def refuse() -> None:
        box.status = "550 mailbox unavailable"

    dead = SmtpNotifier(f"smtp://127.0.0.1:{closed_port()}", "simyard@example.org")
    channel = Channel(SmtpNotifier(f"smtp://127.0.0.1:{port}", "simyard@example.org"),
                      "ana@example.org", "ana@example.org", received, refuse)  # fmt: skip
    channel.dead = dead  # type: ignore[attr-defined]  # SMTP's "down" is its server
    try:
        yield channel
    finally:
        controller.stop()


def _webhook() -> Iterator[Channel]:
    receiver = HttpReceiver()

    def received() -> list[tuple[str, str]]:
        return [(headers["X-Simyard-Event"], json.loads(body)["kind"])
                for headers, body in receiver.bodies]  # fmt: skip

    def refuse() -> None:
        receiver.status = 500

    url = f"http://127.0.0.1:{receiver.port}/hook/secret-token"
    try:
        yield Channel(WebhookNotifier({url: "s3cret"}), url,
                      f"http://127.0.0.1:{closed_port()}/hook", received, refuse)  # fmt: skip
    finally:
        receiver.close()


def _apprise() -> Iterator[Channel]:
    receiver = HttpReceiver()

    def received() -> list[tuple[str, str]]:
        return [(json.loads(body)["title"], json.loads(body)["message"])
                for _, body in receiver.bodies]  # fmt: skip

    def refuse() -> None:
        receiver.status = 500

    try:
        yield Channel(AppriseNotifier(), f"json://127.0.0.1:{receiver.port}/notify",
                      f"json://127.0.0.1:{closed_port()}/notify", received, refuse)  # fmt: skip
    finally:
        receiver.close()


EXPECTED = {
    "email": [(MESSAGE.subject, MESSAGE.text)],
    "webhook": [("run.succeeded", "run.succeeded")],  # the event, as JSON, and its kind
    "apprise": [(MESSAGE.subject, MESSAGE.text)],
}


@pytest.fixture(params=["email", "webhook", "apprise"])
def channel(request: pytest.FixtureRequest) -> Iterator[Channel]:
    make = {"email": _smtp, "webhook": _webhook, "apprise": _apprise}[request.param]
    yield from make()


def wait_for(received: Callable[[], list[tuple[str, str]]], count: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 10
    while len(received()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return received()


def test_a_message_is_delivered_once_as_sent(
    channel: Channel, request: pytest.FixtureRequest
) -> None:
    LOOPBACK.send(channel.notifier, MESSAGE, channel.target)
    assert wait_for(channel.received, 1) == EXPECTED[request.node.callspec.params["channel"]]


def test_a_receiver_that_is_down_is_a_notify_error_at_once(channel: Channel) -> None:
    notifier = getattr(channel, "dead", channel.notifier)
    started = time.monotonic()
    with pytest.raises(NotifyError):
        LOOPBACK.send(notifier, MESSAGE, channel.dead_target)
    assert time.monotonic() - started < 10  # no retry, no sleep: the outbox retries
    assert channel.received() == []


def test_a_receiver_that_refuses_is_a_notify_error(channel: Channel) -> None:
    channel.refuse()
    with pytest.raises(NotifyError):
        LOOPBACK.send(channel.notifier, MESSAGE, channel.target)
    assert len(channel.received()) <= 1  # tried once (a 500 still got it): no retry here


def test_user_chosen_targets_on_loopback_are_refused_unless_allowed(channel: Channel) -> None:
    strict = OutboundPolicy()
    if not channel.notifier.user_targets:  # SMTP: the admin's own server, whoever the rcpt
        strict.send(channel.notifier, MESSAGE, channel.target)
        assert len(wait_for(channel.received, 1)) == 1
        return
    with pytest.raises(NotifyError, match=r"127\.0\.0\.1"):
        strict.send(channel.notifier, MESSAGE, channel.target)
    assert channel.received() == []
