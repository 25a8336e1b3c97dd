"""Rate limits counted in the database, so that every server on one database shares them.

Two rules over one table, ``rate_counters`` (key, count, when the count last rose, blocked
until):

- **Failed logins** (the login form and ``POST /api/v1/tokens``) are throttled per account
  and per client address. An attempt is *reserved* before its password is checked: the
  first ``free`` attempts in a row cost nothing; from the ``free``-th on, each sets a wait
  (``delay``, doubled per further attempt, at most ``max_delay``) before the next attempt
  is allowed. An attempt during a wait is refused (429 with Retry-After) without checking
  its password, even a right one: otherwise the wait would not slow a guesser down. A
  success resets the account's count and gives the address back its attempt (so users
  behind one address do not use up each other's allowance, and a guesser cannot clear the
  address's count by logging in to an account of their own). A count is forgotten after
  ``FORGET_AFTER`` without an attempt. Reserving first is what makes the limit hold under
  concurrency: a hundred parallel guesses are counted one by one, not all checked against
  the same count. The server never sleeps to make someone wait; it refuses and says when.
- **Run creation**: at most ``amount`` runs per ``period`` seconds per user, in fixed
  windows (a sweep counts once: the rate limits requests; the user's quota of tasks at
  once limits the load).

Every decision locks the rows it reads (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite
every transaction holds the write lock, see db/session.py), decides in plain Python, and
writes in the same transaction, so no update is lost and no two servers decide from the
same count. Rows are locked in key order, so two decisions never deadlock.

Why not the ``limits`` package: it has no SQL storage, and writing one is less sound than
this table. Its strategies call ``Storage.incr(key, expiry)`` and similar methods with no
session, so a count could not commit or roll back with the run it counts; its moving
window needs an atomic check-and-append over a list of timestamps, which SQL would only
give through the row locks used here anyway; its storages register themselves by URI
scheme through a metaclass when their class is defined; and it has no growing delays, the
rule failed logins need. What it would bring, fixed-window counting, is the twenty lines
of ``spend_run``.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from simyard.domain.tables import RateCounter

FORGET_AFTER = 24 * 3600.0  # seconds without an attempt after which a login count restarts
KEY_LENGTH = 200
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


@dataclass(frozen=True)
class LoginRule:
    """How failed logins are throttled: free attempts per account and per address, then
    waits of ``delay`` seconds, doubled per attempt, at most ``max_delay``."""

    free_per_account: int = 5
    free_per_address: int = 20
    delay: float = 1.0
    max_delay: float = 900.0

    def wait_after(self, count: int, free: int) -> float:
        """Seconds before the next attempt, after ``count`` attempts in a row (0: none)."""
        if count < free:
            return 0.0
        return float(min(self.delay * 2.0 ** min(count - free, 64), self.max_delay))


@dataclass(frozen=True)
class RunRate:
    """At most ``amount`` runs per ``period`` seconds per user."""

    amount: int
    period: int
    text: str

    @classmethod
    def parse(cls, text: str) -> RunRate | None:
        """``"60/minute"`` (second, minute, hour or day); None for ``""`` (no limit)."""
        if not text.strip():
            return None
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", text)
        if found is None:
            raise ValueError(f"not a rate: {text!r}; write e.g. 60/minute")
        return cls(int(found[1]), PERIODS[found[2]], f"{int(found[1])} per {found[2]}")


@dataclass(frozen=True)
class Count:
    """A counter's state, as the pure decisions below see it."""

    count: int = 0
    counted_at: float = 0.0
    blocked_until: float = 0.0


def login_attempt(state: Count, *, now: float, free: int, rule: LoginRule) -> Count | float:
    """The state after one more login attempt, or the seconds to wait when it is refused."""
    if state.blocked_until > now:
        return state.blocked_until - now
    count = 1 if state.counted_at < now - FORGET_AFTER else state.count + 1
    wait = rule.wait_after(count, free)
    return Count(count, now, now + wait if wait else 0.0)


def login_given_back(state: Count, *, free: int) -> Count:
    """A successful attempt no longer counts; back below the allowance, nothing waits (the
    wait was this attempt's own)."""
    count = max(state.count - 1, 0)
    return replace(state, count=count, blocked_until=state.blocked_until if count >= free else 0.0)


def run_spent(state: Count, *, now: float, rate: RunRate) -> Count | float:
    """The state after one more run, or the seconds until the window ends when refused."""
    window = math.floor(now / rate.period) * rate.period
    count = 1 if state.counted_at < window else state.count + 1
    if count > rate.amount:
        return window + rate.period - now
    return Count(count, now, 0.0)


def account_key(name: str) -> str:
    """The key of an account's count: its name, or for anything a user name cannot be (a NUL,
    which PostgreSQL text cannot hold; a name too long) the name's sha256."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        name = "sha256:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"login:account:{name}"


def address_key(address: str) -> str:
    return f"login:address:{address or 'unknown'}"[:KEY_LENGTH]


def _locked(db: Session, keys: list[str]) -> dict[str, RateCounter]:
    """The counters of ``keys``, made if missing, locked until the transaction ends."""
    keys = sorted(set(keys))
    for key in keys:
        _insert_if_missing(db, key)
    rows = db.scalars(
        select(RateCounter)
        .where(RateCounter.key.in_(keys))
        .order_by(RateCounter.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.key: row for row in rows}


def _insert_if_missing(db: Session, key: str) -> None:
    values = {"key": key, "count": 0, "counted_at": 0.0, "blocked_until": 0.0}
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        db.execute(pg_insert(RateCounter).values(values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        db.execute(sqlite_insert(RateCounter).values(values).on_conflict_do_nothing())


def _state(row: RateCounter) -> Count:
    return Count(row.count, row.counted_at, row.blocked_until)


def _store(row: RateCounter, state: Count) -> None:
    row.count, row.counted_at, row.blocked_until = (
        state.count,
        state.counted_at,
        state.blocked_until,
    )


def reserve_login(
    *, db: Session, rule: LoginRule, account: str, address: str, now: float | None = None
) -> float | None:
    """Count one login attempt for ``account`` from ``address``: None when it may go ahead,
    else the seconds to wait (then nothing is counted). The caller commits at once, before
    checking the password, so the lock is not held while the password is hashed."""
    now = time.time() if now is None else now
    rows = _locked(db, [account_key(account), address_key(address)])
    frees = {
        account_key(account): rule.free_per_account,
        address_key(address): rule.free_per_address,
    }
    decided = {
        key: login_attempt(_state(row), now=now, free=frees[key], rule=rule)
        for key, row in rows.items()
    }
    waits = [d for d in decided.values() if isinstance(d, float)]
    if waits:
        return max(waits)
    for key, state in decided.items():
        assert isinstance(state, Count)
        _store(rows[key], state)
    db.flush()
    return None


def login_succeeded(*, db: Session, rule: LoginRule, account: str, address: str) -> None:
    """Reset the account's count; give the address back the attempt it reserved."""
    db.execute(delete(RateCounter).where(RateCounter.key == account_key(account)))
    row = _locked(db, [address_key(address)])[address_key(address)]
    _store(row, login_given_back(_state(row), free=rule.free_per_address))
    db.flush()


def spend_run(
    *, db: Session, rate: RunRate, user_id: int, now: float | None = None
) -> float | None:
    """Count one run (or sweep) of the user: None when allowed, else the seconds until the
    window ends (then nothing is counted). Call it in the transaction that creates the run."""
    now = time.time() if now is None else now
    key = f"runs:user:{user_id}"
    row = _locked(db, [key])[key]
    decided = run_spent(_state(row), now=now, rate=rate)
    if isinstance(decided, float):
        return decided
    _store(row, decided)
    db.flush()
    return None


def prune_counters(*, db: Session, now: float | None = None) -> int:
    """Delete counters nobody needs any more (quiet for a day and not blocking); how many."""
    now = time.time() if now is None else now
    done = db.execute(
        delete(RateCounter).where(
            RateCounter.counted_at < now - max(FORGET_AFTER, PERIODS["day"]),
            RateCounter.blocked_until <= now,
        )
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def retry_after(seconds: float) -> str:
    """A Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
