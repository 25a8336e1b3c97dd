"""Webhooks: the event as JSON, signed with HMAC-SHA256, to a user's URL.

Receivers verify ``X-Simyard-Signature: sha256=<hex>``, the HMAC-SHA256 with the
user's webhook secret over ``<X-Simyard-Timestamp>.<body>``, and reject old timestamps.
Targets follow the outbound policy of every channel (:mod:`simyard.notify.outbound`):
the host is checked when saved and before each request, and the connection itself is
checked by address, so a name that changes its answer (DNS rebinding) cannot reach
loopback, private, link-local or metadata addresses the admin did not allow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlparse

import httpx

from simyard.notify.base import Message, Notifier, NotifyError, shown_target

WEBHOOK_TIMEOUT = 10.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier(Notifier):
    """POSTs the event JSON; ``target`` is ``<url> <secret>``-free: the URL only."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets  # url -> secret, filled by the outbox from user settings

    def hosts(self, target: str) -> list[str]:
        parsed = urlparse(target)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise NotifyError(
                f"webhook URL must be http(s)://host/...: {shown_target('webhook', target)}"
            )
        return [parsed.hostname]

    def send(self, message: Message, target: str) -> None:
        shown = shown_target("webhook", target)
        self.hosts(target)
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
