"""Chat and other channels (Slack, Teams, Matrix, ntfy, ...) through the apprise library."""

from __future__ import annotations

from typing import Any

from simyard.notify.base import Message, Notifier, NotifyError


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        raise NotifyError("chat channels need: pip install 'simyard[chat]'") from None
    return apprise


class AppriseNotifier(Notifier):
    """``target`` is an apprise URL such as ``ntfy://topic`` or ``slack://...``."""

    def hosts(self, target: str) -> list[str]:
        """The host of a self-hosted service's URL (``json://host/``, ``ntfy://host/topic``,
        ``mailto://user@host``); [] for a service whose URL holds only tokens
        (``slack://T/B/C``): apprise picks that host itself."""
        plugin = _apprise().Apprise.instantiate(target)
        if plugin is None:
            raise NotifyError("not a valid apprise URL")
        names_host = any("{host}" in template for template in getattr(plugin, "templates", ()))
        hosts = [getattr(plugin, "host", None) if names_host else None]
        hosts.append(getattr(plugin, "smtp_host", None))  # mailto://...?smtp=relay
        return [str(host) for host in hosts if host]

    def send(self, message: Message, target: str) -> None:
        sender = _apprise().Apprise()
        if not sender.add(target):
            raise NotifyError("not a valid apprise URL")
        if not sender.notify(title=message.subject, body=message.text):
            raise NotifyError("the chat service did not accept the message")
