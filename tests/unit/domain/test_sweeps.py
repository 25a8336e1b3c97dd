"""Sweep planning (grid, zip, table), the once-only finish claim, and migrations = tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.states import RunState
from simyard.domain.sweeps import MAX_SWEEP_RUNS, close_if_done, plan_axes, plan_table
from simyard.domain.tables import Base, ModelVersion, Run, Sweep, User
from simyard.errors import ValidationFailed

PARAMS = ["days", "albedo", "site"]


def test_grid_is_every_combination() -> None:
    plan = plan_axes("grid", {"days": [1, 2, 3], "albedo": [0.1, 0.2]}, PARAMS)
    assert len(plan.combinations) == 6
    assert {(c["days"], c["albedo"]) for c in plan.combinations} == {
        (d, a) for d in (1, 2, 3) for a in (0.1, 0.2)
    }
    assert plan.where(0) == "run 1 (days=1, albedo=0.1)"


def test_zip_pairs_and_needs_equal_lengths() -> None:
    plan = plan_axes("zip", {"days": [1, 2], "site": ["a", "b"]}, PARAMS)
    assert plan.combinations == [{"days": 1, "site": "a"}, {"days": 2, "site": "b"}]
    with pytest.raises(ValidationFailed) as info:
        plan_axes("zip", {"days": [1, 2], "site": ["a"]}, PARAMS)
    assert str(info.value.problems[0]) == (
        "axes: zip pairs the lists, so they need the same length: days has 2, site has 1"
    )


@pytest.mark.parametrize(
    ("mode", "axes", "expected"),
    [
        (
            "grid",
            {"dayz": [1]},
            "axes.dayz: unknown parameter (this model has: days, albedo, site)",
        ),
        ("grid", {"days": []}, "axes.days: must be a non-empty list of values"),
        ("grid", {"days": 3}, "axes.days: must be a non-empty list of values"),
        ("grid", {}, "axes: give at least one parameter with its values"),
        ("cube", {"days": [1]}, "mode: must be grid, zip or table"),
        (
            "grid",
            {"days": list(range(100)), "albedo": list(range(11))},
            f"axes: would make 1100 runs; a sweep holds at most {MAX_SWEEP_RUNS}",
        ),
    ],
)
def test_bad_axes_are_named(mode: str, axes: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        plan_axes(mode, axes, PARAMS)  # type: ignore[arg-type]
    assert str(info.value.problems[0]) == expected


def test_table_rows_are_runs_and_an_empty_cell_keeps_the_base() -> None:
    plan = plan_table(b"\xef\xbb\xbfdays,site\r\n1,a\r\n2,\r\n\r\n", "runs.csv", PARAMS)
    assert plan.combinations == [{"days": "1", "site": "a"}, {"days": "2"}]
    assert plan.where(1) == "runs.csv row 3"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "table: runs.csv is empty: a header row names parameters"),
        (b"days,depth\n1,2\n", "table: table (runs.csv): column 'depth' is not a parameter"),
        (b"days,site\n1\n", "table: table (runs.csv) row 2: 1 fields, the header has 2"),
        (b"days\n", "table: table (runs.csv): no rows below the header"),
        (b"days\n\xff\n", "table: runs.csv is not UTF-8 text"),
    ],
)
def test_bad_tables_are_named(data: bytes, expected: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        plan_table(data, "runs.csv", PARAMS)
    assert str(info.value.problems[0]).startswith(expected)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def test_a_finished_sweep_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    with sessions() as db, db.begin():
        user = User(name="ana", email="ana@example.org", is_admin=False, disabled=False)
        version = ModelVersion(
            name="m", version="1", content_hash="x", manifest={}, bundle_key="k", bundle_size=1
        )
        db.add_all([user, version])
        db.flush()
        sweep = Sweep(
            user_id=user.id, model_version_id=version.id, mode="grid", base_params={}, axes={}
        )
        db.add(sweep)
        db.flush()
        runs = [
            Run(user_id=user.id, model_version_id=version.id, params={}, sweep_id=sweep.id,
                state=state, cancel_requested=False)
            for state in (RunState.succeeded, RunState.running)
        ]  # fmt: skip
        db.add_all(runs)
        db.flush()
        sweep_id, running_id = sweep.id, runs[1].id
    with sessions() as db, db.begin():
        assert not close_if_done(db, sweep_id)  # a run is still running
    with sessions() as db, db.begin():
        run = db.get(Run, running_id)
        assert run is not None
        run.set_state(RunState.failed)
    with sessions() as db, db.begin():
        assert close_if_done(db, sweep_id)
    with sessions() as db, db.begin():
        assert not close_if_done(db, sweep_id)  # told once, whoever asks again


def test_migrations_make_exactly_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
