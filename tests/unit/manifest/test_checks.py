"""Manifest rules: every problem is reported with its location."""

from __future__ import annotations

import pytest

from simyard.errors import ManifestError
from simyard.manifest import load_manifest
from tests.conftest import MakeModel

HEAD = """\
simyard: 1
name: demo
version: "1.0"
"""


def problems_of(make_model: MakeModel, body: str, files: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest(make_model(HEAD + body, files))
    return [str(p) for p in info.value.problems]


def test_minimal_manifest_loads_with_defaults(make_model: MakeModel) -> None:
    manifest = load_manifest(make_model(HEAD + "tasks:\n  run:\n    command: [echo, hi]\n"))
    assert manifest.tasks["run"].needs == []
    assert manifest.environment.network is False
    assert manifest.display_title == "demo"


def test_unknown_key_is_refused_with_its_location(make_model: MakeModel) -> None:
    body = "tasks:\n  run:\n    command: [echo]\n    outptus: [x/]\n"
    assert problems_of(make_model, body) == [
        "simyard.yaml: tasks.run.outptus: unknown key (check the spelling; see docs/manifest.md)"
    ]


def test_unknown_needs_is_reported_next_to_shape_errors(make_model: MakeModel) -> None:
    body = (
        "parameters:\n  days: {type: integer, mxa: 3}\n"
        "tasks:\n  simulate:\n    needs: [prep]\n    command: [echo]\n"
    )
    found = problems_of(make_model, body)
    assert "simyard.yaml: tasks.simulate.needs[0]: unknown task 'prep'" in found
    assert any(p.startswith("simyard.yaml: parameters.days.mxa: unknown key") for p in found)


def test_cycle_is_reported(make_model: MakeModel) -> None:
    body = (
        "tasks:\n  a:\n    needs: [b]\n    command: [x]\n  b:\n    needs: [a]\n    command: [x]\n"
    )
    (found,) = problems_of(make_model, body)
    assert "cycle: a -> b -> a" in found


def test_placeholder_naming_no_parameter(make_model: MakeModel) -> None:
    body = "tasks:\n  run:\n    command: [echo, '{dayz}']\n    env: {MODE: '{mode}'}\n"
    assert problems_of(make_model, body) == [
        "simyard.yaml: tasks.run.command[1]: placeholder {dayz} names no parameter",
        "simyard.yaml: tasks.run.env.MODE: placeholder {mode} names no parameter",
    ]


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("{type: integer, default: 0, min: 1}", "parameters.p.default: default 0 is below min 1"),
        ("{type: integer, min: 5, max: 1}", "parameters.p.max: max (1) is below min (5)"),
        ("{type: number, default: 2.5, max: 1}", "parameters.p.default: default 2.5 is above"),
        ("{type: choice, choices: [a, b], default: c}", "parameters.p.default: default 'c' is not"),
        ("{type: string, pattern: '[a-', default: x}", "parameters.p.pattern: invalid regular"),
        ("{type: string, max_length: 2, default: abc}", "parameters.p.default: default is 3"),
        ("{type: integer, default: true}", "parameters.p.default: must be a whole number"),
        ("{type: float}", "parameters.p: unknown type 'float'"),
        ("{label: x}", "parameters.p: missing 'type'"),
    ],
)
def test_parameter_definition_rules(make_model: MakeModel, param: str, expected: str) -> None:
    body = f"parameters:\n  p: {param}\ntasks:\n  run:\n    command: [echo]\n"
    found = problems_of(make_model, body)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{command: [x], progress: 'day ([0-9]+'}", "tasks.run.progress: invalid regular"),
        ("{command: [x], progress: 'day [0-9]+'}", "tasks.run.progress: progress needs one group"),
        ("{command: [x], error_patterns: ['(']}", "tasks.run.error_patterns[0]: invalid regular"),
        ("{command: [x], outputs: [../up]}", "tasks.run.outputs[0]: '../up': '..' is not"),
        ("{command: [x], outputs: [/abs]}", "tasks.run.outputs[0]: '/abs': paths must be relative"),
        ("{command: []}", "tasks.run.command: List should have at least 1 item"),
        ("{command: [x], timeout: 6 hours}", "tasks.run.timeout: not a duration"),
        ("{command: [x], resources: {memory: lots}}", "tasks.run.resources.memory: not a size"),
        ("{command: [./bin/model]}", "tasks.run.command[0]: './bin/model' not found"),
    ],
)
def test_task_rules(make_model: MakeModel, task: str, expected: str) -> None:
    found = problems_of(make_model, f"tasks:\n  run: {task}\n")
    assert any(expected in p for p in found), found


def test_version_must_be_text(make_model: MakeModel) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(
            make_model("simyard: 1\nname: demo\nversion: 1.4\ntasks: {a: {command: [x]}}")
        )
    assert "version: write the version as a quoted string" in str(info.value)


def test_yaml_syntax_error_gives_line(make_model: MakeModel) -> None:
    found = problems_of(make_model, "tasks:\n  run: [unclosed\n")
    assert found[0].startswith("simyard.yaml: line ")


def test_template_and_hooks_must_exist(make_model: MakeModel) -> None:
    body = (
        "parameter_file: {path: p.txt, format: template, template: t.j2}\n"
        "hooks: hooks.py\ntasks:\n  run: {command: [x]}\n"
    )
    assert problems_of(make_model, body) == [
        "simyard.yaml: parameter_file.template: 't.j2' not found in the model folder",
        "simyard.yaml: hooks: 'hooks.py' not found in the model folder",
    ]


def test_metric_log_must_name_a_task(make_model: MakeModel) -> None:
    body = (
        "tasks:\n  run: {command: [x]}\n"
        "results:\n  metrics:\n    m: {log: simulate, pattern: 'x ([0-9]+)'}\n"
    )
    assert problems_of(make_model, body) == [
        "simyard.yaml: results.metrics.m.log: unknown task 'simulate'"
    ]


def test_task_order_follows_needs(make_model: MakeModel) -> None:
    body = (
        "tasks:\n  report: {needs: [sim], command: [x]}\n"
        "  sim: {needs: [prep], command: [x]}\n  prep: {command: [x]}\n"
    )
    assert load_manifest(make_model(HEAD + body)).task_order() == ["prep", "sim", "report"]
