"""Notification settings for every user, and the outbox page for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from simyard.api.deps import PlatformDep, client_address
from simyard.domain.audit import AuditAction, notification_detail, record
from simyard.domain.tables import Delivery, NotificationSettings
from simyard.web.pages.common import AdminPageUser, PageDb, PageUser
from simyard.web.session import CSRF_FIELD, check_csrf
from simyard.web.templating import render

router = APIRouter()
OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled")


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, db: PageDb, user: PageUser, saved: bool = False) -> Response:
    prefs = db.get(NotificationSettings, user.id)
    return render(
        request, "settings.html", user, nav="settings", prefs=prefs, outcomes=OUTCOMES,
        chosen=(prefs.outcomes if prefs and prefs.outcomes else list(OUTCOMES)), saved=saved,
        errors={},
    )  # fmt: skip


@router.post("/settings", response_class=HTMLResponse)
def save_settings(
    request: Request,
    db: PageDb,
    user: PageUser,
    platform: PlatformDep,
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    email: Annotated[bool, Form()] = False,
    outcomes: Annotated[list[str] | None, Form()] = None,
    webhook_url: Annotated[str, Form()] = "",
    webhook_secret: Annotated[str, Form()] = "",
    apprise_urls: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    errors = {}
    webhook_url = webhook_url.strip()
    if webhook_url and not webhook_url.startswith(("http://", "https://")):
        errors["webhook_url"] = "must start with http:// or https://"
    elif webhook_url and (refused := platform.outbox.refusal("webhook", webhook_url)):
        errors["webhook_url"] = refused
    urls = [u.strip() for u in apprise_urls.splitlines() if u.strip()]
    if chat := [f"line {i}: {r}" for i, u in enumerate(urls, 1)
                if (r := platform.outbox.refusal("apprise", u))]:  # fmt: skip
        errors["apprise_urls"] = "; ".join(chat)
    chosen = [o for o in outcomes or [] if o in OUTCOMES]
    prefs = db.get(NotificationSettings, user.id) or NotificationSettings(user_id=user.id)
    if errors:
        return render(
            request, "settings.html", user, nav="settings", prefs=prefs, outcomes=OUTCOMES,
            chosen=chosen, saved=False, errors=errors, typed={"email": email,
            "webhook_url": webhook_url, "apprise_urls": apprise_urls}, status_code=422,
        )  # fmt: skip
    prefs.email = email
    prefs.outcomes = chosen
    prefs.webhook_url = webhook_url or None
    if webhook_secret:
        prefs.webhook_secret = webhook_secret
    prefs.apprise_urls = urls
    db.add(prefs)
    record(
        db=db, actor=user.name, action=AuditAction.notifications_changed, account=user.name,
        client=client_address(request),
        detail=notification_detail(prefs, signing_changed=bool(webhook_secret)),
    )  # fmt: skip
    return RedirectResponse("/settings?saved=true", status_code=303)


@router.get("/admin/outbox", response_class=HTMLResponse)
def outbox_page(request: Request, db: PageDb, user: AdminPageUser) -> Response:
    """Every message simyard sent or holds (mail without an SMTP server lands here)."""
    deliveries = list(db.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(200)))
    return render(request, "outbox.html", user, nav="admin", deliveries=deliveries)
