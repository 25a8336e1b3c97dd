"""Chat and other channels (Slack, Teams, Matrix, ntfy, ...) through the apprise library."""

from __future__ import annotations

from simyard.notify.base import Message, Notifier, NotifyError


class AppriseNotifier(Notifier):
    """``target`` is an apprise URL such as ``ntfy://topic`` or ``slack://...``."""

    def send(self, message: Message, target: str) -> None:
        try:
            import apprise
        except ImportError:
            raise NotifyError("chat channels need: pip install 'simyard[chat]'") from None
        sender = apprise.Apprise()
        if not sender.add(target):
            raise NotifyError("not a valid apprise URL")
        if not sender.notify(title=message.subject, body=message.text):
            raise NotifyError("the chat service did not accept the message")
