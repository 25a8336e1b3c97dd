"""Rate-limit decisions (pure) and their counters in a SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.ratelimit import (
    FORGET_AFTER,
    Count,
    LoginRule,
    RunRate,
    account_key,
    login_attempt,
    login_succeeded,
    prune_counters,
    reserve_login,
    run_spent,
    spend_run,
)
from simyard.domain.tables import RateCounter

RULE = LoginRule(free_per_account=3, free_per_address=10, delay=2.0, max_delay=10.0)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def test_free_login_attempts_then_doubling_waits_up_to_the_most() -> None:
    state, waits = Count(), []
    now = 1000.0
    for _ in range(7):
        decided = login_attempt(state, now=now, free=3, rule=RULE)
        assert isinstance(decided, Count)
        state = decided
        waits.append(state.blocked_until - now if state.blocked_until else 0.0)
        now = max(now, state.blocked_until)  # the next attempt comes when allowed
    assert waits == [0.0, 0.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_an_attempt_during_a_wait_is_refused_with_the_time_left() -> None:
    blocked = Count(count=3, counted_at=1000.0, blocked_until=1002.0)
    assert login_attempt(blocked, now=1000.5, free=3, rule=RULE) == 1.5


def test_a_login_count_is_forgotten_after_a_quiet_day() -> None:
    old = Count(count=9, counted_at=1000.0, blocked_until=1010.0)
    decided = login_attempt(old, now=1000.0 + FORGET_AFTER + 1, free=3, rule=RULE)
    assert decided == Count(1, 1000.0 + FORGET_AFTER + 1, 0.0)


def test_run_rate_parses_and_refuses_past_the_amount_until_the_window_ends() -> None:
    rate = RunRate.parse("2/minute")
    assert rate == RunRate(2, 60, "2 per minute")
    assert RunRate.parse("") is None
    state = Count()
    for now in (120.0, 130.0):
        decided = run_spent(state, now=now, rate=rate)
        assert isinstance(decided, Count)
        state = decided
    assert run_spent(state, now=150.0, rate=rate) == 30.0  # the window 120-180 is spent
    assert isinstance(run_spent(state, now=180.0, rate=rate), Count)  # a new window


def test_reserving_counts_both_keys_and_a_refusal_counts_neither(
    sessions: sessionmaker[Session],
) -> None:
    rule = LoginRule(free_per_account=2, free_per_address=100, delay=60, max_delay=60)
    with sessions() as db, db.begin():
        for _ in range(2):
            assert reserve_login(db=db, rule=rule, account="ann", address="a", now=0.0) is None
        # ann now waits 60 s, whatever the address; the address's count did not rise for it
        assert reserve_login(db=db, rule=rule, account="ann", address="b", now=1.0) == 59.0
    with sessions() as db:
        counts = {row.key: row.count for row in db.query(RateCounter)}
    assert counts == {"login:account:ann": 2, "login:address:a": 2, "login:address:b": 0}


def test_a_success_resets_the_account_and_gives_the_address_its_attempt_back(
    sessions: sessionmaker[Session],
) -> None:
    rule = LoginRule(free_per_account=2, free_per_address=2, delay=60, max_delay=60)
    with sessions() as db, db.begin():
        assert reserve_login(db=db, rule=rule, account="ann", address="a", now=0.0) is None
        assert reserve_login(db=db, rule=rule, account="bob", address="a", now=0.0) is None
        login_succeeded(db=db, rule=rule, account="bob", address="a")  # bob's second try was right
        # the address is below its allowance again: nothing waits
        assert reserve_login(db=db, rule=rule, account="cat", address="a", now=0.0) is None
    with sessions() as db:
        counts = {row.key: (row.count, row.blocked_until) for row in db.query(RateCounter)}
    assert "login:account:bob" not in counts
    assert counts["login:address:a"] == (2, 60.0)  # ann's failure and cat's attempt


def test_spend_run_in_the_database_allows_the_amount_per_window(
    sessions: sessionmaker[Session],
) -> None:
    rate = RunRate(3, 60, "3 per minute")
    with sessions() as db, db.begin():
        answers = [spend_run(db=db, rate=rate, user_id=7, now=60.0 + i) for i in range(5)]
    assert answers == [None, None, None, 57.0, 56.0]


def test_prune_removes_quiet_counters_only(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        db.add(RateCounter(key="old", count=3, counted_at=0.0, blocked_until=0.0))
        db.add(RateCounter(key="blocking", count=30, counted_at=0.0, blocked_until=1e12))
        db.add(RateCounter(key="recent", count=1, counted_at=FORGET_AFTER * 2, blocked_until=0.0))
    with sessions() as db, db.begin():
        assert prune_counters(db=db, now=FORGET_AFTER * 2 + 10) == 1
    with sessions() as db:
        assert {row.key for row in db.query(RateCounter)} == {"blocking", "recent"}


def test_a_name_no_user_can_have_is_counted_under_its_hash() -> None:
    assert account_key("ann.b-2") == "login:account:ann.b-2"
    odd = account_key("ad\x00min")
    assert odd.startswith("login:account:sha256:")
    assert "\x00" not in odd
    assert len(account_key("x" * 10_000)) <= 200
