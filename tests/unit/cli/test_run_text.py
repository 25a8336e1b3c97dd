"""`simyard runs show` in words: why a queued run waits."""

from __future__ import annotations

import pytest

from simyard.cli import remote


def test_a_queued_run_says_why_it_waits(capsys: pytest.CaptureFixture[str]) -> None:
    run = {"id": 7, "model": "toy", "version": "0.1", "state": "queued", "params": {},
           "tasks": [{"name": "prep", "state": "queued"}],
           "waiting": "starting a worker (Slurm job 123 pending)"}  # fmt: skip
    remote._print_run(run)
    assert "queued: starting a worker (Slurm job 123 pending)" in capsys.readouterr().out
