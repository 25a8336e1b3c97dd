"""The database tables (SQLAlchemy 2). The database is the source of truth for every run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from simyard.domain.states import (
    RunState,
    TaskRunState,
    check_run_transition,
    check_task_transition,
)
from simyard.times import aware as aware  # re-exported: the tables' times
from simyard.times import utcnow as utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Quota: at most this many of the user's tasks run at once (None: only the slots limit).
    max_running: Mapped[int | None]
    # An admin set a temporary password: the user must choose their own at the next login.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    scope: Mapped[str] = mapped_column(String(8), default="run", server_default="run")
    expires_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class BrowserSession(Base):
    """A logged-in browser: the cookie holds a random id, the database only its sha256."""

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    client: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship()


class ExternalIdentity(Base):
    """A user's account at an OpenID Connect provider: (issuer, subject) names it for good,
    whatever its email or user name becomes."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]]
    bundle_key: Mapped[str] = mapped_column(String(255))
    bundle_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Model environments (issue 15): the image digest of environment.image, and of each
    # task that runs in an image (its own or the default), None without one.
    image_digest: Mapped[str | None] = mapped_column(String(71))
    task_images: Mapped[dict[str, str] | None] = mapped_column(JSON)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_user_created", "user_id", "id"),
        Index("ix_runs_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=RunState.queued)
    params: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_task: Mapped[str | None] = mapped_column(String(100))
    error_summary: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rerun_of: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    notify: Mapped[bool | None] = mapped_column(Boolean)  # None: the owner's preferences
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True
    )
    # Rendered once at submission (None: the model has none, or the run is older).
    parameter_file: Mapped[bytes | None] = mapped_column(LargeBinary)
    # What its owner calls it and notes about it (editable), and the warnings it was
    # created with (soft limits, hooks), each {"field", "message"}.
    name: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    warnings: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    # The project it was started in (its members read it; its quota counted it), if any.
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )

    user: Mapped[User] = relationship()
    model_version: Mapped[ModelVersion] = relationship()
    project: Mapped[Project | None] = relationship()
    task_runs: Mapped[list[TaskRun]] = relationship(
        back_populates="run", order_by="TaskRun.position", cascade="all, delete-orphan"
    )

    def set_state(self, new: RunState) -> None:
        """Move to ``new``; raise InvalidTransition when the table forbids it."""
        check_run_transition(RunState(self.state), new)
        self.state = new
        now = utcnow()
        if new is RunState.running:
            self.started_at = now
        if new.final:
            self.finished_at = now


class Sweep(Base):
    """Runs made from one base configuration and parameter axes, launched together."""

    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_user", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    mode: Mapped[str] = mapped_column(String(8))  # grid | zip | table
    base_params: Mapped[dict[str, Any]]
    axes: Mapped[dict[str, Any]]  # parameter -> its values (per row for zip and table)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set once, by the outbox, when the last run has ended: the summary is sent once.
    finished_at: Mapped[dt.datetime | None]
    notify: Mapped[bool | None] = mapped_column(Boolean)  # None: the owner's preferences

    user: Mapped[User] = relationship()
    model_version: Mapped[ModelVersion] = relationship()
    runs: Mapped[list[Run]] = relationship(order_by="Run.id")


class Project(Base):
    """A named group of users: each member reads the project's runs; its own quota."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # At most this many of the project's runs not yet ended at once (None: no quota).
    max_active_runs: Mapped[int | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    members: Mapped[list[User]] = relationship(secondary="project_members", order_by="User.name")


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Share(Base):
    """A run or a sweep (one of the two) shared read-only with a user, or with every
    signed-in user when ``user_id`` is None."""

    __tablename__ = "shares"
    __table_args__ = (
        Index("ix_shares_run", "run_id"),
        Index("ix_shares_sweep", "sweep_id"),
        Index("ix_shares_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shared_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship(foreign_keys=[user_id])
    sharer: Mapped[User | None] = relationship(foreign_keys=[shared_by])


class TaskRun(Base):
    __tablename__ = "task_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        Index("ix_task_runs_state", "state"),
        Index("ix_task_runs_state_queued", "state", "queued_at", "id"),  # the claim's order
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default=TaskRunState.pending)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None]
    signal: Mapped[int | None]  # the signal that killed the model; exit_code is then None
    warnings: Mapped[list[str] | None] = mapped_column(JSON)  # lines of warning_patterns
    queued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    progress: Mapped[float | None] = mapped_column(Float)
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failure_summary: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    reused_from: Mapped[int | None] = mapped_column(Integer)
    # Usage, summed over its attempts: seconds on a worker, and those times its cpus.
    worker_seconds: Mapped[float | None] = mapped_column(Float)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    # The run's metrics this task's files hold, read where they were made (the worker);
    # None: not read there (an older result), so the run's are read from storage.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    image_digest: Mapped[str | None] = mapped_column(String(71))  # the image it ran in

    run: Mapped[Run] = relationship(back_populates="task_runs")

    def set_state(self, new: TaskRunState) -> None:
        """Move to ``new``; raise InvalidTransition when the table forbids it."""
        check_task_transition(TaskRunState(self.state), new)
        self.state = new
        now = utcnow()
        if new is TaskRunState.queued:
            self.queued_at = now
        if new is TaskRunState.running:
            self.started_at = now
            self.heartbeat_at = now
        if new.final:
            self.finished_at = now


class StoredFile(Base):
    """A file in object storage that belongs to a run: an input, an output, a log."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_run_kind", "run_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task_run_id: Mapped[int | None] = mapped_column(ForeignKey("task_runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # input | output | diagnostic | log
    slot: Mapped[str | None] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(String(1024))
    filename: Mapped[str | None] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(Base):
    """Every state change, written in the same transaction as the change (the outbox)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task_run_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )


class NotificationSettings(Base):
    """A user's choice of channels and of the outcomes that notify them."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    outcomes: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    apprise_urls: Mapped[list[str]] = mapped_column(JSON, default=list)


class Delivery(Base):
    """One message for one channel about one event: sent at least once, never twice."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", "target"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))  # email | outbox | webhook | apprise
    target: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(998), default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    # The server sending it now, until when (several servers, one database: one sends).
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[dt.datetime | None]


class DispatcherLease(Base):
    """The one row that says which server dispatches (several servers, one database)."""

    __tablename__ = "dispatcher_lease"

    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime]


class RateCounter(Base):
    """One rate limit's count for one key (an account, a client address, a user's runs),
    shared by every server on the database (see domain/ratelimit.py)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds since the epoch (plain numbers: the same arithmetic on SQLite and PostgreSQL).
    counted_at: Mapped[float] = mapped_column(Float, default=0.0)  # when count last rose
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)  # no attempt before


class AuditEntry(Base):
    """A security event: who did what to whom, from where, when (see domain/audit.py).
    Never a secret: no password, token, webhook secret or full webhook URL."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_account", "account", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))  # a user name, "operator" or "anonymous"
    action: Mapped[str] = mapped_column(String(40))
    account: Mapped[str | None] = mapped_column(String(64))  # the user it concerns, if any
    target: Mapped[str] = mapped_column(String(200), default="")
    client: Mapped[str] = mapped_column(String(64), default="")  # the client's address
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
