"""Check uploaded input files against their manifest slots: size, extension, archive, CSV content.

Every refusal is a :class:`~simyard.errors.Problem` whose field is ``inputs.<slot>`` and
whose message starts with the file's name as the user gave it, e.g.
``forcing.csv: row 12, column air_temp: 75 is above max 60``. Hostile files get
problems, never exceptions: a CSV file is streamed line by line, an archive is read
through without being unpacked.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from simyard.errors import Problem, UnsafeArchive
from simyard.manifest.archives import inspect_archive
from simyard.manifest.params import (
    _parse_boolean,
    _parse_date,
    _parse_integer,
    _parse_number,
    show_number,
)
from simyard.manifest.schema import (
    ARCHIVE_SUFFIXES,
    CsvCheck,
    CsvColumn,
    CsvColumnType,
    InputSpec,
    Manifest,
)
from simyard.manifest.units import format_size

DEFAULT_MAX_INPUT_SIZE = 1 * 2**30  # used when an InputSpec has no max_size
DEFAULT_MAX_UNPACKED_SIZE = 4 * 2**30  # the server's cap on any archive (Settings' default)
UNPACKED_PER_MAX_SIZE = 20  # an archive slot unpacks to at most 20 x its max_size by default
MAX_CELL_PROBLEMS = 20  # shown per file; the rest are only counted
_MAX_LINE = 2**20  # no table a person made has a longer line; a longer one is not read whole
_NOT_FINITE = {"nan", "inf", "infinity"}
_PARSERS: dict[CsvColumnType, Callable[[str], Any]] = {
    CsvColumnType.integer: _parse_integer,
    CsvColumnType.number: _parse_number,
    CsvColumnType.boolean: _parse_boolean,
    CsvColumnType.date: _parse_date,
    CsvColumnType.string: str,
}


def check_inputs(
    manifest: Manifest,
    given: Mapping[str, Path],
    *,
    filenames: Mapping[str, str] | None = None,
    default_max_size: int = DEFAULT_MAX_INPUT_SIZE,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
) -> list[Problem]:
    """Every problem with the files of a run: unknown or missing slots, then each file's own.

    ``filenames`` maps a slot to the name the user gave its file (an upload's original
    name); without it the file's own name is used. ``default_max_size`` applies to a slot
    without ``max_size``; no archive unpacks to more than ``max_unpacked_size``.
    """
    problems: list[Problem] = []
    known = ", ".join(manifest.inputs) or "none"
    for slot in given:
        if slot not in manifest.inputs:
            problems.append(
                Problem(f"inputs.{slot}", f"unknown input slot (this model has: {known})")
            )
    for slot, spec in manifest.inputs.items():
        if slot in given:
            name = (filenames or {}).get(slot)
            problems += check_input_file(
                slot,
                spec,
                given[slot],
                filename=name,
                default_max_size=default_max_size,
                max_unpacked_size=max_unpacked_size,
            )
        elif spec.required:
            problems.append(Problem(f"inputs.{slot}", "is required"))
    return problems


def check_input_file(
    slot: str,
    spec: InputSpec,
    path: Path,
    *,
    filename: str | None = None,
    default_max_size: int = DEFAULT_MAX_INPUT_SIZE,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
) -> list[Problem]:
    """Problems with one file for input ``slot``: size, extension, then archive or CSV content."""
    name = filename or path.name
    try:
        unpacked = unpacked_limit(
            spec, max_unpacked_size=max_unpacked_size, default_max_size=default_max_size
        )
        messages = _file_problems(spec, path, name, default_max_size, unpacked)
    except OSError as exc:
        messages = [f"{name}: cannot be read ({exc.strerror or exc})"]
    return [Problem(f"inputs.{slot}", message) for message in messages]


def unpacked_limit(
    spec: InputSpec, *, max_unpacked_size: int, default_max_size: int | None = None
) -> int:
    """The most bytes the archive of an ``unpack`` slot may unpack to.

    The slot's ``max_unpacked_size``, else :data:`UNPACKED_PER_MAX_SIZE` times its
    ``max_size`` (or ``default_max_size``), and never more than the server's
    ``max_unpacked_size``.
    """
    limit = spec.max_unpacked_size
    if limit is None:
        size = spec.max_size if spec.max_size is not None else default_max_size
        limit = UNPACKED_PER_MAX_SIZE * size if size is not None else max_unpacked_size
    return min(limit, max_unpacked_size)


def _file_problems(
    spec: InputSpec, path: Path, name: str, default_max_size: int, max_unpacked: int
) -> list[str]:
    if not path.is_file():
        return [f"{name}: the file is missing (upload it again)"]
    size = path.stat().st_size
    limit = spec.max_size if spec.max_size is not None else default_max_size
    if size > limit:  # checked first: nothing else reads a file that is too big
        return [f"{name}: {format_size(size)} is over the limit of {format_size(limit)}"]
    accepted = spec.accept or (list(ARCHIVE_SUFFIXES) if spec.unpack is not None else None)
    if accepted and not name.lower().endswith(tuple(accepted)):
        return [f"{name}: {_extension(name)} not accepted (accepted: {', '.join(accepted)})"]
    if spec.unpack is not None:
        try:  # refuse a bad archive now rather than when the run starts
            inspect_archive(path, filename=name, max_bytes=max_unpacked)
        except UnsafeArchive as exc:
            return [str(exc)]
    if spec.csv is not None:
        return check_csv(path, spec.csv, filename=name)
    return []


def _extension(name: str) -> str:
    suffixes = PurePosixPath(name).suffixes
    if not suffixes:
        return "a file without an extension is"
    if len(suffixes) > 1 and suffixes[-2].lower() == ".tar":
        return f"extension {''.join(suffixes[-2:])}"
    return f"extension {suffixes[-1]}"


def check_csv(path: Path, check: CsvCheck, *, filename: str) -> list[str]:
    """Problems with a CSV file's content, each message starting with ``filename``.

    Rows are numbered as a spreadsheet shows them: the header is row 1. At most
    :data:`MAX_CELL_PROBLEMS` row problems are listed, then how many more were found.
    """
    scan = _CsvScan(check, filename)
    try:
        with path.open("rb") as fh:
            scan.read(fh)
    except OSError as exc:
        return [f"{filename}: cannot be read ({exc.strerror or exc})"]
    return scan.report()


class _LineError(Exception):
    """A line no CSV reader should see: not UTF-8, a NUL byte, or far too long."""


def _text_lines(fh: BinaryIO) -> Iterator[str]:
    # Decoded line by line (UTF-8 never has a newline byte inside a character), so a
    # bad byte is reported in its own row and a huge file is never held in memory.
    first = True
    while line := fh.readline(_MAX_LINE + 1):
        if len(line) > _MAX_LINE:
            raise _LineError(f"is longer than {format_size(_MAX_LINE)}")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise _LineError("is not UTF-8 text (save the file as 'CSV UTF-8')") from None
        if "\x00" in text:
            raise _LineError("contains a NUL byte (is this a binary file?)")
        yield text.removeprefix("\ufeff") if first else text
        first = False


class _CsvScan:
    """One pass over a CSV file, keeping only the problems to show and a count of the rest."""

    def __init__(self, check: CsvCheck, filename: str) -> None:
        self.check, self.name = check, filename
        self.header_problems: list[str] = []
        self.row_problems: list[str] = []
        self.row_problem_count = 0
        self.broken: str | None = None  # why reading stopped early
        self.header: list[str] | None = None
        self.columns: dict[int, tuple[str, CsvColumn, re.Pattern[str] | None]] = {}
        self.data_rows = 0

    def read(self, fh: BinaryIO) -> None:
        reader = csv.reader(_text_lines(fh), delimiter=self.check.delimiter, strict=True)
        row = 0
        while True:
            try:
                record = next(reader, None)
            except _LineError as exc:
                self.broken = f"row {row + 1} {exc}"
                return
            except csv.Error as exc:
                self.broken = f"row {row + 1} is not valid CSV ({exc})"
                return
            if record is None:
                return
            row += 1
            if self.header is None:
                self.use_header(record)
            elif record:  # a blank line is no data row
                self.check_row(row, record, self.header)

    def use_header(self, record: list[str]) -> None:
        self.header = [cell.strip().strip("\ufeff").strip() for cell in record]
        for col, spec in self.check.columns.items():
            positions = [i for i, name in enumerate(self.header) if name == col]
            if len(positions) > 1:
                self.header_problems.append(f"column {col!r} appears {len(positions)} times")
            elif positions:
                pattern = re.compile(spec.pattern) if spec.pattern is not None else None
                self.columns[positions[0]] = (col, spec, pattern)
            elif spec.required:
                self.header_problems.append(f"missing column {col!r}{self.delimiter_hint()}")

    def delimiter_hint(self) -> str:
        if self.header is not None and len(self.header) == 1:
            for other in ",;\t|":
                if other != self.check.delimiter and other in self.header[0]:
                    return f" (the header is one column: are the columns separated by {other!r}?)"
        return ""

    def check_row(self, row: int, record: list[str], header: list[str]) -> None:
        self.data_rows += 1
        if len(record) != len(header):
            fields = f"{len(record)} field" + ("" if len(record) == 1 else "s")
            self.row_problem(f"row {row} has {fields}, the header has {len(header)}")
            return
        for index, (col, spec, pattern) in self.columns.items():
            message = _cell_problem(record[index], spec, pattern)
            if message is not None:
                self.row_problem(f"row {row}, column {col}: {message}")

    def row_problem(self, message: str) -> None:
        self.row_problem_count += 1
        if self.row_problem_count <= MAX_CELL_PROBLEMS:
            self.row_problems.append(message)

    def report(self) -> list[str]:
        found = list(self.header_problems) + self.row_problems
        more = self.row_problem_count - len(self.row_problems)
        if more:
            found.append(f"{more} more problem{'s' if more > 1 else ''} not shown")
        if self.broken is not None:
            found.append(self.broken)
        elif self.header is None:
            found.append("the file is empty (the first row must name the columns)")
        else:
            rows = f"{self.data_rows} data row" + ("" if self.data_rows == 1 else "s")
            if self.data_rows < self.check.min_rows:
                found.append(f"{rows}, at least {self.check.min_rows} required")
            if self.check.max_rows is not None and self.data_rows > self.check.max_rows:
                found.append(f"{rows}, at most {self.check.max_rows} allowed")
        return [f"{self.name}: {message}" for message in found]


def _cell_problem(cell: str, spec: CsvColumn, pattern: re.Pattern[str] | None) -> str | None:
    text = cell if spec.type is CsvColumnType.string else cell.strip()
    if not text.strip():
        return None if spec.allow_empty else "empty, a value is required"
    if spec.type is CsvColumnType.number and text.lower().lstrip("+-") in _NOT_FINITE:
        return f"must be a finite number, got {_short(text)!r}"  # NaN or infinity
    try:
        value = _PARSERS[spec.type](text)
    except ValueError as exc:
        return str(exc)
    if spec.type in (CsvColumnType.integer, CsvColumnType.number):
        if spec.min is not None and value < spec.min:
            return f"{show_number(value)} is below min {show_number(spec.min)}"
        if spec.max is not None and value > spec.max:
            return f"{show_number(value)} is above max {show_number(spec.max)}"
    if spec.choices is not None and text not in spec.choices:
        return f"{_short(text)!r} is not one of: {', '.join(spec.choices)}"
    if pattern is not None and not pattern.fullmatch(text):
        return f"{_short(text)!r} does not match the pattern {spec.pattern}"
    return None


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
