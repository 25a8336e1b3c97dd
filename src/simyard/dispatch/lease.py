"""This server's side of the dispatch lease: take it, renew it, know when it is gone.

A term starts when the lease is taken and ends when a renewal fails or the lease's
time runs out by this process's own monotonic clock (a server stopped by SIGSTOP or a
long pause wakes up past it). The term token is the fencing token: every dispatcher
transaction calls :meth:`LeaseTerm.fence` first, and a term that ended never writes.

Attempts are bounded too: :attr:`LeaseTerm.attempts_deadline` (half the lease after
the last renewal began) is handed to the executor, whose attempts stop themselves past
it — so a stalled server's models are gone before another server may take over. The
lease is renewed every tenth of its time, so a renewal late by less than 0.4 of it
stops nothing.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from sqlalchemy.orm import Session

from simyard.domain.lease import (
    end_if_stalled,
    holds_lease,
    release_lease,
    renew_lease,
    take_lease,
)
from simyard.errors import LeaseLost


class LeaseTerm:
    """The lease as this server holds it; ``valid()`` is checked before every action."""

    ATTEMPTS_SHARE = 0.5  # of the lease: how long attempts outlive a silent renewal
    # How often it is renewed: a renewal may come 0.4 of the lease late (a loaded machine)
    # before the attempts stop themselves; at a quarter, 2.5 s late stopped a CI run's.
    RENEW_SHARE = 0.1

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.token: str | None = None
        self._valid_until = 0.0  # monotonic
        self.attempts_deadline = 0.0  # wall clock (time.time()), for Executor.fence

    @staticmethod
    def new_token() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def valid(self) -> bool:
        """Whether this server may still act on its term by its own clock."""
        return self.token is not None and time.monotonic() < self._valid_until

    def take(self, db: Session) -> bool:
        """Start a new term if the lease is free; the caller commits."""
        token = self.new_token()
        started, wall = time.monotonic(), time.time()
        end_if_stalled(db, self.ttl)
        if not take_lease(db, token, self.ttl):
            return False
        self.token = token
        self._valid_until = started + self.ttl
        self.attempts_deadline = wall + self.ttl * self.ATTEMPTS_SHARE
        return True

    def renew(self, db: Session) -> bool:
        """Extend the current term; False (and the term is over) when it cannot be."""
        if self.token is None:
            return False
        started, wall = time.monotonic(), time.time()
        if started >= self._valid_until:
            self.end()
            return False
        end_if_stalled(db, self.ttl)
        if not renew_lease(db, self.token, self.ttl):
            self.end()
            return False
        self._valid_until = started + self.ttl
        self.attempts_deadline = wall + self.ttl * self.ATTEMPTS_SHARE
        return True

    def fence(self, db: Session) -> None:
        """Raise LeaseLost unless this term holds the lease; locks it for the transaction,
        which the database ends should this server stall with it open for a lease's time."""
        token = self.token if self.valid() else None
        if token is not None:
            end_if_stalled(db, self.ttl)
        if token is None or not holds_lease(db, token):
            self.end()
            raise LeaseLost("this server no longer holds the dispatch lease")

    def end(self) -> None:
        self._valid_until = 0.0
        self.attempts_deadline = 0.0

    def release(self, db: Session) -> None:
        """Give the lease up at once (a clean shutdown)."""
        if self.token is not None:
            release_lease(db, self.token)
        self.token = None
        self.end()
