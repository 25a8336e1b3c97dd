"""One progress calculation serves the runs list (percent over the tasks of a running run)
and the run page (the running task that is least far, else the share of tasks ended)."""

from __future__ import annotations

import datetime as dt

from simyard.api.schemas import run_out
from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import ModelVersion, Run, TaskRun, User
from simyard.web.pages.run import progress_bar
from simyard.web.pages.runs import run_progress

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def run(state: RunState, *tasks: tuple[TaskRunState, float | None]) -> Run:
    made = Run(id=1, state=state, params={}, created_at=NOW, started_at=NOW)
    made.model_version = ModelVersion(name="toy", version="0.1")
    made.user = User(name="alice")
    minute_ago = NOW - dt.timedelta(minutes=1)
    made.task_runs = [
        TaskRun(name=f"t{i}", state=s, progress=p, attempt=1, started_at=minute_ago)
        for i, (s, p) in enumerate(tasks)
    ]
    return made


def test_a_running_run_shows_its_share_on_the_list_and_its_slowest_task_on_its_page() -> None:
    going = run(
        RunState.running,
        (TaskRunState.succeeded, 100),
        (TaskRunState.running, 40),
        (TaskRunState.running, 80),
        (TaskRunState.pending, None),
    )
    assert run_progress(going) == (100 + 40 + 80 + 0) / 4
    percent, text = progress_bar(run_out(going, []), NOW) or (None, "")
    assert percent == 40
    assert text == "t1 40 % · about 1 min 30 s left"


def test_a_run_with_no_task_running_shows_the_tasks_ended() -> None:
    waiting = run(RunState.running, (TaskRunState.succeeded, 100), (TaskRunState.queued, None))
    assert run_progress(waiting) == 50
    assert progress_bar(run_out(waiting, []), NOW) == (50, "1 of 2 tasks done")
    queued = run(RunState.queued, (TaskRunState.queued, None), (TaskRunState.pending, None))
    assert run_progress(queued) is None  # the list shows a bar only while a run runs
    assert progress_bar(run_out(queued, []), NOW) == (0, "0 of 2 tasks done")


def test_an_ended_run_has_no_progress_anywhere() -> None:
    ended = run(RunState.succeeded, (TaskRunState.succeeded, 100))
    assert run_progress(ended) is None
    assert progress_bar(run_out(ended, []), NOW) is None
    assert run_progress(run(RunState.running)) is None
