"""The account page reads in a snapshot that may not write: it must not look this
browser's session up a second time (a second lookup may note a use, which is a write)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from simyard.api.app import create_app
from simyard.config import Settings
from simyard.db.session import transaction
from simyard.domain import sessions
from simyard.domain.users import create_user
from simyard.wiring import build_platform
from tests.conftest import run_apart

PASSWORD = "correct horse battery"


def test_the_account_page_names_this_browser_however_late_its_handler_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = build_platform(Settings(home=tmp_path, session_idle_timeout=3600))
    with transaction(platform.sessions) as db:
        create_user(db=db, name="ana", email="ana@example.org", password=PASSWORD)
    app = httpx.ASGITransport(create_app(platform, dispatch=False))
    real_now = sessions.utcnow

    async def visit() -> httpx.Response:
        async with httpx.AsyncClient(transport=app, base_url="http://127.0.0.1") as client:
            login = (await client.get("/login")).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
            assert csrf
            form = {"username": "ana", "password": PASSWORD, "csrf_token": csrf.group(1)}
            assert (await client.post("/login", data=form)).status_code == 303
            # From now on each look at the clock is a minute and a second after the last:
            # every lookup of the session notes a use (a write), as on a loaded machine
            # where a page's handler starts long after its user was looked up.
            ticks = iter(range(1, 10_000))
            later = lambda: real_now() + next(ticks) * dt.timedelta(seconds=61)  # noqa: E731
            monkeypatch.setattr(sessions, "utcnow", later)
            return await client.get("/account")

    page = run_apart(visit)
    platform.database.engine.dispose()
    assert page.status_code == 200, page.text
    assert page.text.count("this browser") == 1
