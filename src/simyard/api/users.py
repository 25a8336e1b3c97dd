"""Who am I, and my notification settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from simyard.api.deps import DbDep, PlatformDep, UserDep, client_address, problems_response
from simyard.api.schemas import REFUSED
from simyard.domain.audit import AuditAction, notification_detail, record
from simyard.domain.tables import NotificationSettings
from simyard.errors import Problem

router = APIRouter(tags=["users and tokens"])


@router.get("/users/me")
def me(user: UserDep) -> dict[str, Any]:
    """The caller, with their quota: ``max_running`` of their tasks at once (null: none)."""
    return {
        "name": user.name,
        "email": user.email,
        "is_admin": user.is_admin,
        "max_running": user.max_running,
    }


OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled")


class NotificationPrefs(BaseModel):
    email: bool = True
    outcomes: list[str] = list(OUTCOMES)
    webhook_url: str | None = None
    webhook_secret: str | None = None  # write-only: never sent back
    apprise_urls: list[str] = []


def _prefs_out(row: NotificationSettings | None) -> dict[str, Any]:
    if row is None:
        return {"email": True, "outcomes": list(OUTCOMES), "webhook_url": None,
                "webhook_secret_set": False, "apprise_urls": []}  # fmt: skip
    return {
        "email": row.email,
        "outcomes": row.outcomes or list(OUTCOMES),
        "webhook_url": row.webhook_url,
        "webhook_secret_set": bool(row.webhook_secret),
        "apprise_urls": row.apprise_urls or [],
    }


@router.get("/users/me/notifications")
def get_notifications(user: UserDep, db: DbDep) -> dict[str, Any]:
    """Your notification channels and the outcomes that notify you."""
    return _prefs_out(db.get(NotificationSettings, user.id))


@router.put("/users/me/notifications", responses={422: REFUSED})
def set_notifications(
    body: NotificationPrefs, user: UserDep, db: DbDep, platform: PlatformDep, request: Request
) -> Any:
    """Set your channels; a URL the outbound policy refuses (loopback, private, ...) is a 422."""
    problems = [
        Problem(f"outcomes[{i}]", f"unknown outcome; use {', '.join(OUTCOMES)}")
        for i, o in enumerate(body.outcomes)
        if o not in OUTCOMES
    ]
    if body.webhook_url and not body.webhook_url.startswith(("http://", "https://")):
        problems.append(Problem("webhook_url", "must start with http:// or https://"))
    elif body.webhook_url and (refused := platform.outbox.refusal("webhook", body.webhook_url)):
        problems.append(Problem("webhook_url", refused))
    for i, url in enumerate(body.apprise_urls):
        if url.strip() and (refused := platform.outbox.refusal("apprise", url.strip())):
            problems.append(Problem(f"apprise_urls[{i}]", refused))
    if problems:
        return problems_response(problems)
    row = db.get(NotificationSettings, user.id) or NotificationSettings(user_id=user.id)
    row.email = body.email
    row.outcomes = body.outcomes
    row.webhook_url = body.webhook_url or None
    if body.webhook_secret is not None:
        row.webhook_secret = body.webhook_secret or None
    row.apprise_urls = [u.strip() for u in body.apprise_urls if u.strip()]
    db.add(row)
    db.flush()
    record(
        db=db, actor=user.name, action=AuditAction.notifications_changed, account=user.name,
        client=client_address(request),
        detail=notification_detail(row, signing_changed=body.webhook_secret is not None),
    )  # fmt: skip
    return _prefs_out(row)
