"""The metrics a task reads on the worker: only those its own files or log hold."""

from __future__ import annotations

from pathlib import Path

from simyard.engine.result import OutputFile
from simyard.engine.workorder import task_metrics
from simyard.manifest import load_manifest
from tests.conftest import MakeModel

MODEL = """\
simyard: 1
name: m
version: "1"
parameters:
  end: {type: number, default: 0.5}
tasks:
  solve: {command: [x], outputs: [post/]}
  report: {needs: [solve], command: [x], outputs: [report.json]}
results:
  metrics:
    cd: {file: "post/*/coeff.dat", pattern: "Cd ([0-9.]+)"}
    last: {file: "post/{end}/coeff.dat", pattern: "Cd ([0-9.]+)"}
    total: {file: report.json, key: total}
    steps: {log: solve, pattern: "steps=([0-9]+)"}
"""


def output(root: Path, path: str, text: str) -> OutputFile:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    return OutputFile(path, len(text), "", root / path)


def test_a_task_reads_the_metrics_its_files_hold_globs_and_placeholders_filled(
    tmp_path: Path, make_model: MakeModel
) -> None:
    manifest = load_manifest(make_model(MODEL, {}))
    outputs = [
        output(tmp_path, "post/0.2/coeff.dat", "Cd 0.9\n"),
        output(tmp_path, "post/0.5/coeff.dat", "Cd 0.7\n"),
        output(tmp_path, "post/10/coeff.dat", "Cd 0.6\n"),  # 10 after 0.5 in natural order
    ]
    log = tmp_path / "task.log"
    log.write_text("steps=12\n")
    found = task_metrics(manifest, "solve", outputs, log, {"end": 0.5})
    assert found == {"cd": 0.6, "last": 0.7, "steps": 12}  # not the report's total
    report = [output(tmp_path, "report.json", '{"total": 3}')]
    assert task_metrics(manifest, "report", report, log, {"end": 0.5}) == {"total": 3}
