"""The notifier contract: deliver one prepared message to one target, or raise NotifyError.

A notifier gets a :class:`Message` (subject, plain text, HTML, the JSON event) and a
target (an address, a URL). It must not retry or sleep: the outbox loop retries with
backoff, so a channel that is down delays its own messages and nothing else.

A channel whose targets users choose (every channel unless it says otherwise) is sent
through the outbound policy (:mod:`simyard.notify.outbound`): it names the hosts a
target points at (:meth:`Notifier.hosts`), and every connection it makes is checked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from simyard.errors import SimyardError


class NotifyError(SimyardError):
    """This attempt failed; the outbox tries again later."""


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str
    event: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""


class Notifier(ABC):
    """Sends messages over one channel."""

    #: Targets come from users, so the outbound policy applies. False only for a channel
    #: that connects to the admin's own server whatever the target (SMTP).
    user_targets: ClassVar[bool] = True

    @abstractmethod
    def send(self, message: Message, target: str) -> None: ...

    def hosts(self, target: str) -> list[str]:
        """The host names or addresses ``target`` points at, checked before a send and when
        a user saves it ([]: the channel picks its hosts itself; its connections are still
        checked). NotifyError when ``target`` is not a valid target of this channel."""
        return []


def shown_target(channel: str, target: str) -> str:
    """A delivery target as it may be logged or shown: an email address as it is, a URL
    cut to its scheme and host (the path, query and user part of a webhook or chat URL
    often hold its token; a chat URL's "host" often is one)."""
    if channel in ("email", "outbox"):
        return target
    parts = urlsplit(target)
    if channel != "webhook":
        return f"{parts.scheme}://…"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/…"
