"""Limits as the modeller set them: enforced at once where the kernel can, reported with the
manifest's numbers, nothing stored past them, and no path of the server in the summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simyard.engine import EngineOptions, FailureKind, TaskRequest, TaskResult, run_task
from simyard.manifest import load_manifest
from tests.conftest import MakeModel

HEAD = 'simyard: 1\nname: t\nversion: "1"\n'
Run = Callable[..., TaskResult]


@pytest.fixture
def run(make_model: MakeModel, tmp_path: Path) -> Run:
    def go(script: str, extra: str, **options: Any) -> TaskResult:
        body = f"tasks:\n  run:\n    command: [python3, model.py]\n    timeout: 60s\n{extra}"
        model_dir = make_model(HEAD + body, {"model.py": script})
        request = TaskRequest(
            manifest=load_manifest(model_dir),
            model_dir=model_dir,
            task="run",
            params={},
            workdir=tmp_path / "work" / "run",
            log_path=tmp_path / "run.log",
        )
        return run_task(request, EngineOptions(kill_grace=0.5, **options))

    return go


BIG_WRITER = """
f = open("big.bin", "wb")
while True:
    f.write(b"0" * 2**20)
    f.flush()
"""


def test_a_file_over_the_disk_limit_is_stopped_at_the_limit_and_not_stored(run: Run) -> None:
    result = run(BIG_WRITER, "    outputs: [big.bin]\n    resources: {disk: 20MiB}\n")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.resource_limit
    assert result.failure.reason == "It wrote more than its disk limit of 20.0 MiB."
    assert result.outputs == []
    assert (result.workdir / "big.bin").stat().st_size <= 20 * 2**20


def test_outputs_within_limits_of_a_failed_task_are_still_stored(run: Run) -> None:
    script = "open('partial.txt', 'w').write('half')\nraise SystemExit(3)\n"
    result = run(script, "    outputs: [partial.txt]\n    resources: {disk: 20MiB}\n")
    assert result.failure is not None
    assert [o.path for o in result.outputs] == ["partial.txt"]


def test_the_fork_bomb_message_shows_the_manifests_process_limit(run: Run) -> None:
    script = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    result = run(script, "    resources: {processes: 20}\n")
    assert result.failure is not None
    assert result.failure.reason == "It started more than its limit of 20 processes."


def test_a_failure_summary_shows_paths_relative_to_the_working_directory(run: Run) -> None:
    script = "import os\nopen(os.path.join(os.getcwd(), 'out', 'result.bin'), 'rb')\n"
    result = run(script, "")
    assert result.failure is not None
    summary = result.failure.summary("run")
    assert "'out/result.bin'" in summary
    assert str(result.workdir) not in summary
