"""The audit log service: no secret-looking detail, filters, paging, retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.audit import (
    ANONYMOUS,
    AuditAction,
    list_entries,
    notification_detail,
    prune_entries,
    record,
)
from simyard.domain.tables import AuditEntry, NotificationSettings, utcnow


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def test_a_detail_named_like_a_secret_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        for key in ("password", "new_token", "webhook_secret", "webhook_url"):
            with pytest.raises(ValueError, match="sounds like a secret"):
                record(db=db, actor="ann", action=AuditAction.user_added, detail={key: "x"})


def test_filters_by_user_action_and_time_and_pages_newest_first(
    sessions: sessionmaker[Session],
) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with sessions() as db, db.begin():
        record(db=db, actor=ANONYMOUS, action=AuditAction.login_failed, account="ann",
               client="10.0.0.1").at = start  # fmt: skip
        record(db=db, actor="root", action=AuditAction.user_disabled, account="ann").at = (
            start + dt.timedelta(hours=1)
        )
        record(db=db, actor="bob", action=AuditAction.logout, account="bob").at = (
            start + dt.timedelta(hours=2)
        )
    with sessions() as db:
        actions = [e.action for e in list_entries(db=db, user="ann")]
        assert actions == ["user.disabled", "login.failed"]  # done to ann, newest first
        assert [e.actor for e in list_entries(db=db, user="root")] == ["root"]
        assert [e.action for e in list_entries(db=db, action="logout")] == ["logout"]
        window = list_entries(
            db=db, since=start + dt.timedelta(minutes=30), until=start + dt.timedelta(hours=2)
        )
        assert [e.action for e in window] == ["user.disabled"]
        first = list_entries(db=db, limit=2)
        rest = list_entries(db=db, before_id=first[-1].id, limit=2)
        assert [e.action for e in first + rest] == ["logout", "user.disabled", "login.failed"]


def test_retention_deletes_only_older_entries(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    with sessions() as db, db.begin():
        record(db=db, actor="a", action=AuditAction.logout).at = now - dt.timedelta(days=40)
        record(db=db, actor="b", action=AuditAction.logout).at = now - dt.timedelta(days=20)
    with sessions() as db, db.begin():
        assert prune_entries(db=db, keep_days=30, now=now) == 1
    with sessions() as db:
        assert [e.actor for e in db.query(AuditEntry)] == ["b"]


def test_notification_detail_keeps_no_path_secret_or_chat_token() -> None:
    prefs = NotificationSettings(
        user_id=1, email=False, outcomes=["failed"],
        webhook_url="https://hooks.example.org/T0KEN/abc?sig=1", webhook_secret="s3cret",
        apprise_urls=["tgram://123456:BOTTOKEN/42"],
    )  # fmt: skip
    detail = notification_detail(prefs, signing_changed=True)
    assert detail == {
        "email": False,
        "outcomes": ["failed"],
        "webhook": "https://hooks.example.org/…",
        "webhook_signing": "changed",
        "chat": ["tgram://…"],
    }


def test_housekeeping_prunes_old_entries_and_idle_counters(
    sessions: sessionmaker[Session],
) -> None:
    from simyard.domain.tables import RateCounter
    from simyard.housekeeping import prune_once

    with sessions() as db, db.begin():
        record(db=db, actor="a", action=AuditAction.logout).at = utcnow() - dt.timedelta(days=9)
        record(db=db, actor="b", action=AuditAction.logout)
        db.add(RateCounter(key="login:address:x", count=2, counted_at=0.0, blocked_until=0.0))
    assert prune_once(sessions=sessions, audit_retention_days=7) == (1, 1)
    with sessions() as db:
        assert [e.actor for e in db.query(AuditEntry)] == ["b"]
        assert db.query(RateCounter).count() == 0
