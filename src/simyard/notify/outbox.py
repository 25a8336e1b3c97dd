"""The delivery loop: from events to messages, at least once, never twice, never blocking runs.

Fan-out turns each final run event into one Delivery per channel (for a run of a
sweep: nothing until the sweep's last run has ended, then one summary), in the same
transaction that marks the event handled; a unique key (event, channel, target) makes
a second fan-out of the same event impossible. Delivery sends what is due and records
the outcome; a failure is retried with exponential backoff. A channel that is down
only delays its own messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.domain.sweeps import close_if_done
from simyard.domain.tables import (
    Delivery,
    Event,
    NotificationSettings,
    Run,
    StoredFile,
    Sweep,
    utcnow,
)
from simyard.notify.base import Message, Notifier, NotifyError
from simyard.notify.chat import AppriseNotifier
from simyard.notify.email import SmtpNotifier
from simyard.notify.messages import run_message, sweep_message
from simyard.notify.outbound import HostUnresolved, OutboundPolicy, parse_allow_list
from simyard.notify.webhook import WebhookNotifier

log = logging.getLogger("simyard.notify")

FINAL_KINDS = {"run.succeeded", "run.failed", "run.timed_out", "run.cancelled"}
SWEEP_FINISHED = "sweep.finished"
DEFAULT_OUTCOMES = ["succeeded", "failed", "timed_out", "cancelled"]
MAX_ATTEMPTS = 30
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 3600.0


def backoff(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failures: 2, 4, 8, ... up to an hour."""
    return float(min(BACKOFF_FIRST * 2.0 ** max(attempts - 1, 0), BACKOFF_MAX))


@dataclass
class OutboxConfig:
    base_url: str
    smtp_url: str | None
    mail_from: str
    outbound_allow: str = ""  # networks a user's webhook or chat URL may reach after all
    interval: float = 0.5
    extra: dict[str, Notifier] = field(default_factory=dict)


@dataclass(frozen=True)
class Composed:
    """A message, its recipient, and what decides whether they want it."""

    message: Message
    user_id: int
    email: str
    run_id: int | None
    notify: bool | None  # the run's (or sweep's) own choice; None: the owner's outcomes
    states: set[str]


def default_sender() -> str:
    return f"simyard@{socket.gethostname()}"


class Outbox:
    """Fans out events and delivers messages, in a background thread of the server."""

    def __init__(self, *, sessions: sessionmaker[Session], config: OutboxConfig) -> None:
        self.sessions = sessions
        self.config = config
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: dict[int, dict[str, object]] = {}  # event id -> webhook payload (a cache)
        self.outbound = OutboundPolicy(parse_allow_list(config.outbound_allow))
        self.webhooks = WebhookNotifier({})
        self.notifiers: dict[str, Notifier] = {
            "webhook": self.webhooks,
            "apprise": AppriseNotifier(),
            **config.extra,
        }
        if config.smtp_url:
            self.notifiers["email"] = SmtpNotifier(config.smtp_url, config.mail_from)

    def refusal(self, channel: str, target: str) -> str | None:
        """Why ``target`` may not be saved as a ``channel`` target, or None when it may (a
        name that does not resolve now may later: it is checked again before each send)."""
        notifier = self.notifiers.get(channel)
        if notifier is None:
            return f"no notifier for channel {channel!r}"
        try:
            self.outbound.check_target(notifier, target)
        except HostUnresolved:
            return None
        except NotifyError as exc:
            return str(exc)
        return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="simyard-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.fan_out()
                self.deliver_due()
            except Exception:  # keep going: a bad row must not stop every notification
                log.exception("outbox pass failed")
            self._wake.wait(self.config.interval)
            self._wake.clear()

    # ------------------------------------------------------------------ fan-out

    def fan_out(self) -> int:
        """Turn unhandled final events into deliveries; how many deliveries were made."""
        made = 0
        with self.sessions() as db, db.begin():
            events = list(
                db.scalars(
                    select(Event).where(Event.fanned_out.is_(False)).order_by(Event.id).limit(200)
                )
            )
            for event in events:
                event.fanned_out = True
                if event.kind in FINAL_KINDS and event.run_id is not None:
                    made += self._run_ended(db, event)
        return made

    def _run_ended(self, db: Session, event: Event) -> int:
        """Deliveries for a run's end; for a run of a sweep, only the sweep's summary once
        its last run has ended."""
        run = db.get(Run, event.run_id)
        if run is None:
            return 0
        if run.sweep_id is None:
            return self._deliveries_for(db, event)
        if not close_if_done(db, run.sweep_id):
            return 0
        summary = Event(
            run_id=None, kind=SWEEP_FINISHED, payload={"sweep_id": run.sweep_id}, fanned_out=True
        )
        db.add(summary)
        db.flush()
        return self._deliveries_for(db, summary)

    def _compose(self, db: Session, event: Event) -> Composed | None:
        """What to say about ``event`` and to whom; None when it is about nothing left."""
        if event.kind == SWEEP_FINISHED:
            sweep = db.get(Sweep, event.payload.get("sweep_id"))
            if sweep is None:
                return None
            message = sweep_message(sweep, base_url=self.config.base_url, event_id=event.id)
            states = {run.state for run in sweep.runs}
            return Composed(message, sweep.user_id, sweep.user.email, None, sweep.notify, states)
        run = db.get(Run, event.run_id) if event.run_id is not None else None
        if run is None:
            return None
        outputs = list(
            db.scalars(
                select(StoredFile)
                .where(StoredFile.run_id == run.id, StoredFile.kind == "output")
                .order_by(StoredFile.path)
            )
        )
        message = run_message(run, outputs, base_url=self.config.base_url, event_id=event.id)
        return Composed(message, run.user_id, run.user.email, run.id, run.notify, {run.state})

    def _deliveries_for(self, db: Session, event: Event) -> int:
        composed = self._compose(db, event)
        if composed is None:
            return 0
        prefs = db.get(NotificationSettings, composed.user_id)
        outcomes = (prefs.outcomes if prefs and prefs.outcomes else None) or DEFAULT_OUTCOMES
        wanted = (
            bool(composed.states & set(outcomes)) if composed.notify is None else composed.notify
        )
        if not wanted:
            return 0
        message = composed.message
        targets: list[tuple[str, str]] = []
        if prefs is None or prefs.email:
            targets.append(("email" if "email" in self.notifiers else "outbox", composed.email))
        if prefs is not None and prefs.webhook_url:
            targets.append(("webhook", prefs.webhook_url))
        if prefs is not None:
            targets += [("apprise", url) for url in prefs.apprise_urls or []]
        for channel, target in targets:
            db.add(
                Delivery(
                    event_id=event.id, run_id=composed.run_id, user_id=composed.user_id,
                    channel=channel, target=target, subject=message.subject,
                    body_text=message.text, body_html=message.html,
                    state="pending" if channel != "outbox" else "sent",
                    sent_at=utcnow() if channel == "outbox" else None, attempts=0,
                    next_attempt_at=utcnow(), last_error=None,
                )
            )  # fmt: skip
        if len(self._events) > 1000:
            self._events.clear()
        self._events[event.id] = message.event
        return len(targets)

    # ------------------------------------------------------------------ delivery

    def deliver_due(self) -> int:
        """Send every delivery that is due; how many went out."""
        sent = 0
        with self.sessions() as db, db.begin():
            due = [
                (d.id, d.channel, d.target, d.event_id, d.subject, d.body_text, d.body_html)
                for d in db.scalars(
                    select(Delivery)
                    .where(Delivery.state == "pending", Delivery.next_attempt_at <= utcnow())
                    .order_by(Delivery.id)
                    .limit(50)
                )
            ]
            secrets = {
                s.webhook_url: s.webhook_secret or ""
                for s in db.scalars(select(NotificationSettings).where(
                    NotificationSettings.webhook_url.is_not(None)))
            }  # fmt: skip
            events = {d[3]: self._event_payload(db, d[3]) for d in due if d[1] == "webhook"}
        self.webhooks.secrets = {k: v for k, v in secrets.items() if k}
        for delivery_id, channel, target, event_id, subject, text, html in due:
            notifier = self.notifiers.get(channel)
            message = Message(subject, text, html, events.get(event_id, {}),
                              message_id=f"<simyard-delivery-{delivery_id}@simyard>")  # fmt: skip
            error: str | None = None
            if notifier is None:
                error = f"no notifier for channel {channel!r}"
            else:
                try:
                    self.outbound.send(notifier, message, target)
                except NotifyError as exc:
                    error = str(exc)
                except Exception as exc:  # a channel's bug must not stop the others
                    error = f"{type(exc).__name__}: {exc}"
            self._record(delivery_id, error)
            sent += error is None
        return sent

    def _event_payload(self, db: Session, event_id: int) -> dict[str, object]:
        if event_id in self._events:
            return self._events[event_id]
        event = db.get(Event, event_id)
        composed = self._compose(db, event) if event is not None else None
        if composed is None:
            return {}
        self._events[event_id] = composed.message.event
        return composed.message.event

    def _record(self, delivery_id: int, error: str | None) -> None:
        with self.sessions() as db, db.begin():
            delivery = db.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            if error is None:
                delivery.state = "sent"
                delivery.sent_at = utcnow()
                delivery.last_error = None
                return
            delivery.last_error = error[:2000]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.state = "failed"
            else:
                wait = dt.timedelta(seconds=backoff(delivery.attempts))
                delivery.next_attempt_at = utcnow() + wait
            log.warning(
                "delivery %s failed (attempt %s): %s", delivery_id, delivery.attempts, error
            )
