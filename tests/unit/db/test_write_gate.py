"""SQLite's writers queue at the gate in the order they came; the dispatcher's go first."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import (
    DatabaseBusy,
    WriteGate,
    make_engine,
    session_factory,
    upgrade_schema,
)
from simyard.domain.tables import User


def _queue_up(gate: WriteGate, name: str, first: bool, served: list[str]) -> threading.Thread:
    def wait_turn() -> None:
        gate.acquire(first=first)
        served.append(name)
        gate.release()

    thread = threading.Thread(target=wait_turn)
    thread.start()
    time.sleep(0.2)  # in the queue before the next one comes
    return thread


def test_the_dispatchers_transactions_go_ahead_of_those_waiting_in_order() -> None:
    gate, served = WriteGate(), []
    gate.acquire()  # a writer holds the gate meanwhile
    waiting = [
        _queue_up(gate, "submission 1", False, served),
        _queue_up(gate, "submission 2", False, served),
        _queue_up(gate, "lease renewal", True, served),
        _queue_up(gate, "dispatcher pass", True, served),
    ]
    gate.release()
    for thread in waiting:
        thread.join(timeout=10)
    assert served == ["lease renewal", "dispatcher pass", "submission 1", "submission 2"]


def test_a_full_queue_refuses_others_but_never_the_dispatcher() -> None:
    gate, served = WriteGate(waiting=1, wait=10), []
    gate.acquire()
    waiting = [_queue_up(gate, "submission", False, served)]
    with pytest.raises(DatabaseBusy):
        gate.acquire()
    waiting.append(_queue_up(gate, "lease renewal", True, served))
    gate.release()
    for thread in waiting:
        thread.join(timeout=10)
    assert served == ["lease renewal", "submission"]


def test_a_first_in_line_waiter_that_gave_up_leaves_the_order_intact() -> None:
    gate, served = WriteGate(wait=0.3), []
    gate.acquire()
    gave_up: list[bool] = []

    def impatient() -> None:
        try:
            gate.acquire(first=True)
        except DatabaseBusy:
            gave_up.append(True)

    early = threading.Thread(target=impatient)
    early.start()
    early.join(timeout=10)  # waited 0.3 s, then gave up
    gate.wait = 10
    waiting = [
        _queue_up(gate, "submission", False, served),
        _queue_up(gate, "lease renewal", True, served),
    ]
    gate.release()
    for thread in waiting:
        thread.join(timeout=10)
    assert gave_up == [True]
    assert served == ["lease renewal", "submission"]


def test_the_dispatchers_sessions_are_first_in_line_on_a_real_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    writers = session_factory(engine)
    dispatching = session_factory(engine, first_in_line=True)
    served: list[str] = []

    def write(factory: sessionmaker[Session], name: str) -> None:
        with factory() as db, db.begin():
            db.execute(select(User.id))  # begins the transaction: waits at the gate
            served.append(name)

    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with writers() as db, db.begin():
            db.execute(select(User.id))
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    waiting = []
    for factory, name in ((writers, "submission"), (dispatching, "dispatcher")):
        waiting.append(threading.Thread(target=write, args=(factory, name)))
        waiting[-1].start()
        time.sleep(0.2)
    release.set()
    for thread in (holder, *waiting):
        thread.join(timeout=10)
    engine.dispose()
    assert served == ["dispatcher", "submission"]
