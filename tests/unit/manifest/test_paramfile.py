"""The parameter file: what the model reads, and reading a modeller's own file back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import f90nml
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simyard.errors import ParameterFileError
from simyard.manifest import Manifest, load_manifest
from simyard.manifest.paramfile import read_parameter_file, render_parameter_file
from simyard.manifest.params import validate_parameters
from tests.conftest import MakeModel

PARAMETERS = """\
simyard: 1
name: p
version: "1"
parameters:
  days: {type: integer, default: 30}
  albedo: {type: number, default: 0.06}
  tiny: {type: number, default: 1.0}
  whole: {type: number, default: 1.0}
  station: {type: string, default: x}
  ice: {type: boolean, default: false}
  scenario: {type: choice, choices: [baseline, drought, 3], default: baseline}
  start: {type: date, default: 2020-01-01}
tasks:
  run: {command: [x]}
"""

VALUES: dict[str, Any] = {
    "days": 3650,
    "albedo": 0.1,
    "tiny": 1e-7,
    "whole": 2.0,
    "station": """Lac d'Annecy "nord" — 5 °C \\data""",
    "ice": True,
    "scenario": 3,
    "start": dt.date(2021, 2, 28),
}


def manifest_for(
    make_model: MakeModel, file_spec: str, files: dict[str, str] | None = None
) -> Manifest:
    return load_manifest(make_model(PARAMETERS + f"parameter_file: {file_spec}\n", files))


@pytest.mark.parametrize("fmt", ["keyvalue", "json", "yaml", "namelist"])
def test_every_readable_format_round_trips_typed_values(make_model: MakeModel, fmt: str) -> None:
    manifest = manifest_for(make_model, f"{{path: params.txt, format: {fmt}}}")
    data = render_parameter_file(manifest, VALUES, Path())
    values, unknown = read_parameter_file(manifest, data)
    assert values == VALUES
    assert [type(v) for v in values.values()] == [type(v) for v in VALUES.values()]
    assert unknown == []


@pytest.mark.parametrize(
    "text", ["  padded  ", '"quoted"', "'single'", "", "a # not a comment", "ünï 'x' \"y\""]
)
def test_keyvalue_text_round_trips_exactly(make_model: MakeModel, text: str) -> None:
    manifest = manifest_for(make_model, "{path: p.txt, format: keyvalue}")
    data = render_parameter_file(manifest, {**VALUES, "station": text}, Path())
    assert read_parameter_file(manifest, data)[0]["station"] == text


def test_keyvalue_file_is_what_a_modeller_would_write(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    data = render_parameter_file(manifest, VALUES, Path()).decode()
    assert data.splitlines() == [
        "days = 3650",
        "albedo = 0.1",
        "tiny = 1e-07",
        "whole = 2.0",
        """station = Lac d'Annecy "nord" — 5 °C \\data""",
        "ice = true",
        "scenario = 3",
        "start = 2021-02-28",
    ]


def test_keyvalue_refuses_a_line_break(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    with pytest.raises(ParameterFileError, match=r"station: .*cannot hold a line break"):
        render_parameter_file(manifest, {**VALUES, "station": "a\nb"}, Path())


def test_json_keeps_parameter_order_and_iso_dates(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.json, format: json}")
    text = render_parameter_file(manifest, VALUES, Path()).decode()
    assert list(json.loads(text)) == list(VALUES)
    assert '  "start": "2021-02-28"' in text
    assert text.endswith("}\n")


def test_yaml_keeps_parameter_order(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.yaml, format: yaml}")
    text = render_parameter_file(manifest, VALUES, Path()).decode()
    assert list(yaml.safe_load(text)) == list(VALUES)


def test_namelist_writes_fortran_types(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.nml, format: namelist, group: lake}")
    text = render_parameter_file(manifest, {**VALUES, "whole": 2}, Path()).decode()
    assert text.startswith("&lake\n")
    assert "    whole = 2.0\n" in text
    assert "    ice = .true.\n" in text
    assert "    start = '2021-02-28'\n" in text
    assert "    station = 'Lac d''Annecy" in text
    assert f90nml.reads(text)["lake"]["whole"] == 2.0


def test_namelist_refuses_names_differing_only_in_case(make_model: MakeModel) -> None:
    manifest = load_manifest(
        make_model(
            """\
            simyard: 1
            name: p
            version: "1"
            parameters:
              dt: {type: number, default: 1}
              DT: {type: number, default: 2}
            parameter_file: {path: p.nml, format: namelist}
            tasks:
              run: {command: [x]}
            """
        )
    )
    with pytest.raises(ParameterFileError, match="dt, DT: a namelist ignores case"):
        render_parameter_file(manifest, {"dt": 1.0, "DT": 2.0}, Path())


def test_namelist_refuses_a_line_break(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.nml, format: namelist}")
    with pytest.raises(ParameterFileError, match="station: a namelist file cannot hold a line"):
        render_parameter_file(manifest, {**VALUES, "station": "a\r\nb"}, Path())


def test_namelist_is_read_case_insensitively(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.nml, format: namelist, group: lake}")
    text = "&LAKE\n  DAYS = 10, Albedo = 0.2\n  ICE = .F.\n  Start = '2020-05-01' ! spring\n/\n"
    values, unknown = read_parameter_file(manifest, text.encode())
    assert values == {"days": 10, "albedo": 0.2, "ice": False, "start": dt.date(2020, 5, 1)}
    assert unknown == []


def test_namelist_with_one_group_of_another_name_is_read(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.nml, format: namelist}")
    values, unknown = read_parameter_file(manifest, b"&setup days = 7, dt = 60 /\n")
    assert (values, unknown) == ({"days": 7}, ["dt"])


def test_namelist_without_the_group_names_what_it_found(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.nml, format: namelist, group: lake}")
    with pytest.raises(ParameterFileError, match=r"no namelist group &lake \(found: &a, &b\)"):
        read_parameter_file(manifest, b"&a x = 1 /\n&b y = 2 /\n", filename="run.nml")


def test_template_renders_parameters_by_name_and_as_params(make_model: MakeModel) -> None:
    template = "days={{ days }} start={{ start }} n={{ params | length }}\n"
    model_dir = make_model(
        PARAMETERS + "parameter_file: {path: in.txt, format: template, template: t/in.j2}\n",
        {"t/in.j2": template},
    )
    data = render_parameter_file(load_manifest(model_dir), VALUES, model_dir)
    assert data == b"days=3650 start=2021-02-28 n=8\n"


def test_template_undefined_variable_names_it_and_the_file(make_model: MakeModel) -> None:
    model_dir = make_model(
        PARAMETERS + "parameter_file: {path: in.txt, format: template, template: t/in.j2}\n",
        {"t/in.j2": "days={{ days }}\nice={{ icee }}\n"},
    )
    with pytest.raises(ParameterFileError) as failure:
        render_parameter_file(load_manifest(model_dir), VALUES, model_dir)
    assert str(failure.value) == "t/in.j2: line 2: 'icee' is undefined"


def test_template_syntax_error_names_the_line(make_model: MakeModel) -> None:
    model_dir = make_model(
        PARAMETERS + "parameter_file: {path: in.txt, format: template, template: in.j2}\n",
        {"in.j2": "ok\n{% if days %}\n"},
    )
    with pytest.raises(ParameterFileError, match=r"^in\.j2: line 2: "):
        render_parameter_file(load_manifest(model_dir), VALUES, model_dir)


def test_template_cannot_reach_python_internals(make_model: MakeModel) -> None:
    model_dir = make_model(
        PARAMETERS + "parameter_file: {path: in.txt, format: template, template: in.j2}\n",
        {"in.j2": "{{ days.__class__.__mro__ }}"},
    )
    with pytest.raises(ParameterFileError, match="unsafe"):
        render_parameter_file(load_manifest(model_dir), VALUES, model_dir)


def test_missing_template_is_named(make_model: MakeModel, tmp_path: Path) -> None:
    manifest = manifest_for(
        make_model, "{path: in.txt, format: template, template: in.j2}", {"in.j2": "x"}
    )
    with pytest.raises(ParameterFileError) as failure:
        render_parameter_file(manifest, VALUES, tmp_path / "elsewhere")
    assert str(failure.value) == "in.j2: cannot read the template: No such file or directory"


def test_template_format_cannot_be_read_back(make_model: MakeModel) -> None:
    manifest = manifest_for(
        make_model, "{path: in.txt, format: template, template: in.j2}", {"in.j2": "x"}
    )
    with pytest.raises(ParameterFileError, match="template cannot be read back"):
        read_parameter_file(manifest, b"days=3\n")


HAND_WRITTEN = """\
# Lake model input -- edited by hand
! Fortran-style comment
; ini-style comment

days=120
   albedo   :   0.07    # tuned in 2019
station = 'ABC12'
ICE = yes  ! keeps ice
scenario = "drought"
output_dir = /scratch/run1
start = 2019-06-01
"""


def test_hand_written_keyvalue_file_is_read(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    values, unknown = read_parameter_file(manifest, HAND_WRITTEN.encode())
    assert values == {
        "days": 120,
        "albedo": 0.07,
        "station": "ABC12",
        "ice": True,
        "scenario": "drought",
        "start": dt.date(2019, 6, 1),
    }
    assert unknown == ["output_dir"]


def test_keyvalue_text_keeps_what_looks_like_a_comment(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    values, _ = read_parameter_file(manifest, b"station = ABC12  # main\n")
    assert values == {"station": "ABC12  # main"}


def test_bad_value_names_file_line_and_parameter(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    with pytest.raises(ParameterFileError) as failure:
        read_parameter_file(manifest, b"# run\nalbedo = 0.1\ndays = ten\n")
    assert str(failure.value) == (
        "INPUT_PARAMETERS.txt: line 3: days: must be a whole number, got 'ten'"
    )


def test_bad_yaml_value_names_its_line(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.yaml, format: yaml}")
    with pytest.raises(ParameterFileError) as failure:
        read_parameter_file(manifest, b"days: 3\n\nice: maybe\n", filename="mine.yaml")
    assert str(failure.value) == "mine.yaml: line 3: ice: must be true or false, got 'maybe'"


def test_parameter_set_twice_is_refused(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    with pytest.raises(ParameterFileError, match=r"line 4: days is set twice \(first on line 1\)"):
        read_parameter_file(manifest, b"days = 1\nice = no\n\nDAYS = 2\n")


def test_json_key_given_twice_is_refused(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.json, format: json}")
    with pytest.raises(ParameterFileError, match="days is set twice"):
        read_parameter_file(manifest, b'{"days": 3, "days": 4}', filename="p.json")


def test_line_without_a_value_is_refused_with_its_line(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: INPUT_PARAMETERS.txt}")
    with pytest.raises(ParameterFileError, match=r"line 2: expected 'name = value', got '\[run\]'"):
        read_parameter_file(manifest, b"days = 1\n[run]\n")


def test_list_value_is_refused(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.json, format: json}")
    with pytest.raises(
        ParameterFileError, match=r"p\.json: days: must be a single value, not a list"
    ):
        read_parameter_file(manifest, b'{"days": [1, 2]}')


@pytest.mark.parametrize("fmt", ["keyvalue", "json", "yaml", "namelist"])
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe\x00garbage\x80", id="not-utf8"),
        pytest.param(b"\x00\x01\x02", id="control-bytes"),
        pytest.param(b"PK\x03\x04 not json {", id="zip-header"),
        pytest.param(b'{\n  "days": 1,\n', id="cut-short"),
        pytest.param(b"&params days = 'unterminated /", id="open-quote"),
        pytest.param(b"[[[[[[[[[[" * 20000, id="deep-nesting"),
        pytest.param(b"- a\n- b\n", id="a-list"),
        pytest.param(b"days: !!python/object/apply:os.system ['true']\n", id="python-tag"),
        pytest.param(b"start: 2020-13-45\n", id="impossible-date"),
    ],
)
def test_garbage_gives_a_parameter_file_error(make_model: MakeModel, fmt: str, data: bytes) -> None:
    manifest = manifest_for(make_model, f"{{path: p.txt, format: {fmt}}}")
    with pytest.raises(ParameterFileError, match=r"^in\.dat: "):
        read_parameter_file(manifest, data, filename="in.dat")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"days": 1e999}', "days: must be a whole number, got inf"),
        (b'{"albedo": 1e999}', "albedo: must be a finite number"),
        (b'{"albedo": ' + b"9" * 5000 + b"}", "not valid JSON: Exceeds the limit"),
    ],
)
def test_json_numbers_out_of_range_are_refused(
    make_model: MakeModel, data: bytes, message: str
) -> None:
    manifest = manifest_for(make_model, "{path: p.json, format: json}")
    with pytest.raises(ParameterFileError, match=f"^p\\.json: {message}"):
        read_parameter_file(manifest, data)


def test_not_utf8_says_so(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.txt}")
    with pytest.raises(ParameterFileError, match=r"^p\.txt: line 2: not UTF-8 text \(byte 0xe9\)"):
        read_parameter_file(manifest, "days = 1\nstation = caf\xe9\n".encode("latin-1"))


def test_json_syntax_error_names_the_line(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.json, format: json}")
    with pytest.raises(ParameterFileError, match=r"^p\.json: line 3: not valid JSON"):
        read_parameter_file(manifest, b'{\n  "days": 1\n  "ice": true\n}')


def test_empty_file_gives_no_values(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: p.yaml, format: yaml}")
    assert read_parameter_file(manifest, b"") == ({}, [])


# --------------------------------------------------------------------------- every value
# Property tests: every parameter set the validator accepts is written so that the format's
# own reader (the one a model would use) reads back exactly the same values, or the writer
# refuses it naming the parameter, and only for what the format cannot hold.

# What a Python model splitting the file into lines (str.splitlines) takes as a line break.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
AWKWARD = LINE_BREAKS + "\"'\\=!&/#;:,$*%@`{}[]<>?| \t\x00\x01\x1b\x7f\ufeff\ufffe\U0001f600éß"

texts = st.text(st.one_of(st.characters(), st.sampled_from(AWKWARD)), max_size=12)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.1, 1e-7, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e16, 2.0]
)
whole_numbers = st.integers(min_value=-(10**40), max_value=10**40)
choice_values = st.lists(
    st.one_of(texts, st.integers(min_value=-(10**20), max_value=10**20), numbers),
    min_size=1, max_size=4, unique_by=str,
)  # fmt: skip


@st.composite
def accepted_parameter_sets(draw: st.DrawFn, fmt: str) -> tuple[Manifest, dict[str, Any]]:
    """A manifest in ``fmt`` with one parameter of each kind, and values it accepts."""
    choices = draw(choice_values)
    manifest = Manifest.model_validate({
        "simyard": 1, "name": "p", "version": "1",
        "parameters": {
            "note": {"type": "string", "multiline": True, "default": ""},
            "line": {"type": "string", "default": ""},
            "x": {"type": "number", "default": 0},
            "n": {"type": "integer", "default": 0},
            "flag": {"type": "boolean", "default": False},
            "day": {"type": "date", "default": "2000-01-01"},
            "pick": {"type": "choice", "choices": choices, "default": choices[0]},
        },
        "tasks": {"run": {"command": ["x"]}},
        "parameter_file": {"path": "params.txt", "format": fmt},
    })  # fmt: skip
    given = {
        "note": draw(texts), "line": draw(texts), "x": draw(numbers | whole_numbers),
        "n": draw(whole_numbers), "flag": draw(st.booleans()), "day": draw(st.dates()),
        "pick": draw(st.sampled_from(choices)),
    }  # fmt: skip
    checked = validate_parameters(manifest, given)
    assume(checked.ok)
    return manifest, checked.values


def written(manifest: Manifest, values: dict[str, Any], refusable: str) -> bytes | None:
    """The file's bytes; None when the writer refused a value holding one of ``refusable``
    (the error must name that parameter)."""
    try:
        return render_parameter_file(manifest, values, Path())
    except ParameterFileError as exc:
        refusal = str(exc)
    named = [n for n in values if refusal.startswith(f"params.txt: {n}: ")]
    assert named, f"the refusal names no parameter: {refusal}"
    assert any(ch in str(values[named[0]]) for ch in refusable), refusal
    return None


def as_read(values: dict[str, Any]) -> dict[str, Any]:
    """The values as a JSON or YAML reader gives them back (dates are ISO text)."""
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}


# Bounded so the suite stays fast; run with more (e.g. 2000) after changing a writer.
EXAMPLES = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@EXAMPLES
@given(accepted_parameter_sets("keyvalue"))
def test_keyvalue_round_trips_every_accepted_value(case: tuple[Manifest, dict[str, Any]]) -> None:
    manifest, values = case
    data = written(manifest, values, LINE_BREAKS)
    if data is None:
        return
    assert len(data.decode().splitlines()) == len(values)  # one line a parameter, for any reader
    assert read_parameter_file(manifest, data) == (values, [])


@EXAMPLES
@given(accepted_parameter_sets("json"))
def test_json_round_trips_every_accepted_value(case: tuple[Manifest, dict[str, Any]]) -> None:
    manifest, values = case
    data = written(manifest, values, "")
    assert data is not None
    assert json.loads(data) == as_read(values)
    assert read_parameter_file(manifest, data) == (values, [])


@EXAMPLES
@given(accepted_parameter_sets("yaml"))
def test_yaml_round_trips_every_accepted_value(case: tuple[Manifest, dict[str, Any]]) -> None:
    manifest, values = case
    data = written(manifest, values, "")
    assert data is not None
    assert yaml.safe_load(data) == as_read(values)
    assert read_parameter_file(manifest, data) == (values, [])


@EXAMPLES
@given(accepted_parameter_sets("namelist"))
def test_namelist_round_trips_every_accepted_value(case: tuple[Manifest, dict[str, Any]]) -> None:
    manifest, values = case
    data = written(manifest, values, LINE_BREAKS)
    if data is None:
        return
    assert dict(f90nml.reads(data.decode())["params"]) == as_read(values)
    assert read_parameter_file(manifest, data) == (values, [])


def test_yaml_keeps_a_next_line_character_in_a_string(make_model: MakeModel) -> None:
    manifest = manifest_for(make_model, "{path: params.txt, format: yaml}")
    values = {**VALUES, "station": "a\x85b\u2028c\u2029d\re"}
    data = render_parameter_file(manifest, values, Path())
    assert yaml.safe_load(data)["station"] == "a\x85b\u2028c\u2029d\re"


@pytest.mark.parametrize("fmt", ["keyvalue", "namelist"])
@pytest.mark.parametrize("brk", ["\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c"])
def test_line_formats_refuse_what_a_reader_takes_for_a_line_break(
    make_model: MakeModel, fmt: str, brk: str
) -> None:
    manifest = manifest_for(make_model, f"{{path: params.txt, format: {fmt}}}")
    with pytest.raises(ParameterFileError, match=r"params.txt: station: .*cannot hold a line"):
        render_parameter_file(manifest, {**VALUES, "station": f"a{brk}b"}, Path())


def one_parameter(spec: dict[str, Any], fmt: str = "json") -> Manifest:
    return Manifest.model_validate({
        "simyard": 1, "name": "p", "version": "1", "parameters": {"v": spec},
        "tasks": {"run": {"command": ["x"]}},
        "parameter_file": {"path": "params.txt", "format": fmt},
    })  # fmt: skip


def test_text_with_a_lone_surrogate_is_refused() -> None:
    checked = validate_parameters(one_parameter({"type": "string"}), {"v": "a\ud800b"})
    assert [str(p) for p in checked.problems] == ["params.v: must be valid Unicode text"]


@pytest.mark.parametrize("fmt", ["keyvalue", "json", "yaml", "namelist"])
def test_a_whole_number_too_large_to_read_back_from_text_is_refused_from_json_too(
    fmt: str,
) -> None:
    manifest = one_parameter({"type": "integer"}, fmt)
    largest = 10**30 - 1
    assert validate_parameters(manifest, {"v": -largest}).values == {"v": -largest}
    data = render_parameter_file(manifest, {"v": -largest}, Path())
    assert read_parameter_file(manifest, data) == ({"v": -largest}, [])
    for too_large in (10**30, -(10**30), 10**5000, 1e300):
        problems = validate_parameters(manifest, {"v": too_large}).problems
        assert [str(p) for p in problems] == ["params.v: is too large"]
