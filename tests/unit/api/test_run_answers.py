"""The runs API's answers as the routers shape them, and the statements they cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.api.schemas import run_out
from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain import runs as run_service
from simyard.domain.registry import register_model
from simyard.domain.states import RunState
from simyard.domain.submission import Limits, RunSubmission
from simyard.domain.tables import ModelVersion, Run, TaskRun, User
from simyard.domain.users import create_token, token_for
from simyard.storage.file import FileStore
from tests.conftest import MakeModel
from tests.sqlcount import counted


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def runs_of(sessions: sessionmaker[Session], owners: list[str]) -> dict[str, str]:
    """One run of two tasks for each owner, each owner with a token; owner -> token."""
    tokens = {}
    with sessions() as db, db.begin():
        version = ModelVersion(name="toy", version="1", content_hash="0" * 64, manifest={},
                               bundle_key="b", bundle_size=1)  # fmt: skip
        db.add(version)
        for name in owners:
            user = User(name=name, email=f"{name}@example.org", is_admin=name == "admin")
            db.add(user)
            db.flush()
            tokens[name] = create_token(db=db, user=user)
            run = Run(user_id=user.id, model_version_id=version.id, params={"days": 2},
                      state=RunState.running, cancel_requested=False)  # fmt: skip
            db.add(run)
            db.flush()
            db.add_all([TaskRun(run_id=run.id, name=task, position=i, needs=[], state="running")
                        for i, task in enumerate(("prep", "model"))])  # fmt: skip
    return tokens


def test_one_runs_answer_reads_its_caller_once_and_the_run_with_owner_and_model_at_once(
    sessions: sessionmaker[Session],
) -> None:
    tokens = runs_of(sessions, ["ana"])
    with sessions() as db, db.begin():
        token_for(db=db, token=tokens["ana"])  # its use noted: the next lookup only reads
    with counted(sessions) as sent, sessions() as db:
        row = token_for(db=db, token=tokens["ana"])
        assert row is not None
        user = row.user
        shaped = run_out(run_service.get_run(db=db, run_id=1, user=user), [])
    assert (shaped.owner, shaped.model, shaped.version) == ("ana", "toy", "1")
    assert [t.name for t in shaped.tasks] == ["prep", "model"]
    # BEGIN; the token with its user; the run with its model and owner; its task runs.
    assert len(sent) == 4, "\n".join(sent)


def test_the_runs_list_reads_each_kind_of_row_once_however_many_owners(
    sessions: sessionmaker[Session],
) -> None:
    owners = ["admin", "ana", "ben", "cy", "dee"]
    runs_of(sessions, owners)
    with sessions() as db:
        admin = db.get(User, 1)
        assert admin is not None
        with counted(sessions) as sent:
            shaped = [run_out(run, []) for run in run_service.list_runs(db=db, user=admin)]
    assert [(r.id, r.owner, r.model) for r in shaped] == [
        (5 - i, name, "toy") for i, name in enumerate(reversed(owners))
    ]
    assert all(len(r.tasks) == 2 and r.project is None for r in shaped)
    # The runs; their models; their owners; their task runs (no project: none read).
    assert len(sent) == 4, "\n".join(sent)


def test_a_created_runs_answer_is_read_from_memory_and_matches_the_run_read_again(
    sessions: sessionmaker[Session], make_model: MakeModel, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    manifest = (
        "simyard: 1\nname: m\nversion: '1'\n"
        "tasks: {prep: {command: [x]}, model: {command: [x], needs: [prep]}}\n"
    )
    with sessions() as db, db.begin():
        register_model(db=db, store=store, model_dir=make_model(manifest), user=None)
        user = User(name="ana", email="ana@example.org")
        db.add(user)
    submission = RunSubmission(
        sessions=sessions,
        readers=sessions,
        store=store,
        cache_root=tmp_path / "cache",
        limits=Limits(max_input_size=1 << 20),
        fields={"model": "m", "params": {}, "tags": ["a"]},
        uploads={},
    )
    submitted = submission(user_id=user.id, create=True)
    assert submitted.id is not None
    assert submitted.view is not None
    with counted(sessions) as sent:
        answered = run_out(submitted.view, [])
    assert sent == [], "the answer of a created run sent statements"
    with sessions() as db:
        again = run_out(run_service.get_run(db=db, run_id=submitted.id, user=user), [])
    assert answered == again
    assert [(t.name, t.state) for t in answered.tasks] == [("prep", "queued"), ("model", "pending")]
    assert (answered.owner, answered.model, answered.tags) == ("ana", "m", ["a"])
