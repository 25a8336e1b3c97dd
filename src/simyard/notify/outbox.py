"""The delivery loop: from events to messages, at least once, never twice, never blocking runs.

Fan-out turns each final run event into one Delivery per channel (for a run of a
sweep: nothing until the sweep's last run has ended, then one summary), in the same
transaction that marks the event handled; a unique key (event, channel, target) makes
a second fan-out of the same event impossible. Delivery sends what is due and records
the outcome; a failure is retried with exponential backoff. A channel that is down
only delays its own messages.

Several servers on one database each run an outbox: a delivery is claimed before it is
sent (``claimed_by``, ``claimed_until``), so exactly one server sends it. PostgreSQL picks
unclaimed rows with ``FOR UPDATE SKIP LOCKED``; on both databases the claim itself is a
conditional UPDATE, so two servers can never both win it. A server that dies holding a
claim delays its deliveries until the claim expires (or, on the same host, until the next
server starts and sees the holder's process gone); they are then sent again: at least
once. The window for a duplicate is the time between the end of the message's data and
the SMTP server's 250 reply, plus one short commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Select, and_, insert, not_, or_, select, update
from sqlalchemy.orm import Session, joinedload, load_only, selectinload, sessionmaker

from simyard.domain.sweeps import close_if_done
from simyard.domain.tables import (
    Delivery,
    Event,
    ModelVersion,
    NotificationSettings,
    Run,
    StoredFile,
    Sweep,
    TaskRun,
    User,
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
RUN_ENDED = and_(Event.kind.in_(sorted(FINAL_KINDS)), Event.run_id.is_not(None))
# What a run's message and the decision to send it read of the run (notes and the
# parameter file, which may be large, are not needed).
MESSAGE_COLUMNS = (
    Run.user_id, Run.model_version_id, Run.state, Run.params, Run.started_at, Run.finished_at,
    Run.error_kind, Run.error_task, Run.error_summary, Run.metrics, Run.notify, Run.sweep_id,
    Run.name, Run.tags, Run.warnings,
)  # fmt: skip
SWEEP_FINISHED = "sweep.finished"
DEFAULT_OUTCOMES = ["succeeded", "failed", "timed_out", "cancelled"]
MAX_ATTEMPTS = 30
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 3600.0
CLAIM_FOR = 120.0  # seconds a server may take to send what it claimed (SMTP waits 20 s a step)
CLAIM_BATCH = 10


def outbox_identity() -> str:
    """Who claims: this host and process, and a nonce (a pid can be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` was a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


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
    """A message's recipient, what decides whether they want it, and how to write it
    (written only when wanted: the text, the HTML and the webhook's payload)."""

    write: Callable[[], Message]
    user_id: int
    email: str
    run_id: int | None
    notify: bool | None  # the run's (or sweep's) own choice; None: the owner's outcomes
    states: set[str]


@dataclass(frozen=True)
class Loaded:
    """What one fan-out pass read for all its runs at once."""

    runs: dict[int, Run]  # run id -> the run, with what its message tells
    outputs: dict[int, list[StoredFile]]  # run id -> its outputs, by path
    prefs: dict[int, NotificationSettings | None]  # user id -> their settings (None: none)


def outputs_of(run_ids: list[int]) -> Select[StoredFile]:
    """The outputs of these runs, each run's by path, with what a message shows of them."""
    return (
        select(StoredFile)
        .options(load_only(StoredFile.run_id, StoredFile.path, StoredFile.size, StoredFile.sha256))
        .where(StoredFile.run_id.in_(run_ids), StoredFile.kind == "output")
        .order_by(StoredFile.run_id, StoredFile.path)
    )


def default_sender() -> str:
    return f"simyard@{socket.gethostname()}"


class Outbox:
    """Fans out events and delivers messages, in a background thread of the server."""

    def __init__(self, *, sessions: sessionmaker[Session], config: OutboxConfig) -> None:
        self.sessions = sessions
        self.config = config
        self.identity = outbox_identity()
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
        try:
            self.release_dead_claims()
        except Exception:  # the claims expire by themselves anyway
            log.exception("could not release the claims of stopped servers")
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
        with self.sessions() as db, db.begin():
            # Only a run's end is told: every other event is marked handled in one statement.
            db.execute(
                update(Event)
                .where(Event.fanned_out.is_(False), not_(RUN_ENDED))
                .values(fanned_out=True)
                .execution_options(synchronize_session=False)
            )
            events = list(
                db.scalars(
                    select(Event)
                    .options(load_only(Event.id, Event.run_id, Event.kind))
                    .where(Event.fanned_out.is_(False), RUN_ENDED)
                    .order_by(Event.id)
                    .limit(200)
                )
            )
            if not events:
                return 0
            db.execute(
                update(Event)
                .where(Event.id.in_([event.id for event in events]))
                .values(fanned_out=True)
                .execution_options(synchronize_session=False)
            )
            loaded = self._load_ended(db, [event.run_id for event in events if event.run_id])
            rows = [row for event in events for row in self._run_ended(db, event, loaded)]
            if rows:
                db.execute(insert(Delivery), rows)  # one statement: no ids to read back
        return len(rows)

    def _load_ended(self, db: Session, run_ids: list[int]) -> Loaded:
        """The runs of a pass's events with what their messages tell (one statement for
        each kind of row rather than several for each run), and their owners' settings."""
        runs = {
            run.id: run
            for run in db.scalars(
                select(Run)
                .where(Run.id.in_(run_ids))
                .options(
                    load_only(*MESSAGE_COLUMNS),
                    joinedload(Run.model_version).load_only(
                        ModelVersion.name, ModelVersion.version
                    ),
                    joinedload(Run.user).load_only(User.email),
                    selectinload(Run.task_runs).load_only(TaskRun.name, TaskRun.warnings),
                )
            )
        }
        outputs: dict[int, list[StoredFile]] = {run_id: [] for run_id in run_ids}
        for stored in db.scalars(outputs_of(run_ids)):
            outputs[stored.run_id].append(stored)
        user_ids = {run.user_id for run in runs.values()}
        prefs: dict[int, NotificationSettings | None] = dict.fromkeys(user_ids)
        for found in db.scalars(
            select(NotificationSettings).where(NotificationSettings.user_id.in_(user_ids))
        ):
            prefs[found.user_id] = found
        return Loaded(runs, outputs, prefs)

    def _run_ended(self, db: Session, event: Event, loaded: Loaded) -> list[dict[str, Any]]:
        """Deliveries for a run's end; for a run of a sweep, only the sweep's summary once
        its last run has ended."""
        run = loaded.runs.get(event.run_id or 0)
        if run is None:
            return []
        if run.sweep_id is None:
            return self._deliveries_for(db, event, loaded)
        if not close_if_done(db, run.sweep_id):
            return []
        summary = Event(
            run_id=None, kind=SWEEP_FINISHED, payload={"sweep_id": run.sweep_id}, fanned_out=True
        )
        db.add(summary)
        db.flush()
        return self._deliveries_for(db, summary, loaded)

    def _compose(self, db: Session, event: Event, loaded: Loaded | None = None) -> Composed | None:
        """What to say about ``event`` and to whom; None when it is about nothing left."""
        base_url = self.config.base_url
        if event.kind == SWEEP_FINISHED:
            sweep = db.get(Sweep, event.payload.get("sweep_id"))
            if sweep is None:
                return None
            write = partial(sweep_message, sweep, base_url=base_url, event_id=event.id)
            states = {run.state for run in sweep.runs}
            return Composed(write, sweep.user_id, sweep.user.email, None, sweep.notify, states)
        if loaded is not None:
            run = loaded.runs.get(event.run_id or 0)
        else:
            run = db.get(Run, event.run_id) if event.run_id is not None else None
        if run is None:
            return None
        outputs = loaded.outputs.get(run.id) if loaded is not None else None
        write = partial(self._run_message, db, run, outputs, event.id)
        return Composed(write, run.user_id, run.user.email, run.id, run.notify, {run.state})

    def _run_message(
        self, db: Session, run: Run, outputs: list[StoredFile] | None, event_id: int
    ) -> Message:
        """The message about ``run``; its outputs read now unless given."""
        if outputs is None:
            outputs = list(db.scalars(outputs_of([run.id])))
        return run_message(run, outputs, base_url=self.config.base_url, event_id=event_id)

    def _deliveries_for(self, db: Session, event: Event, loaded: Loaded) -> list[dict[str, Any]]:
        """The deliveries' rows for ``event``: one for each channel its recipient wants."""
        composed = self._compose(db, event, loaded)
        if composed is None:
            return []
        if composed.user_id in loaded.prefs:
            prefs = loaded.prefs[composed.user_id]
        else:
            prefs = db.get(NotificationSettings, composed.user_id)
        outcomes = (prefs.outcomes if prefs and prefs.outcomes else None) or DEFAULT_OUTCOMES
        wanted = (
            bool(composed.states & set(outcomes)) if composed.notify is None else composed.notify
        )
        if not wanted:
            return []
        message = composed.write()
        targets: list[tuple[str, str]] = []
        if prefs is None or prefs.email:
            targets.append(("email" if "email" in self.notifiers else "outbox", composed.email))
        if prefs is not None and prefs.webhook_url:
            targets.append(("webhook", prefs.webhook_url))
        if prefs is not None:
            targets += [("apprise", url) for url in prefs.apprise_urls or []]
        rows = [
            dict(
                event_id=event.id, run_id=composed.run_id, user_id=composed.user_id,
                channel=channel, target=target, subject=message.subject,
                body_text=message.text, body_html=message.html,
                state="pending" if channel != "outbox" else "sent",
                sent_at=utcnow() if channel == "outbox" else None, attempts=0,
                next_attempt_at=utcnow(), last_error=None,
            )
            for channel, target in targets
        ]  # fmt: skip
        if len(self._events) > 1000:
            self._events.clear()
        self._events[event.id] = message.event
        return rows

    # ------------------------------------------------------------------ delivery

    def release_dead_claims(self) -> int:
        """Free the claims of servers of this host that have stopped (killed while sending):
        their deliveries go out again now rather than when the claims expire."""
        with self.sessions() as db, db.begin():
            holders = set(
                db.scalars(
                    select(Delivery.claimed_by).where(
                        Delivery.state == "pending", Delivery.claimed_by.is_not(None)
                    )
                )
            )
            gone = [h for h in holders if h is not None and holder_gone(h)]
            if gone:
                db.execute(
                    update(Delivery)
                    .where(Delivery.state == "pending", Delivery.claimed_by.in_(gone))
                    .values(claimed_by=None, claimed_until=None)
                )
        return len(gone)

    def claim_due(self, limit: int = CLAIM_BATCH) -> list[int]:
        """Claim up to ``limit`` deliveries that are due and claimed by no live server; their
        ids. A row another server holds is skipped, never waited for or taken."""
        now = utcnow()
        free = or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now)
        due = Delivery.state == "pending", Delivery.next_attempt_at <= now, free
        with self.sessions() as db, db.begin():
            query = select(Delivery.id).where(*due).order_by(Delivery.id).limit(limit)
            if db.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(db.scalars(query))
            if not ids:
                return []
            until = now + dt.timedelta(seconds=CLAIM_FOR)
            db.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), *due)
                .values(claimed_by=self.identity, claimed_until=until)
                .execution_options(synchronize_session=False)
            )
            return list(
                db.scalars(
                    select(Delivery.id)
                    .where(Delivery.id.in_(ids), Delivery.claimed_by == self.identity)
                    .order_by(Delivery.id)
                )
            )

    def deliver_due(self) -> int:
        """Send every delivery that is due and this server could claim; how many went out."""
        sent = 0
        while not self._stop.is_set():
            claimed_at = time.monotonic()
            ids = self.claim_due()
            if not ids:
                break
            sent += self._send_claimed(ids, claimed_at)
            if len(ids) < CLAIM_BATCH:
                break
        return sent

    def _send_claimed(self, ids: list[int], claimed_at: float) -> int:
        sent = 0
        with self.sessions() as db, db.begin():
            due = [
                (d.id, d.channel, d.target, d.event_id, d.subject, d.body_text, d.body_html)
                for d in db.scalars(
                    select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
                )
            ]
            secrets = {
                s.webhook_url: s.webhook_secret or ""
                for s in db.scalars(select(NotificationSettings).where(
                    NotificationSettings.webhook_url.is_not(None)))
            }  # fmt: skip
            events = {d[3]: self._event_payload(db, d[3]) for d in due if d[1] == "webhook"}
        self.webhooks.secrets = {k: v for k, v in secrets.items() if k}
        left = [d[0] for d in due]
        for delivery_id, channel, target, event_id, subject, text, html in due:
            if time.monotonic() - claimed_at > CLAIM_FOR / 2:
                break  # the claim may run out during the next send: claim again
            left.remove(delivery_id)
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
        if left:
            self._unclaim(left)
        return sent

    def _unclaim(self, ids: list[int]) -> None:
        with self.sessions() as db, db.begin():
            db.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.claimed_by == self.identity)
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    def _event_payload(self, db: Session, event_id: int) -> dict[str, object]:
        if event_id in self._events:
            return self._events[event_id]
        event = db.get(Event, event_id)
        composed = self._compose(db, event) if event is not None else None
        if composed is None:
            return {}
        payload = composed.write().event
        self._events[event_id] = payload
        return payload

    def _record(self, delivery_id: int, error: str | None) -> None:
        with self.sessions() as db, db.begin():
            delivery = db.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.claimed_by = None
            delivery.claimed_until = None
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
