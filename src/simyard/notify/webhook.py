"""Webhooks: the event as JSON, signed with HMAC-SHA256, to a user's URL.

Receivers verify ``X-Simyard-Signature: sha256=<hex>``, the HMAC-SHA256 with the
user's webhook secret over ``<X-Simyard-Timestamp>.<body>``, and reject old timestamps.
Targets are checked before each request: link-local, metadata, loopback and private
addresses are refused unless the admin allows them (``SIMYARD_WEBHOOK_ALLOW``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlparse

import httpx

from simyard.notify.base import Message, Notifier, NotifyError, shown_target

WEBHOOK_TIMEOUT = 10.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def parse_allow_list(text: str) -> list[Network]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks."""
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def check_target(url: str, allow: list[Network]) -> None:
    """NotifyError unless every address ``url``'s host resolves to may be reached."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise NotifyError(f"webhook URL must be http(s)://host/...: {shown_target('webhook', url)}")
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise NotifyError(f"cannot resolve {parsed.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if any(address in network for network in allow):
            continue
        if (
            address.is_link_local
            or address.is_loopback
            or address.is_private
            or address.is_multicast
            or address.is_unspecified
            or address.is_reserved
        ):
            raise NotifyError(
                f"webhook target {parsed.hostname} ({address}) is not allowed; "
                "an admin can allow it with SIMYARD_WEBHOOK_ALLOW"
            )


class WebhookNotifier(Notifier):
    """POSTs the event JSON; ``target`` is ``<url> <secret>``-free: the URL only."""

    def __init__(self, allow: list[Network], secrets: dict[str, str]) -> None:
        self.allow = allow
        self.secrets = secrets  # url -> secret, filled by the outbox from user settings

    def send(self, message: Message, target: str) -> None:
        shown = shown_target("webhook", target)
        check_target(target, self.allow)
        body = json.dumps(message.event, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "simyard-webhook",
            "X-Simyard-Timestamp": timestamp,
            "X-Simyard-Event": str(message.event.get("kind", "")),
            "X-Simyard-Delivery": message.message_id,
        }
        secret = self.secrets.get(target)
        if secret:
            headers["X-Simyard-Signature"] = sign(secret, timestamp, body)
        try:
            response = httpx.post(target, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT,
                                  follow_redirects=False)  # fmt: skip
        except httpx.HTTPError as exc:
            said = str(exc).replace(target, shown)
            raise NotifyError(f"webhook {shown}: {type(exc).__name__}: {said}") from None
        if response.status_code >= 300:
            raise NotifyError(f"webhook {shown}: answered {response.status_code}")
