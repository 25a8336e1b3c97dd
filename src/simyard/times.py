"""Times as simyard keeps them: timezone-aware, in UTC."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def aware(when: dt.datetime) -> dt.datetime:
    """A time read back from a database, in UTC (SQLite forgets the zone)."""
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
