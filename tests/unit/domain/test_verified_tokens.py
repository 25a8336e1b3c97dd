"""Verified tokens kept for a second: a lookup within it reads nothing, and a revocation
counts at once in this process, within the second from another."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.tables import ApiToken, User
from simyard.domain.users import VerifiedTokens, create_token, create_user, revoke_token, token_for
from tests.sqlcount import counted


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def verified(sessions: sessionmaker[Session], tokens: VerifiedTokens, token: str) -> None:
    """What the API does on a miss: look the token up, and keep it."""
    with sessions() as db, db.begin():
        row = token_for(db=db, token=token)
        assert row is not None
        tokens.remember(token, row)


def ana_with_token(sessions: sessionmaker[Session], **extra: object) -> tuple[int, str]:
    with sessions() as db, db.begin():
        user = create_user(db=db, name="ana", email="a@example.org", password=None)
        return user.id, create_token(db=db, user=user, **extra)  # type: ignore[arg-type]


def test_a_token_verified_within_the_second_reads_nothing_and_each_hit_gets_its_own_user(
    sessions: sessionmaker[Session],
) -> None:
    tokens = VerifiedTokens()
    user_id, token = ana_with_token(sessions)
    assert tokens.lookup(token) is None
    verified(sessions, tokens, token)
    with counted(sessions) as sent:
        first, second = tokens.lookup(token), tokens.lookup(token)
    assert not sent
    assert first is not None
    assert second is not None
    assert (first.scope, first.user.id, first.user.name) == ("run", user_id, "ana")
    assert first.user is not second.user  # never an object another request holds
    with sessions() as db:  # a copy a request's session may read alongside its own rows
        assert db.merge(first.user, load=False).email == "a@example.org"
    assert tokens.lookup("sy_" + "x" * 40) is None  # another token: not verified


def revoke(db: Session, user_id: int) -> None:
    row = db.query(ApiToken).one()
    assert revoke_token(db=db, token_id=row.id, by=None) is not None


def disable(db: Session, user_id: int) -> None:
    user = db.get(User, user_id)
    assert user is not None
    user.disabled = True


@pytest.mark.parametrize("change", [revoke, disable], ids=["revoked token", "disabled account"])
def test_a_change_in_this_process_counts_at_once(
    sessions: sessionmaker[Session], change: Callable[[Session, int], None]
) -> None:
    tokens = VerifiedTokens(ttl=60)
    tokens.follow(sessions)
    user_id, token = ana_with_token(sessions)
    verified(sessions, tokens, token)
    with sessions() as db, db.begin():
        change(db, user_id)
    assert tokens.lookup(token) is None


def test_a_revocation_by_another_process_counts_within_the_ttl(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tokens = VerifiedTokens(ttl=0.3)
    tokens.follow(sessions)
    _, token = ana_with_token(sessions)
    verified(sessions, tokens, token)
    elsewhere = session_factory(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))  # the CLI's
    with elsewhere() as db, db.begin():
        row = db.query(ApiToken).one()
        revoke_token(db=db, token_id=row.id, by=None)
    assert tokens.lookup(token) is not None  # not seen yet: at most the ttl
    time.sleep(0.35)
    assert tokens.lookup(token) is None


def test_a_token_is_kept_no_longer_than_it_lives(sessions: sessionmaker[Session]) -> None:
    tokens = VerifiedTokens(ttl=60)
    _, token = ana_with_token(sessions)
    with sessions() as db, db.begin():
        row = db.query(ApiToken).one()
        row.expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
    verified(sessions, tokens, token)
    assert tokens.lookup(token) is not None
    time.sleep(0.35)
    assert tokens.lookup(token) is None
