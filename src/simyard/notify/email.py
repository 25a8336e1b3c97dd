"""Email over SMTP (``smtp://``, ``smtps://``, ``?starttls=1``, credentials in the URL).

Headers and addresses are built with the standard ``email`` package; nothing a user
typed reaches a header unfiltered (line breaks are removed before it is set).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from urllib.parse import parse_qs, unquote, urlparse

from simyard.notify.base import Message, Notifier, NotifyError

SMTP_TIMEOUT = 20.0


def header_safe(text: str, limit: int = 200) -> str:
    """One line of text fit for a header: no CR, LF or other control characters."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())[:limit]


def build_email(message: Message, *, sender: str, recipient: str) -> EmailMessage:
    """A multipart (plain text + HTML) message."""
    mail = EmailMessage()
    mail["Subject"] = header_safe(message.subject)
    mail["From"] = formataddr(("simyard", header_safe(sender)))
    mail["To"] = header_safe(recipient)
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else None
    mail["Message-ID"] = message.message_id or make_msgid(domain=domain)
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail


class SmtpNotifier(Notifier):
    """Sends each message in its own SMTP session."""

    user_targets = False  # it connects to the admin's SIMYARD_SMTP_URL, whoever the recipient

    def __init__(self, url: str, sender: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps"):
            raise ValueError("SIMYARD_SMTP_URL must start with smtp:// or smtps://")
        self.host = parsed.hostname or "localhost"
        self.port = parsed.port or (465 if parsed.scheme == "smtps" else 25)
        self.tls = parsed.scheme == "smtps"
        self.starttls = parse_qs(parsed.query).get("starttls", ["0"])[0] in ("1", "true", "yes")
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.sender = sender

    def send(self, message: Message, target: str) -> None:
        mail = build_email(message, sender=self.sender, recipient=target)
        try:
            context = ssl.create_default_context()
            smtp: smtplib.SMTP
            if self.tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT)
            try:
                if self.starttls:
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
                # Accepted (250 after the data): say goodbye without waiting for the
                # answer, so the outbox records the delivery at once. The time between
                # the data's end and that 250 is the only window for a second copy.
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    smtp.send("QUIT\r\n")
            finally:
                smtp.close()
        except (OSError, smtplib.SMTPException) as exc:
            # Never echo the URL: it may hold the password.
            raise NotifyError(
                f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}"
            ) from None
