"""Readers of the embedded database wait for no writer, and may not write."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import (
    WriteInReadOnly,
    make_engine,
    read_then_write,
    session_factory,
    upgrade_schema,
)
from simyard.domain.tables import User


@pytest.fixture
def factories(tmp_path: Path) -> tuple[sessionmaker[Session], sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    writers = session_factory(engine)
    with writers() as db, db.begin():
        db.add(User(name="ana", email="ana@example.org"))
    return writers, session_factory(engine, read_only=True)


def test_a_reader_reads_while_a_writer_holds_the_lock(
    factories: tuple[sessionmaker[Session], sessionmaker[Session]],
) -> None:
    writers, readers = factories
    holding, done = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with writers() as db, db.begin():
            db.execute(update(User).values(email="new@example.org"))
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        with readers() as db, db.begin():
            email = db.scalar(select(User.email))
        took = time.monotonic() - began
        assert email == "ana@example.org"  # the snapshot before the writer's commit
        assert took < 2.0, f"the reader waited {took:.1f} s for the writer"
    finally:
        done.set()
        thread.join(10)


def test_a_reader_that_writes_is_refused_and_changes_nothing(
    factories: tuple[sessionmaker[Session], sessionmaker[Session]],
) -> None:
    writers, readers = factories
    with pytest.raises(WriteInReadOnly), readers() as db, db.begin():
        db.execute(update(User).values(email="evil@example.org"))
    with writers() as db:
        assert db.scalar(select(User.email)) == "ana@example.org"


def test_work_that_turns_out_to_write_runs_again_as_a_writer(
    factories: tuple[sessionmaker[Session], sessionmaker[Session]],
) -> None:
    writers, readers = factories
    calls: list[bool] = []

    def touch(db: Session) -> str:
        user = db.scalars(select(User)).one()
        calls.append(True)
        user.email = "touched@example.org"  # pending, as a token's "last used" is
        return user.name

    assert read_then_write(readers, writers, touch) == "ana"
    assert len(calls) == 2
    with writers() as db:
        assert db.scalar(select(User.email)) == "touched@example.org"
    assert read_then_write(readers, writers, lambda db: db.scalar(select(User.name))) == "ana"
