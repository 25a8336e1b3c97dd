"""Times in answers: ISO 8601 in UTC with "Z", whatever zone (or none) they were kept in."""

from __future__ import annotations

import datetime as dt
import json

from simyard.schemas import TaskOut
from simyard.times import utc_text


def task(started: dt.datetime) -> TaskOut:
    return TaskOut(
        name="simulate", state="running", attempt=1, exit_code=None, progress=None,
        started_at=started, finished_at=None, heartbeat_at=None, failure_kind=None,
        failure_summary=None,
    )  # fmt: skip


def test_answers_write_times_in_utc_with_z() -> None:
    naive = dt.datetime(2026, 12, 1, 16, 3, 5)  # as SQLite gives it back: UTC, no zone
    assert json.loads(task(naive).model_dump_json())["started_at"] == "2026-12-01T16:03:05Z"
    in_utc = naive.replace(tzinfo=dt.UTC)  # as PostgreSQL gives it back
    assert json.loads(task(in_utc).model_dump_json())["started_at"] == "2026-12-01T16:03:05Z"
    paris = dt.datetime(2026, 12, 1, 17, 3, 5, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert utc_text(paris) == "2026-12-01T16:03:05.250000Z"
    # Read back by a client, it is the same moment.
    again = TaskOut.model_validate_json(task(paris).model_dump_json())
    assert again.started_at == paris
