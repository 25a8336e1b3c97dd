"""The one outbound policy, per channel kind, against a real listener on loopback."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from simyard.config import Settings
from simyard.notify.base import Message, Notifier, NotifyError
from simyard.notify.chat import AppriseNotifier
from simyard.notify.outbound import OutboundPolicy, parse_allow_list
from simyard.notify.webhook import WebhookNotifier

MESSAGE = Message("[simyard] toy run 1 succeeded", "it went well", "<p>it went well</p>",
                  {"kind": "run.succeeded", "run_id": 1})  # fmt: skip
STRICT = OutboundPolicy()
LOOPBACK_ALLOWED = OutboundPolicy(parse_allow_list("127.0.0.1/32"))


class Listener:
    """An HTTP server on 127.0.0.1 that keeps every request it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the first lookup of a name answers a public address, later ones
    127.0.0.1."""
    real = socket.getaddrinfo
    asked: set[str] = set()

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        address = "93.184.215.14" if host not in asked else "127.0.0.1"
        asked.add(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "not a public address"),  # carrier NAT
        ("0.0.0.0", "unspecified"),
        ("224.0.1.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_addresses_that_are_not_public_unicast_are_refused(address: str, reason: str) -> None:
    refusal = STRICT.refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111"])
def test_public_addresses_may_be_reached(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_opens_a_network_also_for_its_mapped_form() -> None:
    policy = OutboundPolicy(parse_allow_list("10.0.0.0/8, 127.0.0.1"))
    assert policy.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("192.168.0.1")) is not None


def test_the_old_setting_name_still_allows() -> None:
    settings = Settings(webhook_allow="127.0.0.1", outbound_allow="10.0.0.0/8")
    assert settings.resolved_outbound_allow == "10.0.0.0/8,127.0.0.1"


def refused(policy: OutboundPolicy, notifier: Notifier, target: str) -> str:
    with pytest.raises(NotifyError) as caught:
        policy.send(notifier, MESSAGE, target)
    return str(caught.value)


def test_webhook_to_loopback_is_refused_before_a_byte_is_sent(listener: Listener) -> None:
    reason = refused(STRICT, WebhookNotifier({}), f"http://127.0.0.1:{listener.port}/hook")
    assert "127.0.0.1 is a loopback address" in reason
    assert "SIMYARD_OUTBOUND_ALLOW" in reason
    assert listener.requests == []


def test_webhook_to_a_name_resolving_to_loopback_is_refused(listener: Listener) -> None:
    reason = refused(STRICT, WebhookNotifier({}), f"http://localhost:{listener.port}/hook")
    assert "loopback address" in reason
    assert listener.requests == []


@pytest.mark.usefixtures("rebinding")
def test_webhook_to_a_name_rebound_to_loopback_after_the_check_is_refused(
    listener: Listener,
) -> None:
    reason = refused(STRICT, WebhookNotifier({}), f"http://rebind.example:{listener.port}/hook")
    assert "127.0.0.1 is not allowed (127.0.0.1 is a loopback address)" in reason
    assert listener.requests == []


def test_webhook_to_allowed_loopback_is_delivered(listener: Listener) -> None:
    LOOPBACK_ALLOWED.send(WebhookNotifier({}), MESSAGE, f"http://127.0.0.1:{listener.port}/hook")
    ((path, body),) = listener.requests
    assert path == "/hook"
    assert json.loads(body)["run_id"] == 1


def test_apprise_json_to_loopback_is_refused(listener: Listener) -> None:
    reason = refused(STRICT, AppriseNotifier(), f"json://127.0.0.1:{listener.port}/x")
    assert "127.0.0.1 is a loopback address" in reason
    assert listener.requests == []


def test_apprise_to_a_name_resolving_to_loopback_is_refused(listener: Listener) -> None:
    reason = refused(STRICT, AppriseNotifier(), f"json://localhost:{listener.port}/x")
    assert "loopback address" in reason
    assert listener.requests == []


@pytest.mark.usefixtures("rebinding")
def test_apprise_to_a_name_rebound_to_loopback_after_the_check_is_refused(
    listener: Listener,
) -> None:
    reason = refused(STRICT, AppriseNotifier(), f"json://rebind.example:{listener.port}/x")
    assert "127.0.0.1 is not allowed (127.0.0.1 is a loopback address)" in reason
    assert listener.requests == []


def test_apprise_mail_relay_named_in_the_url_is_checked() -> None:
    notifier = AppriseNotifier()
    with pytest.raises(NotifyError, match="loopback address"):
        STRICT.check_target(notifier, "mailto://user:pw@93.184.215.14?smtp=127.0.0.1&to=a@b.org")


def test_apprise_json_to_allowed_loopback_is_delivered(listener: Listener) -> None:
    LOOPBACK_ALLOWED.send(AppriseNotifier(), MESSAGE, f"json://127.0.0.1:{listener.port}/x")
    ((path, body),) = listener.requests
    assert path == "/x"
    assert json.loads(body)["title"] == MESSAGE.subject


def test_a_channel_added_later_is_guarded_by_default(listener: Listener) -> None:
    class Homemade(Notifier):  # names no host: only the connection check can stop it
        def send(self, message: Message, target: str) -> None:
            try:
                httpx.post(target, content=b"hi")
            except httpx.HTTPError as exc:
                raise NotifyError(str(exc)) from None

    reason = refused(STRICT, Homemade(), f"http://127.0.0.1:{listener.port}/")
    assert "127.0.0.1 is a loopback address" in reason
    assert listener.requests == []


def test_connections_outside_a_send_are_not_checked(listener: Listener) -> None:
    refused(STRICT, WebhookNotifier({}), f"http://127.0.0.1:{listener.port}/hook")
    assert httpx.post(f"http://127.0.0.1:{listener.port}/db").status_code == 200
    assert [path for path, _ in listener.requests] == ["/db"]


def test_a_local_socket_cannot_be_reached_by_a_send(tmp_path: Any) -> None:
    path = str(tmp_path / "local.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()

        class Local(Notifier):
            def send(self, message: Message, target: str) -> None:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(target)

        reason = refused(STRICT, Local(), path)
    assert "may only reach internet addresses" in reason
