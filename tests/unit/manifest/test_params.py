"""Parameter values: every type and rule, with the message a modeller reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from simyard.manifest import Manifest, load_manifest
from simyard.manifest.params import validate_parameters
from tests.conftest import MakeModel

MANIFEST = """\
simyard: 1
name: p
version: "1"
parameters:
  days: {type: integer, default: 30, min: 1, max: 3650}
  albedo: {type: number, default: 0.06, min: 0, max: 1, warn_min: 0.02, warn_max: 0.3}
  scenario: {type: choice, choices: [baseline, drought, 3], default: baseline}
  station: {type: string, pattern: "^[A-Z]{3}[0-9]{2}$", max_length: 5, default: ABC12}
  ice: {type: boolean, default: false}
  start: {type: date, default: 2020-01-01, min: 2000-01-01, max: 2030-12-31}
  depth: {type: number}
tasks:
  run: {command: [x]}
"""


@pytest.fixture
def manifest(make_model: MakeModel) -> Manifest:
    return load_manifest(make_model(MANIFEST))


def problems(manifest: Manifest, **given: Any) -> list[str]:
    return [str(p) for p in validate_parameters(manifest, {"depth": 5, **given}).problems]


def test_defaults_are_applied_and_values_typed(manifest: Manifest) -> None:
    check = validate_parameters(manifest, {"depth": "12.5", "days": "40", "ice": "yes"})
    assert check.ok
    assert check.values == {
        "days": 40,
        "albedo": 0.06,
        "scenario": "baseline",
        "station": "ABC12",
        "ice": True,
        "start": dt.date(2020, 1, 1),
        "depth": 12.5,
    }


def test_required_without_default(manifest: Manifest) -> None:
    assert [str(p) for p in validate_parameters(manifest, {}).problems] == [
        "params.depth: is required"
    ]


def test_unknown_parameter_is_refused(manifest: Manifest) -> None:
    assert problems(manifest, dayz=3) == [
        "params.dayz: unknown parameter (this model has: days, albedo, scenario, station, "
        "ice, start, depth)"
    ]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"days": 0}, "params.days: must be at least 1 (got 0)"),
        ({"days": "4000"}, "params.days: must be at most 3650 (got 4000)"),
        ({"days": "3.5"}, "params.days: must be a whole number, got '3.5'"),
        ({"days": 3.5}, "params.days: must be a whole number, got 3.5"),
        ({"days": True}, "params.days: must be a whole number, not true/false"),
        ({"days": "12abc"}, "params.days: must be a whole number, got '12abc'"),
        ({"albedo": "nan"}, "params.albedo: must be a number, got 'nan'"),
        ({"albedo": float("nan")}, "params.albedo: must be a number, got NaN"),
        ({"albedo": "inf"}, "params.albedo: must be a number, got 'inf'"),
        ({"albedo": float("-inf")}, "params.albedo: must be a finite number, got -inf (too large)"),
        ({"albedo": "1e400"}, "params.albedo: must be a finite number, got '1e400' (too large)"),
        ({"albedo": False}, "params.albedo: must be a number, not true/false"),
        ({"albedo": "0.5x"}, "params.albedo: must be a number, got '0.5x'"),
        ({"albedo": "1.5"}, "params.albedo: must be at most 1 (got 1.5)"),
        ({"scenario": "flood"}, "params.scenario: must be one of: baseline, drought, 3"),
        ({"station": "abc12"}, "params.station: must match the pattern ^[A-Z]{3}[0-9]{2}$"),
        ({"station": "ABC123"}, "params.station: must be at most 5 characters (got 6)"),
        ({"station": 12345}, "params.station: must be text, got int"),
        ({"station": "AB\nC1"}, "params.station: must be a single line"),
        ({"ice": "maybe"}, "params.ice: must be true or false, got 'maybe'"),
        ({"ice": 1}, "params.ice: must be true or false, got 1"),
        ({"start": "2020-02-30"}, "params.start: is not a real date: 2020-02-30"),
        (
            {"start": "01/02/2020"},
            "params.start: must be a date written YYYY-MM-DD, got '01/02/2020'",
        ),
        ({"start": "1999-12-31"}, "params.start: must be at least 2000-01-01 (got 1999-12-31)"),
    ],
)
def test_rules_refuse_with_the_parameter_and_the_rule(
    manifest: Manifest, given: dict[str, Any], message: str
) -> None:
    assert message in problems(manifest, **given)


def test_string_must_be_a_single_line(make_model: MakeModel) -> None:
    manifest = load_manifest(
        make_model(
            MANIFEST.replace(
                "  depth: {type: number}",
                "  depth: {type: number}\n  note: {type: string, default: x}",
            )
        )
    )
    assert "params.note: must be a single line" in problems(manifest, note="a\r\nSubject: x")


def test_choice_matches_numbers_given_as_text(manifest: Manifest) -> None:
    check = validate_parameters(manifest, {"depth": 1, "scenario": "3"})
    assert check.values["scenario"] == 3


def test_soft_limits_warn_but_allow(manifest: Manifest) -> None:
    check = validate_parameters(manifest, {"depth": 1, "albedo": 0.5})
    assert check.ok
    assert [str(w) for w in check.warnings] == [
        "params.albedo: 0.5 is above the usual maximum 0.3 (allowed)"
    ]


def test_every_problem_is_reported_at_once(manifest: Manifest) -> None:
    check = validate_parameters(manifest, {"days": -1, "albedo": "x", "ice": "?"})
    assert [p.field for p in check.problems] == [
        "params.days",
        "params.albedo",
        "params.ice",
        "params.depth",
    ]


HOOKS = """\
def validate(params, inputs):
    errors = []
    if params["days"] > 100 and params["scenario"] == "drought":
        errors.append(("days", "a drought run is limited to 100 days"))
    if params["albedo"] > 0.1 and not params["ice"]:
        errors.append({"field": "albedo", "message": "high albedo without ice", "level": "warning"})
    if "forcing" in inputs:
        errors.append("forcing given: " + inputs["forcing"].name)
    return errors
"""


def test_hooks_add_cross_field_errors_and_warnings(make_model: MakeModel, tmp_path: Any) -> None:
    model_dir = make_model(
        MANIFEST.replace("tasks:", "hooks: hooks.py\ntasks:"), {"hooks.py": HOOKS}
    )
    manifest = load_manifest(model_dir)
    check = validate_parameters(
        manifest,
        {"depth": 1, "days": 200, "scenario": "drought", "albedo": 0.2},
        inputs={"forcing": tmp_path / "f.csv"},
        model_dir=model_dir,
    )
    assert [str(p) for p in check.problems] == [
        "params.days: a drought run is limited to 100 days",
        "params: forcing given: f.csv",
    ]
    assert [str(w) for w in check.warnings] == ["params.albedo: high albedo without ice"]


def test_hook_that_raises_is_reported_not_crashing(make_model: MakeModel) -> None:
    hooks = "def validate(params, inputs):\n    return 1 / 0\n"
    model_dir = make_model(
        MANIFEST.replace("tasks:", "hooks: hooks.py\ntasks:"), {"hooks.py": hooks}
    )
    check = validate_parameters(load_manifest(model_dir), {"depth": 1}, model_dir=model_dir)
    assert [str(p) for p in check.problems] == [
        "hooks: hooks.py raised ZeroDivisionError: division by zero"
    ]
