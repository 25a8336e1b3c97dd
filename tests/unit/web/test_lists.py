"""The pure parts of the list pages: which runs compare asks for, a sweep's progress and
time left, and the cells of the results export."""

from __future__ import annotations

import datetime as dt

from simyard.domain.states import RunState, TaskRunState
from simyard.domain.tables import Run, TaskRun
from simyard.web.pages.compare import MAX_COMPARED, chosen_ids
from simyard.web.pages.runs import waits_for_slot
from simyard.web.pages.sweeps import _csv_cell, sweep_progress

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_compare_takes_ids_from_checkboxes_a_list_or_the_two_run_form() -> None:
    assert chosen_ids("", "", ["3", "7", "9"]) == ([3, 7, 9], "")
    assert chosen_ids("", "", ["3, 7 #9"]) == ([3, 7, 9], "")
    assert chosen_ids("#4", "5", []) == ([4, 5], "")
    assert chosen_ids("4", "4", []) == ([4, 4], "")  # a run against itself, as before
    assert chosen_ids("", "", []) == ([], "")  # no ids: the form to choose them


def test_compare_refuses_one_run_too_many_and_words() -> None:
    assert chosen_ids("", "", ["3"])[1] == "Choose at least two runs to compare."
    too_many = [str(i) for i in range(1, MAX_COMPARED + 2)]
    assert chosen_ids("", "", too_many)[1].startswith(f"At most {MAX_COMPARED} runs")
    assert chosen_ids("", "", ["3", "x"])[1] == "Run ids are numbers, e.g. 12."
    assert chosen_ids("", "", ["1" * 12, "2"])[1] == "Run ids are numbers, e.g. 12."


def run(state: RunState, started_min_ago: float | None, *tasks: tuple[str, float]) -> Run:
    started = NOW - dt.timedelta(minutes=started_min_ago) if started_min_ago is not None else None
    made = Run(state=state, started_at=started, params={})
    made.task_runs = [TaskRun(name=f"t{i}", state=s, progress=p) for i, (s, p) in enumerate(tasks)]
    return made


def test_a_sweep_half_done_after_ten_minutes_has_about_ten_minutes_left() -> None:
    runs = [
        run(RunState.succeeded, 10, (TaskRunState.succeeded, 100)),
        run(RunState.running, 5, (TaskRunState.succeeded, 100), (TaskRunState.running, 0)),
        run(RunState.running, 2, (TaskRunState.running, 50), (TaskRunState.pending, 0)),
        run(RunState.queued, None, (TaskRunState.queued, 0)),
    ]
    percent, ended, left = sweep_progress(runs, NOW)
    assert percent == (100 + 50 + 25 + 0) / 4
    assert ended == 1
    assert left == "about 12 min 51 s left"  # 10 min for 43.75 %: 12.86 min for the rest


def test_an_ended_or_unstarted_sweep_says_no_time_left() -> None:
    assert sweep_progress([run(RunState.failed, 3, (TaskRunState.failed, 10))], NOW) == (
        100.0, 1, "",
    )  # fmt: skip
    assert sweep_progress([run(RunState.queued, None, (TaskRunState.queued, 0))], NOW) == (
        0.0, 0, "",
    )  # fmt: skip


def test_export_cells_keep_numbers_and_defuse_formulas() -> None:
    assert _csv_cell(-0.5) == "-0.5"
    assert _csv_cell(True) == "true"
    assert _csv_cell(None) == ""
    assert _csv_cell("drought") == "drought"
    assert _csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_cell("-2+3") == "'-2+3"


def test_a_running_run_whose_next_task_waits_for_a_slot_says_so() -> None:
    waiting = run(RunState.running, 1, (TaskRunState.succeeded, 100), (TaskRunState.queued, 0))
    assert waits_for_slot(waiting)
    going = run(RunState.running, 1, (TaskRunState.running, 10), (TaskRunState.queued, 0))
    assert not waits_for_slot(going)
    assert not waits_for_slot(run(RunState.queued, None, (TaskRunState.queued, 0)))
