"""Periodic clean-ups that keep the security tables bounded, on a thread of their own.

Audit entries older than SIMYARD_AUDIT_RETENTION_DAYS and rate counters nobody needs any
more are deleted at start-up and then every ``interval`` seconds, each in one short
transaction with nothing else in it (no I/O inside another loop's transactions). Every
server on a database may do it; deleting what another server deleted already is harmless.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from simyard.domain.audit import prune_entries
from simyard.domain.ratelimit import prune_counters

log = logging.getLogger("simyard.housekeeping")


def prune_once(*, sessions: sessionmaker[Session], audit_retention_days: int) -> tuple[int, int]:
    """Delete expired audit entries and idle rate counters; how many of each."""
    with sessions() as db, db.begin():
        entries = prune_entries(db=db, keep_days=audit_retention_days)
    with sessions() as db, db.begin():
        counters = prune_counters(db=db)
    return entries, counters


class Housekeeping:
    """Runs ``prune_once`` now and every ``interval`` seconds until stopped."""

    def __init__(
        self, *, sessions: sessionmaker[Session], audit_retention_days: int, interval: float = 3600
    ) -> None:
        self.sessions = sessions
        self.audit_retention_days = audit_retention_days
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="simyard-housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                entries, counters = prune_once(
                    sessions=self.sessions, audit_retention_days=self.audit_retention_days
                )
                if entries or counters:
                    log.info("pruned %d audit entries, %d rate counters", entries, counters)
            except Exception:  # a database hiccup must not end the loop
                log.exception("housekeeping failed; trying again later")
            self._stop.wait(self.interval)
