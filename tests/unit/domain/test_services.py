"""Users, tokens, the registry and concurrent writes on the embedded SQLite database."""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import NestedTransaction, make_engine, session_factory, upgrade_schema
from simyard.domain.registry import ModelVersionConflict, register_model
from simyard.domain.sessions import open_session, session_for
from simyard.domain.tables import ApiToken, BrowserSession, User, utcnow
from simyard.domain.users import authenticate, create_token, create_user, token_for
from simyard.engine.bundles import make_bundle
from simyard.errors import ValidationFailed
from simyard.storage.file import FileStore
from tests.conftest import MakeModel


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def test_password_is_hashed_and_checked(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = create_user(db=db, name="ana", email="ana@example.org", password="s3cret-pass")
        assert user.password_hash is not None
        assert "s3cret-pass" not in user.password_hash
    with sessions() as db:
        assert authenticate(db=db, name="ana", password="s3cret-pass") is not None
        assert authenticate(db=db, name="ana", password="wrong-pass") is None
        assert authenticate(db=db, name="nobody", password="s3cret-pass") is None


def test_bad_user_fields_are_named(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, pytest.raises(ValidationFailed) as info:
        create_user(db=db, name="a b", email="not-an-email\r\nBcc: x", password="short")
    assert [p.field for p in info.value.problems] == ["name", "email", "password"]


def test_token_is_stored_hashed_and_finds_its_user(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = create_user(db=db, name="ben", email="ben@example.org", password=None)
        token = create_token(db=db, user=user)
    with sessions() as db, db.begin():
        found = token_for(db=db, token=token)
        assert found is not None
        assert found.user.name == "ben"
        assert token_for(db=db, token=token + "x") is None
        stored = db.scalar(select(ApiToken.token_hash))
        assert stored is not None
        assert token not in stored


def test_bundle_is_reproducible(make_model: MakeModel, tmp_path: Path) -> None:
    model = make_model("simyard: 1\nname: m\nversion: '1'\ntasks: {a: {command: [x]}}\n")
    _, first = make_bundle(model, tmp_path / "b1")
    (model / "simyard.yaml").touch()  # a new mtime changes nothing
    _, second = make_bundle(model, tmp_path / "b2")
    assert first == second


def test_same_version_other_content_is_refused(
    sessions: sessionmaker[Session], make_model: MakeModel, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    manifest = "simyard: 1\nname: m\nversion: '1'\ntasks: {a: {command: [x]}}\n"
    with sessions() as db, db.begin():
        _, created = register_model(db=db, store=store, model_dir=make_model(manifest), user=None)
        assert created
        _, created = register_model(db=db, store=store, model_dir=make_model(manifest), user=None)
        assert not created
        with pytest.raises(ModelVersionConflict, match="give the changed model a new version"):
            register_model(
                db=db, store=store, model_dir=make_model(manifest, {"x.txt": "x"}), user=None
            )


def test_concurrent_writers_wait_instead_of_failing(sessions: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                with sessions() as db, db.begin():
                    db.scalar(select(func.count(User.id)))  # read, then write: the risky pattern
                    create_user(db=db, name=f"u{n}-{i}", email=f"u{n}@example.org", password=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as db:
        assert db.scalar(select(func.count(User.id))) == 160


def test_a_second_transaction_in_one_code_path_is_refused_at_once(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as outer, outer.begin():
        outer.scalar(select(func.count(User.id)))
        with pytest.raises(NestedTransaction), sessions() as inner, inner.begin():
            inner.scalar(select(func.count(User.id)))


def test_a_transaction_committed_in_another_thread_does_not_block_the_first_thread(
    sessions: sessionmaker[Session],
) -> None:
    """As the web server does: a request's transaction begins in a worker thread and is
    committed from another; meanwhile the worker serves other requests (each call in a
    copy of the caller's context, as anyio runs it)."""
    pool = ThreadPoolExecutor(1)  # one worker: every call below runs in the same thread

    def in_worker(fn: Callable[[], object]) -> object:
        return pool.submit(contextvars.copy_context().run, fn).result()

    first = sessions()
    in_worker(lambda: first.begin() and first.scalar(select(func.count(User.id))))
    threading.Timer(0.2, first.commit).start()  # committed elsewhere, a little later

    def other_request() -> int:
        with sessions() as db, db.begin():
            create_user(db=db, name="late", email="late@example.org", password=None)
            return 1

    assert in_worker(other_request) == 1  # it waited for the lock; it was not refused
    first.close()
    pool.shutdown()


def test_an_expired_token_finds_no_one(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = create_user(db=db, name="eve", email="eve@example.org", password=None)
        token = create_token(
            db=db, user=user, scope="read", expires_at=utcnow() + dt.timedelta(days=1)
        )
    with sessions() as db, db.begin():
        row = token_for(db=db, token=token)
        assert row is not None
        assert row.scope == "read"
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    with sessions() as db, db.begin():
        assert token_for(db=db, token=token) is None


def test_a_session_ends_at_its_absolute_expiry_even_while_used(
    sessions: sessionmaker[Session],
) -> None:
    idle = dt.timedelta(hours=1)
    with sessions() as db, db.begin():
        user = create_user(db=db, name="sam", email="sam@example.org", password=None)
        secret = open_session(db=db, user=user, max_age=dt.timedelta(hours=2))
    with sessions() as db, db.begin():
        found = session_for(db=db, secret=secret, idle=idle)
        assert found is not None
        found.expires_at = utcnow() - dt.timedelta(seconds=1)
        found.last_seen_at = utcnow()
    with sessions() as db, db.begin():
        assert session_for(db=db, secret=secret, idle=idle) is None
        assert db.scalar(select(BrowserSession)) is None  # removed on sight
        assert session_for(db=db, secret="forged", idle=idle) is None
