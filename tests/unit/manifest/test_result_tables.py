"""Metrics from the tables real programs write: columns, aggregates, units, comment lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from simyard.errors import ManifestError
from simyard.manifest import load_manifest
from simyard.manifest.results import read_metric
from simyard.manifest.runinput import validate_run_input
from simyard.manifest.schema import Metric
from tests.conftest import MakeModel

# postProcessing/forceCoeffs/0/coefficient.dat as OpenFOAM writes it
COEFFICIENTS = """# Force coefficients
# dragDir     : (1 0 0)
# Time          Cd              Cl              CmPitch
1               0.4123456       0.0123          -0.001
2               0.5234567       0.0234          -0.002
3               0.4834567       nan             -0.003
"""


@pytest.mark.parametrize(
    ("agg", "expected"),
    [("max", 0.523), ("min", 0.412), ("mean", 0.473), ("first", 0.412), ("last", 0.483),
     ("count", 3)],
)  # fmt: skip
def test_a_column_of_a_whitespace_table_with_a_comment_header(
    tmp_path: Path, agg: str, expected: float
) -> None:
    data = tmp_path / "coefficient.dat"
    data.write_text(COEFFICIENTS)
    metric = Metric.model_validate(
        {"file": "c.dat", "column": "Cd", "agg": agg, "delimiter": "whitespace", "digits": 3}
    )
    assert read_metric(metric, {"c.dat": data}, {}) == expected


def test_a_semicolon_table_skips_cells_that_are_not_numbers(tmp_path: Path) -> None:
    data = tmp_path / "polar.csv"
    data.write_text("alpha;CL\n# converged only\n0;0.25\n4;0.71\n8;n/a\n")
    metric = Metric.model_validate(
        {"file": "p.csv", "column": "CL", "agg": "max", "delimiter": ";"}
    )
    assert read_metric(metric, {"p.csv": data}, {}) == 0.71
    missing = Metric.model_validate({"file": "p.csv", "column": "CD", "delimiter": ";"})
    assert read_metric(missing, {"p.csv": data}, {}) is None


HEAD = 'simyard: 1\nname: t\nversion: "1"\ntasks:\n  run:\n    command: [sh, x.sh]\n'


def test_models_check_refuses_agg_without_a_column(make_model: MakeModel) -> None:
    body = "results:\n  metrics:\n    cd: {file: c.dat, pattern: 'Cd (.*)', agg: max}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(make_model(HEAD + body, {"x.sh": "true\n"}))
    assert "'agg' applies to a 'column'" in str(caught.value)


def test_models_check_accepts_plots_with_a_y_label_and_a_delimiter(make_model: MakeModel) -> None:
    body = (
        "results:\n  plots:\n    - {title: Drag, file: 'postProcessing/*/coefficient.dat',"
        " delimiter: whitespace, x: Time, y: [Cd], y_label: drag coefficient}\n"
    )
    manifest = load_manifest(make_model(HEAD + body, {"x.sh": "true\n"}))
    assert manifest.results.plots[0].y_label == "drag coefficient"


def test_models_check_names_a_missing_template_of_parameter_files(make_model: MakeModel) -> None:
    body = "parameter_files:\n  - {path: system/controlDict, format: template, template: t.j2}\n"
    with pytest.raises(ManifestError) as caught:
        load_manifest(make_model(HEAD + body, {"x.sh": "true\n"}))
    assert "parameter_files[0].template" in [p.field for p in caught.value.problems]


TEMPLATED = """simyard: 1
name: t
version: "1"
parameters:
  depth: {type: number, default: 10}
inputs:
  bathymetry: {path: input/bathy.xyz, required: false}
parameter_file: {path: run.in, format: template, template: run.in.j2}
tasks:
  run:
    command: [sh, x.sh]
"""
TEMPLATE = """{% set b = inputs.bathymetry %}{% if b.given -%}
BATHY {{ b.path }} {{ b.size }} bytes from {{ b.name }}
{%- else -%}
FLAT {{ depth }}
{%- endif %}
"""


def test_a_template_branches_on_whether_an_optional_input_was_given(
    make_model: MakeModel, tmp_path: Path
) -> None:
    model_dir = make_model(TEMPLATED, {"x.sh": "true\n", "run.in.j2": TEMPLATE})
    manifest = load_manifest(model_dir)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"0 0 -12\n")
    given = validate_run_input(
        manifest, model_dir, {}, {"bathymetry": upload},
        filenames={"bathymetry": "lake.xyz"}, max_input_size=2**20,
    )  # fmt: skip
    assert given.parameter_file == b"BATHY input/bathy.xyz 8 bytes from lake.xyz\n"
    flat = validate_run_input(manifest, model_dir, {}, {}, max_input_size=2**20)
    assert flat.parameter_file == b"FLAT 10.0\n"
