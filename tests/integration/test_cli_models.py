"""``simyard models check`` and ``simyard models test`` as a model owner runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MakeModel
from tests.toymodel import FILES, FORCING, MODEL


def simyard(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``simyard`` command line."""
    return subprocess.run(
        [sys.executable, "-m", "simyard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SIMYARD_KILL_GRACE": "1", **(env or {})},
        check=False,
    )


@pytest.fixture
def toy(make_model: MakeModel, tmp_path: Path) -> tuple[Path, Path]:
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    return make_model(MODEL, FILES), forcing


def test_check_prints_a_summary_and_exits_zero(toy: tuple[Path, Path]) -> None:
    done = simyard("models", "check", toy[0])
    assert done.returncode == 0, done.stderr
    assert "toy 0.1: 4 parameters, 1 inputs, 3 tasks (prep -> simulate -> report)" in done.stdout


def test_check_prints_every_problem_and_exits_one(make_model: MakeModel) -> None:
    bad = MODEL.replace("needs: [prep]", "needs: [prepp]").replace("min: 1, max", "mni: 1, max")
    done = simyard("models", "check", make_model(bad, FILES))
    assert done.returncode == 1
    assert "simyard.yaml: tasks.simulate.needs[0]: unknown task 'prepp'" in done.stderr
    assert "simyard.yaml: parameters.days.mni: unknown key" in done.stderr


def test_run_succeeds_and_copies_outputs_by_task(toy: tuple[Path, Path], tmp_path: Path) -> None:
    model, forcing = toy
    out = tmp_path / "out"
    done = simyard("models", "test", model, "-p", "days=4", "-i", f"forcing={forcing}", "-o", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "prep" / "prep" / "days.txt").read_text() == "4\n2"
    summary = json.loads((out / "simulate" / "results" / "summary.json").read_text())
    assert summary == {"total": 40, "site": "A B"}
    assert "total = 40" in done.stdout
    assert "day 4 of 4" in (out / "simulate.log").read_text()


def test_refused_input_prints_every_problem_exits_two_and_runs_nothing(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    model, _ = toy
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("day,temp\n1,75\n")
    out = tmp_path / "out"
    done = simyard(
        "models",
        "test",
        model,
        "-p",
        "days=1000",
        "-p",
        "albedo=nan",
        "-i",
        f"forcing={bad_csv}",
        "-o",
        out,
    )
    assert done.returncode == 2
    assert "params.days: must be at most 100 (got 1000)" in done.stderr
    assert "params.albedo: must be a number, got 'nan'" in done.stderr
    assert "inputs.forcing: bad.csv: row 2, column temp" in done.stderr
    assert "nothing was run" in done.stderr
    assert not out.exists()


def test_soft_limit_warns_but_runs(toy: tuple[Path, Path]) -> None:
    model, forcing = toy
    done = simyard("models", "test", model, "-p", "albedo=0.5", "-i", f"forcing={forcing}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "params.albedo: 0.5 is above the usual maximum 0.3 (allowed)" in done.stdout


def test_model_failure_prints_the_summary_and_exits_one(toy: tuple[Path, Path]) -> None:
    model, forcing = toy
    done = simyard("models", "test", model, "-p", "albedo=0.95", "-i", f"forcing={forcing}")
    assert done.returncode == 1
    assert "Task 'simulate' failed: the model reported an error" in done.stdout
    assert "ERROR: albedo too high for open water" in done.stdout
    assert "detail line 1" in done.stdout


def test_parameter_file_prefills_and_dash_p_overrides(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    model, forcing = toy
    own = tmp_path / "INPUT_PARAMETERS.txt"
    own.write_text("# my usual settings\ndays = 7\nsite = Lake Zurich\nlegacy_flag = 1\n")
    out = tmp_path / "out"
    done = simyard(
        "models", "test", model, "-P", own, "-p", "days=5", "-i", f"forcing={forcing}", "-o", out
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "simulate" / "results" / "summary.json").read_text())
    assert summary == {"total": 50, "site": "Lake Zurich"}
    assert "legacy_flag" in done.stdout


PARALLEL = """\
simyard: 1
name: par
version: "1"
tasks:
  a: {command: [python3, t.py, a], outputs: [a.json]}
  b: {command: [python3, t.py, b], outputs: [b.json]}
  join: {needs: [a, b], command: [python3, j.py], outputs: [joined.json]}
"""
PARALLEL_FILES = {
    "t.py": """\
        import json, sys, time
        start = time.time()
        time.sleep(1.0)
        json.dump([start, time.time()], open(sys.argv[1] + ".json", "w"))
    """,
    "j.py": """\
        import json
        json.dump([json.load(open("a.json")), json.load(open("b.json"))], open("joined.json", "w"))
    """,
}


@pytest.mark.slow
def test_independent_tasks_run_in_parallel(make_model: MakeModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = simyard(
        "models",
        "test",
        make_model(PARALLEL, PARALLEL_FILES),
        "-o",
        out,
        env={"SIMYARD_MAX_PARALLEL": "2"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (a_start, a_end), (b_start, b_end) = json.loads((out / "join" / "joined.json").read_text())
    assert a_start < b_end, "a and b did not overlap"
    assert b_start < a_end, "a and b did not overlap"


def test_without_a_terminal_every_task_says_how_it_ended(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    model, forcing = toy
    done = simyard("models", "test", model, "-i", f"forcing={forcing}")  # stdout is a pipe
    assert done.returncode == 0, done.stdout + done.stderr
    for task in ("prep", "simulate", "report"):
        assert f"{task} running" in done.stdout
        assert re_finished(task).search(done.stdout), done.stdout


def re_finished(task: str) -> re.Pattern[str]:
    return re.compile(rf"{task} succeeded in [0-9.]+ s")
