"""Times as simyard keeps them: timezone-aware, in UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def aware(when: dt.datetime) -> dt.datetime:
    """A time read back from a database, in UTC (SQLite forgets the zone)."""
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def in_utc(when: dt.datetime) -> dt.datetime:
    """The same moment, timezone-aware in UTC (a time without a zone is taken as UTC).

    Every time of an answer passes here (six per run of a list): the common cases, a time
    read back from SQLite (no zone) or one already in UTC, skip the conversion."""
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    if when.tzinfo is dt.UTC:
        return when
    return when.astimezone(dt.UTC)


def utc_text(when: dt.datetime) -> str:
    """``2026-12-01T16:03:05.123456Z``: ISO 8601 in UTC, with ``Z``, as answers write it."""
    return in_utc(when).isoformat().replace("+00:00", "Z")


def limit_ms(seconds: float) -> int:
    """A time limit in whole milliseconds, at least 1 (0 would mean no limit at all to
    PostgreSQL's timeouts)."""
    return max(1, round(seconds * 1000))
