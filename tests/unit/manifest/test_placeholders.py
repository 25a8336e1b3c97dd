"""Placeholders and globs in the paths of a manifest: filled, matched, and checked."""

from __future__ import annotations

import pytest

from simyard.errors import ManifestError
from simyard.manifest import load_manifest
from simyard.manifest.placeholders import path_matches, pick_file
from tests.conftest import MakeModel

FOAM_OUTPUTS = [
    "postProcessing/forceCoeffs/0/coefficient.dat",
    "postProcessing/forceCoeffs/20/coefficient.dat",
    "postProcessing/forceCoeffs/100/coefficient.dat",
    "postProcessing/forceCoeffs/0.005/coefficient.dat",
    "0.5/U",
]


def test_a_glob_picks_the_last_match_in_natural_order() -> None:
    chosen = pick_file("postProcessing/*/*/coefficient.dat", {}, FOAM_OUTPUTS)
    assert chosen == "postProcessing/forceCoeffs/100/coefficient.dat"  # not 20, as text sorts


def test_a_placeholder_is_filled_with_the_run_s_value() -> None:
    assert pick_file("{end_time}/U", {"end_time": 0.5}, FOAM_OUTPUTS) == "0.5/U"
    assert pick_file("{end_time}/U", {"end_time": 0.7}, FOAM_OUTPUTS) is None
    assert pick_file("{missing}/U", {}, FOAM_OUTPUTS) is None


def test_a_star_stays_in_one_folder_and_a_double_star_spans_many() -> None:
    assert not path_matches("postProcessing/*.dat", "postProcessing/a/b.dat")
    assert path_matches("postProcessing/**/*.dat", "postProcessing/a/b.dat")


HEAD = (
    'simyard: 1\nname: foam\nversion: "1"\nparameters:\n  end_time: {type: number, default: 0.5}\n'
)


def test_models_check_accepts_placeholders_and_result_globs(make_model: MakeModel) -> None:
    body = (
        "tasks:\n  solve:\n    command: [sh, run.sh, '{end_time}']\n"
        "    stdin: 'system/{end_time}.in'\n"
        "    outputs: ['{end_time}/', postProcessing/]\n"
        "    success_requires: ['{end_time}/U']\n"
        "results:\n  metrics:\n"
        "    cd: {file: 'postProcessing/*/*/coefficient.dat', pattern: 'Cd ([0-9.]+)'}\n"
        "  plots:\n    - {title: Forces, file: 'postProcessing/forceCoeffs/*/coefficient.dat',"
        " x: Time, y: [Cd]}\n"
    )
    manifest = load_manifest(make_model(HEAD + body, {"run.sh": "true\n"}))
    assert manifest.tasks["solve"].success_requires == ["{end_time}/U"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("    success_requires: ['{end}/U']\n", "tasks.solve.success_requires[0]"),
        ("    outputs: ['{end}/']\n", "tasks.solve.outputs[0]"),
        ("    stdin: '{end}.in'\n", "tasks.solve.stdin"),
        ("    stdin: 'system/*.in'\n", "tasks.solve.stdin"),
        ("env: {FOAM_CASE: '{case}/run'}\n", "env.FOAM_CASE"),
        ("    progress: {pattern: 'Time = (.*)', total: '{end}'}\n", "tasks.solve.progress.total"),
        ("    progress: {pattern: '(.*) of (.*)', total: '5'}\n", "tasks.solve.progress"),
        (
            "results:\n  plots:\n    - {title: F, file: '{end}/f.dat', x: t, y: [f]}\n",
            "results.plots[0].file",
        ),
    ],
)
def test_models_check_refuses_a_placeholder_naming_no_parameter_or_a_stdin_glob(
    make_model: MakeModel, body: str, field: str
) -> None:
    task = "tasks:\n  solve:\n    command: [sh, run.sh]\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(make_model(HEAD + task + body, {"run.sh": "true\n"}))
    assert field in [p.field for p in caught.value.problems], caught.value.problems
