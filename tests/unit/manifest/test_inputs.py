"""Input files: slots, size, extension, archives and every CSV rule, as a modeller reads them."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from simyard.manifest import Manifest, load_manifest
from simyard.manifest.inputs import check_input_file, check_inputs
from simyard.manifest.schema import InputSpec
from tests.conftest import MakeModel

MANIFEST = """\
simyard: 1
name: lake
version: "1"
inputs:
  forcing:
    path: input/forcing.csv
    max_size: 50KB
    accept: [.csv]
    csv:
      columns:
        date: {type: date}
        air_temp: {type: number, min: -60, max: 60}
        wind: {type: number, min: 0}
        station: {pattern: "[A-Z]{3}[0-9]{2}", required: false}
        ice: {type: boolean, required: false, allow_empty: true}
        layers: {type: integer, min: 1, required: false}
        scenario: {choices: [baseline, drought], required: false}
      min_rows: 1
      max_rows: 5
  bathymetry:
    path: input/bathymetry.zip
    required: false
    unpack: input/bathymetry/
  notes:
    path: input/notes.txt
    required: false
    max_size: 1KiB
    accept: [.txt, .md]
tasks:
  run: {command: [x]}
"""
HEADER = "date,air_temp,wind\n"


@pytest.fixture
def manifest(make_model: MakeModel) -> Manifest:
    return load_manifest(make_model(MANIFEST))


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """Where an upload is stored: its server-side name is not the name the user gave."""
    (tmp_path / "uploads").mkdir()
    return tmp_path / "uploads" / "upload-7f3a"


def check(
    manifest: Manifest, upload: Path, content: str | bytes, filename: str, slot: str = "forcing"
) -> list[str]:
    upload.write_bytes(content.encode() if isinstance(content, str) else content)
    found = check_input_file(slot, manifest.inputs[slot], upload, filename=filename)
    return [str(p) for p in found]


def csv_problems(manifest: Manifest, upload: Path, content: str | bytes) -> list[str]:
    return check(manifest, upload, content, "forcing.csv")


# --------------------------------------------------------------------------- slots


def test_a_good_set_of_files_has_no_problems(manifest: Manifest, upload: Path) -> None:
    upload.write_text(HEADER + "2021-01-01,12.5,3\n")

    assert check_inputs(manifest, {"forcing": upload}, filenames={"forcing": "f.csv"}) == []


def test_a_missing_required_slot_is_reported(manifest: Manifest) -> None:
    assert [str(p) for p in check_inputs(manifest, {})] == ["inputs.forcing: is required"]


def test_an_unknown_slot_names_the_known_ones(manifest: Manifest, upload: Path) -> None:
    upload.write_text(HEADER + "2021-01-01,12.5,3\n")

    found = check_inputs(
        manifest, {"forcing": upload, "wind": upload}, filenames={"forcing": "f.csv"}
    )

    assert [str(p) for p in found] == [
        "inputs.wind: unknown input slot (this model has: forcing, bathymetry, notes)"
    ]


def test_messages_use_the_name_the_user_gave(manifest: Manifest, upload: Path) -> None:
    upload.write_text("date,air_temp\n2021-01-01,3\n")

    found = check_inputs(manifest, {"forcing": upload}, filenames={"forcing": "my data.csv"})

    assert [str(p) for p in found] == ["inputs.forcing: my data.csv: missing column 'wind'"]


def test_a_file_that_is_gone_is_reported_not_raised(manifest: Manifest, tmp_path: Path) -> None:
    found = check_input_file("forcing", manifest.inputs["forcing"], tmp_path / "nope")

    assert [str(p) for p in found] == [
        "inputs.forcing: nope: the file is missing (upload it again)"
    ]


# --------------------------------------------------------------------------- size and extension


def test_a_file_over_its_size_limit_is_refused(manifest: Manifest, upload: Path) -> None:
    assert check(manifest, upload, "x" * 2048, "notes.txt", slot="notes") == [
        "inputs.notes: notes.txt: 2.0 KiB is over the limit of 1.0 KiB"
    ]


def test_the_default_size_limit_applies_without_max_size(manifest: Manifest, upload: Path) -> None:
    upload.write_bytes(bytes(3 * 2**20))

    found = check_input_file(
        "bathymetry",
        manifest.inputs["bathymetry"],
        upload,
        filename="b.zip",
        default_max_size=2**20,
    )

    assert [str(p) for p in found] == [
        "inputs.bathymetry: b.zip: 3.0 MiB is over the limit of 1.0 MiB"
    ]


def test_an_extension_not_accepted_is_refused(manifest: Manifest, upload: Path) -> None:
    assert check(manifest, upload, "hi", "notes.csv", slot="notes") == [
        "inputs.notes: notes.csv: extension .csv not accepted (accepted: .txt, .md)"
    ]


def test_a_file_without_extension_is_refused(manifest: Manifest, upload: Path) -> None:
    assert check(manifest, upload, "hi", "README", slot="notes") == [
        "inputs.notes: README: a file without an extension is not accepted (accepted: .txt, .md)"
    ]


def test_extensions_are_compared_without_case(manifest: Manifest, upload: Path) -> None:
    assert check(manifest, upload, "hi", "NOTES.TXT", slot="notes") == []


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("filename", ["bathy.tar.gz", "BATHY.TGZ", "bathy.zip.tar.gz"])
def test_an_archive_slot_accepts_archive_extensions(
    manifest: Manifest, upload: Path, filename: str
) -> None:
    assert check(manifest, upload, tar_gz({"a.txt": b"1"}), filename, slot="bathymetry") == []


@pytest.mark.parametrize(
    ("filename", "shown"), [("bathy.rar", ".rar"), ("bathy.tar.zst", ".tar.zst"), ("b.gz", ".gz")]
)
def test_an_archive_slot_refuses_other_extensions(
    manifest: Manifest, upload: Path, filename: str, shown: str
) -> None:
    assert check(manifest, upload, tar_gz({"a": b"1"}), filename, slot="bathymetry") == [
        f"inputs.bathymetry: {filename}: extension {shown} not accepted "
        "(accepted: .zip, .tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .tar.xz, .txz)"
    ]


def test_an_unsafe_archive_is_refused_at_upload(manifest: Manifest, upload: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil", b"x")

    assert check(manifest, upload, buffer.getvalue(), "bathy.zip", slot="bathymetry") == [
        "inputs.bathymetry: bathy.zip: member '../evil' has '..' in its path "
        "(it would land outside the folder)"
    ]
    assert list(upload.parent.iterdir()) == [upload]


def test_a_file_that_is_no_archive_is_refused_at_upload(manifest: Manifest, upload: Path) -> None:
    found = check(manifest, upload, "not a zip", "bathy.zip", slot="bathymetry")

    assert len(found) == 1
    assert found[0].startswith("inputs.bathymetry: bathy.zip is not a readable zip or tar archive")


# --------------------------------------------------------------------------- CSV columns and cells


def test_a_missing_column_is_named(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, "date,air_temp\n2021-01-01,3\n") == [
        "inputs.forcing: forcing.csv: missing column 'wind'"
    ]


def test_a_header_in_the_wrong_delimiter_gets_a_hint(manifest: Manifest, upload: Path) -> None:
    found = csv_problems(manifest, upload, "date;air_temp;wind\n2021-01-01;3;4\n")

    assert found[0] == (
        "inputs.forcing: forcing.csv: missing column 'date' "
        "(the header is one column: are the columns separated by ';'?)"
    )


def test_a_header_with_bom_and_spaces_is_read(manifest: Manifest, upload: Path) -> None:
    content = "\ufeffdate , air_temp,\twind\r\n2021-01-01,12.5,3\r\n".encode()

    assert csv_problems(manifest, upload, content) == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2021-01-01,warm,3", "column air_temp: must be a number, got 'warm'"),
        ("2021-01-01,75,3", "column air_temp: 75 is above max 60"),
        ("2021-01-01,-60.5,3", "column air_temp: -60.5 is below min -60"),
        ("2021-01-01,12,", "column wind: empty, a value is required"),
        ("2021-01-01,12,  ", "column wind: empty, a value is required"),
        ("2021-02-30,12,3", "column date: is not a real date: 2021-02-30"),
        ("01/02/2021,12,3", "column date: must be a date written YYYY-MM-DD, got '01/02/2021'"),
    ],
)
def test_a_bad_cell_names_its_row_and_column(
    manifest: Manifest, upload: Path, row: str, message: str
) -> None:
    content = HEADER + "2021-01-01,1,1\n" + row + "\n"

    assert csv_problems(manifest, upload, content) == [
        f"inputs.forcing: forcing.csv: row 3, {message}"
    ]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "+INF"])
def test_nan_and_infinity_are_not_numbers(manifest: Manifest, upload: Path, value: str) -> None:
    assert csv_problems(manifest, upload, f"{HEADER}2021-01-01,{value},3\n") == [
        "inputs.forcing: forcing.csv: row 2, column air_temp: "
        f"must be a finite number, got '{value}'"
    ]


def test_a_number_too_large_for_a_float_is_refused(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, f"{HEADER}2021-01-01,1,1e999\n") == [
        "inputs.forcing: forcing.csv: row 2, column wind: must be a finite number, "
        "got '1e999' (too large)"
    ]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("layers", "1.5", "must be a whole number, got '1.5'"),
        ("layers", "0", "0 is below min 1"),
        ("ice", "maybe", "must be true or false, got 'maybe'"),
        ("scenario", "flood", "'flood' is not one of: baseline, drought"),
        ("station", "ABC1", "'ABC1' does not match the pattern [A-Z]{3}[0-9]{2}"),
    ],
)
def test_optional_columns_are_checked_when_present(
    manifest: Manifest, upload: Path, column: str, value: str, message: str
) -> None:
    content = f"date,air_temp,wind,{column}\n2021-01-01,1,1,{value}\n"

    assert csv_problems(manifest, upload, content) == [
        f"inputs.forcing: forcing.csv: row 2, column {column}: {message}"
    ]


def test_good_values_in_every_column_type_pass(manifest: Manifest, upload: Path) -> None:
    content = (
        "date,air_temp,wind,station,ice,layers,scenario\n"
        "2021-01-01, -3.5e1 ,0,ABC12,yes,4,drought\n"
        "2021-01-02,60,1,XYZ99,,1,baseline\n"
    )

    assert csv_problems(manifest, upload, content) == []


def test_only_twenty_problems_are_listed_then_a_count(manifest: Manifest, upload: Path) -> None:
    content = HEADER + "2021-01-01,99,3\n" * 25 + "2021-01-01,99,-1\n" * 5

    found = csv_problems(manifest, upload, content)

    assert len(found) == 22
    assert found[19] == "inputs.forcing: forcing.csv: row 21, column air_temp: 99 is above max 60"
    assert found[20] == "inputs.forcing: forcing.csv: 15 more problems not shown"
    assert found[21] == "inputs.forcing: forcing.csv: 30 data rows, at most 5 allowed"


# --------------------------------------------------------------------------- rows and structure


def test_a_header_without_rows_has_too_few_rows(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, HEADER) == [
        "inputs.forcing: forcing.csv: 0 data rows, at least 1 required"
    ]


def test_too_many_rows_are_refused(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, HEADER + "2021-01-01,1,1\n" * 6) == [
        "inputs.forcing: forcing.csv: 6 data rows, at most 5 allowed"
    ]


def test_blank_lines_are_no_data_rows(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, HEADER + "\n\n") == [
        "inputs.forcing: forcing.csv: 0 data rows, at least 1 required"
    ]


def test_an_empty_file_is_refused(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, "") == [
        "inputs.forcing: forcing.csv: the file is empty (the first row must name the columns)"
    ]


def test_a_row_with_a_wrong_field_count_is_refused(manifest: Manifest, upload: Path) -> None:
    content = HEADER + "2021-01-01,1,1\n2021-01-02,1\n2021-01-03,1,1,9\n"

    assert csv_problems(manifest, upload, content) == [
        "inputs.forcing: forcing.csv: row 3 has 2 fields, the header has 3",
        "inputs.forcing: forcing.csv: row 4 has 4 fields, the header has 3",
    ]


def test_rows_are_counted_as_a_spreadsheet_shows_them(manifest: Manifest, upload: Path) -> None:
    content = (
        "date,air_temp,wind,station\n"
        '2021-01-01,1,1,"AB\nC12"\n'  # one row spread over two lines
        "2021-01-02,99,1,ABC12\n"
    )

    found = csv_problems(manifest, upload, content)

    assert found[-1] == "inputs.forcing: forcing.csv: row 3, column air_temp: 99 is above max 60"


def test_a_file_that_is_not_utf8_names_the_row(manifest: Manifest, upload: Path) -> None:
    content = (HEADER + "2021-01-01,1,1\n2021-01-02,1,1\n").encode() + "é,1,1\n".encode("latin-1")

    assert csv_problems(manifest, upload, content) == [
        "inputs.forcing: forcing.csv: row 4 is not UTF-8 text (save the file as 'CSV UTF-8')"
    ]


def test_a_nul_byte_is_refused(manifest: Manifest, upload: Path) -> None:
    assert csv_problems(manifest, upload, HEADER + "2021-01-01,1\x00,1\n") == [
        "inputs.forcing: forcing.csv: row 2 contains a NUL byte (is this a binary file?)"
    ]


def test_broken_quoting_is_refused(manifest: Manifest, upload: Path) -> None:
    found = csv_problems(manifest, upload, HEADER + '2021-01-01,"1"x,1\n')

    assert len(found) == 1
    assert found[0].startswith("inputs.forcing: forcing.csv: row 2 is not valid CSV (")


def test_an_endless_line_is_refused_without_reading_it_whole(upload: Path) -> None:
    spec = InputSpec.model_validate({"path": "in.csv", "csv": {"columns": {"a": {}}}})
    upload.write_bytes(b"a\n" + b"x" * (2 * 2**20))

    found = check_input_file("big", spec, upload, filename="big.csv")

    assert [str(p) for p in found] == ["inputs.big: big.csv: row 2 is longer than 1.0 MiB"]


# --------------------------------------------------------------------------- archive bombs

BOMB_MANIFEST = """\
simyard: 1
name: lake
version: "1"
inputs:
  bathymetry:
    path: input/bathymetry.zip
    max_size: 30MB
    required: false
    unpack: input/bathymetry/
  mesh:
    path: input/mesh.zip
    max_size: 10KB
    max_unpacked_size: 1MB
    required: false
    unpack: input/mesh/
  grid:
    path: input/grid.zip
    max_size: 10KB
    required: false
    unpack: input/grid/
  huge:
    path: input/huge.zip
    max_unpacked_size: 100GB
    required: false
    unpack: input/huge/
tasks:
  run: {command: [x]}
"""


def zip_of(path: Path, members: dict[str, bytes | int]) -> Path:
    """A zip whose members are bytes, or that many zeros written in 1 MiB chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            with zf.open(name, "w", force_zip64=True) as member:
                if isinstance(content, bytes):
                    member.write(content)
                else:
                    for _ in range(content // 2**20):
                        member.write(bytes(2**20))
    return path


def slot_problems(manifest: Manifest, slot: str, archive: Path, **limits: int) -> list[str]:
    found = check_inputs(manifest, {slot: archive}, filenames={slot: archive.name}, **limits)
    return [str(p) for p in found]


def test_a_half_megabyte_zip_unpacking_to_512_mib_is_refused_naming_the_member(
    make_model: MakeModel, tmp_path: Path
) -> None:
    manifest = load_manifest(make_model(BOMB_MANIFEST))
    bomb = zip_of(
        tmp_path / "bathy.zip", {"readme.txt": b"depths in m\n", "depth.dat": 512 * 2**20}
    )
    assert bomb.stat().st_size < 600_000  # well under the slot's max_size of 30MB

    found = slot_problems(manifest, "bathymetry", bomb)

    assert len(found) == 1
    assert found[0].startswith("inputs.bathymetry: bathy.zip: member 'depth.dat' expands ")
    assert found[0].endswith("(more than 100 times is refused as a likely archive bomb)")


def test_an_archive_slot_unpacks_to_at_most_20_times_its_max_size_by_default(
    make_model: MakeModel, tmp_path: Path
) -> None:
    manifest = load_manifest(make_model(BOMB_MANIFEST))
    archive = zip_of(tmp_path / "grid.zip", {"a.bin": os.urandom(4000), "b.bin": os.urandom(4000)})
    assert slot_problems(manifest, "grid", archive) == []  # 10 kB may unpack to 200 kB

    archive = zip_of(tmp_path / "grid.zip", {f"{i}.txt": b"x" * 18_000 for i in range(12)})

    assert slot_problems(manifest, "grid", archive) == [
        "inputs.grid: grid.zip: member '11.txt' unpacks to more than the limit of 200 KB"
    ]


def test_a_slot_with_max_unpacked_size_admits_an_archive_under_it(
    make_model: MakeModel, tmp_path: Path
) -> None:
    manifest = load_manifest(make_model(BOMB_MANIFEST))
    # 900 kB of text in a 3 kB zip: over 20 x max_size, under max_unpacked_size.
    rows = b"depth,0.0\n" * 90_000
    archive = zip_of(tmp_path / "mesh.zip", {"mesh.csv": rows})
    assert archive.stat().st_size < 10_000 < 200_000 < len(rows)

    assert slot_problems(manifest, "mesh", archive) == []
    assert slot_problems(manifest, "grid", archive) == [
        "inputs.grid: mesh.zip: member 'mesh.csv' unpacks to more than the limit of 200 KB"
    ]
    archive = zip_of(tmp_path / "mesh.zip", {"mesh.csv": rows + rows})
    assert slot_problems(manifest, "mesh", archive) == [
        "inputs.mesh: mesh.zip: member 'mesh.csv' unpacks to more than the limit of 1 MB"
    ]


def test_no_slot_unpacks_past_the_servers_limit(make_model: MakeModel, tmp_path: Path) -> None:
    manifest = load_manifest(make_model(BOMB_MANIFEST))
    archive = zip_of(tmp_path / "huge.zip", {"a.bin": os.urandom(3000)})

    assert slot_problems(manifest, "huge", archive) == []
    assert slot_problems(manifest, "huge", archive, max_unpacked_size=2000) == [
        "inputs.huge: huge.zip: member 'a.bin' unpacks to more than the limit of 2 KB"
    ]


def test_max_unpacked_size_needs_an_archive_slot(make_model: MakeModel) -> None:
    with pytest.raises(ValueError, match="max_unpacked_size applies to an archive"):
        InputSpec(path="a.csv", max_unpacked_size="1MB")  # type: ignore[arg-type]
