"""The shape of ``simyard.yaml``: pydantic models, one per section.

Every model forbids unknown keys, so a typo is an error rather than a silently
ignored setting. Rules that need more than one field at a time (the task graph,
placeholders, defaults inside their own range) live in :mod:`simyard.manifest.checks`.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from simyard import taskgraph
from simyard.images.reference import check_image_ref
from simyard.manifest.units import Duration, Size

NAME_RE = r"^[a-z0-9][a-z0-9-]*$"
IDENTIFIER_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"


def check_relative_path(value: str) -> str:
    """Refuse absolute paths, ``..`` and empty paths; a trailing ``/`` (a folder) is kept."""
    if not value or not value.strip():
        raise ValueError("a path cannot be empty")
    if "\\" in value or "\x00" in value:
        raise ValueError(f"{value!r}: use '/' as the separator, no backslashes or NUL bytes")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError(f"{value!r}: paths must be relative to the model folder")
    if ".." in path.parts:
        raise ValueError(f"{value!r}: '..' is not allowed in a path")
    if path.parts in ((), (".",)):
        raise ValueError(f"{value!r}: the path names the folder itself")
    return value


def check_regex(value: str) -> str:
    """Refuse a regular expression Python cannot compile."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


RelPath = Annotated[str, AfterValidator(check_relative_path)]
ImageRefText = Annotated[str, AfterValidator(check_image_ref)]
Regex = Annotated[str, AfterValidator(check_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- parameters


class _ParameterBase(_Strict):
    label: str | None = None
    help: str | None = None
    unit: str | None = None
    group: str | None = None

    @property
    def required(self) -> bool:
        """A parameter without a default must be given."""
        return getattr(self, "default", None) is None


class _Ranged(_ParameterBase):
    min: float | None = None
    max: float | None = None
    warn_min: float | None = None
    warn_max: float | None = None


class IntegerParameter(_Ranged):
    type: Literal["integer"]
    default: int | None = None
    min: int | None = None
    max: int | None = None

    @field_validator("default", "min", "max", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a whole number, not true/false")
        return value


class NumberParameter(_Ranged):
    type: Literal["number"]
    default: float | None = None

    @field_validator("default", "min", "max", "warn_min", "warn_max", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not true/false")
        if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
            raise ValueError("must be a finite number")
        return value


class StringParameter(_ParameterBase):
    type: Literal["string"]
    default: str | None = None
    pattern: Regex | None = None
    max_length: int | None = Field(default=None, ge=1)
    min_length: int | None = Field(default=None, ge=0)
    multiline: bool = False


class BooleanParameter(_ParameterBase):
    type: Literal["boolean"]
    default: bool | None = None


class ChoiceParameter(_ParameterBase):
    type: Literal["choice"]
    choices: list[str | int | float] = Field(min_length=1)
    default: str | int | float | None = None

    @field_validator("choices")
    @classmethod
    def _unique(cls, value: list[str | int | float]) -> list[str | int | float]:
        seen = [str(v) for v in value]
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        if dupes:
            raise ValueError(f"duplicate choices: {', '.join(dupes)}")
        return value


class DateParameter(_ParameterBase):
    type: Literal["date"]
    default: dt.date | None = None
    min: dt.date | None = None
    max: dt.date | None = None


Parameter = Annotated[
    IntegerParameter
    | NumberParameter
    | StringParameter
    | BooleanParameter
    | ChoiceParameter
    | DateParameter,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- inputs


class CsvColumnType(StrEnum):
    integer = "integer"
    number = "number"
    string = "string"
    boolean = "boolean"
    date = "date"


class CsvColumn(_Strict):
    type: CsvColumnType = CsvColumnType.string
    min: float | None = None
    max: float | None = None
    required: bool = True
    allow_empty: bool = False
    choices: list[str] | None = None
    pattern: Regex | None = None


class CsvCheck(_Strict):
    columns: dict[str, CsvColumn] = Field(default_factory=dict)
    min_rows: int = Field(default=0, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    delimiter: str = Field(default=",", min_length=1, max_length=1)


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class InputSpec(_Strict):
    label: str | None = None
    help: str | None = None
    path: RelPath
    required: bool = True
    max_size: Size | None = None
    accept: list[str] | None = None
    csv: CsvCheck | None = None
    unpack: RelPath | None = None
    # What the archive may unpack to; default 20 x max_size, never above the server's limit.
    max_unpacked_size: Size | None = None

    @field_validator("accept")
    @classmethod
    def _extensions(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for ext in value:
                if not re.fullmatch(r"\.[A-Za-z0-9][A-Za-z0-9._-]*", ext):
                    raise ValueError(f"{ext!r}: an extension starts with a dot, e.g. '.csv'")
        return [e.lower() for e in value] if value is not None else None

    @model_validator(mode="after")
    def _csv_or_unpack(self) -> InputSpec:
        if self.csv is not None and self.unpack is not None:
            raise ValueError("an input is either a CSV file (csv:) or an archive (unpack:)")
        if self.max_unpacked_size is not None and self.unpack is None:
            raise ValueError("max_unpacked_size applies to an archive: give unpack: too")
        return self


# --------------------------------------------------------------------------- parameter file


class ParameterFileFormat(StrEnum):
    keyvalue = "keyvalue"
    json = "json"
    yaml = "yaml"
    namelist = "namelist"
    template = "template"


class ParameterFileSpec(_Strict):
    path: RelPath
    format: ParameterFileFormat = ParameterFileFormat.keyvalue
    template: RelPath | None = None
    group: str | None = Field(default=None, pattern=IDENTIFIER_RE)

    @model_validator(mode="after")
    def _format_options(self) -> ParameterFileSpec:
        if self.format is ParameterFileFormat.template and self.template is None:
            raise ValueError("format 'template' needs 'template': the Jinja2 file to render")
        if self.format is not ParameterFileFormat.template and self.template is not None:
            raise ValueError("'template' is only used with format 'template'")
        if self.format is not ParameterFileFormat.namelist and self.group is not None:
            raise ValueError("'group' is only used with format 'namelist'")
        return self

    @property
    def namelist_group(self) -> str:
        """The namelist group the parameters are written to (``params`` unless set)."""
        return self.group or "params"


# --------------------------------------------------------------------------- tasks


class Resources(_Strict):
    cpus: float = Field(default=1, gt=0)
    memory: Size | None = None
    processes: int | None = Field(default=None, ge=1)
    disk: Size | None = None
    file_size: Size | None = None


class _Command(_Strict):
    command: list[str] = Field(min_length=1)
    outputs: list[RelPath] = Field(default_factory=list)
    timeout: Duration | None = None
    env: dict[Annotated[str, Field(pattern=IDENTIFIER_RE)], str] = Field(default_factory=dict)

    @field_validator("command")
    @classmethod
    def _non_empty_program(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the program (first element) cannot be empty")
        return value


class ProgressSpec(_Strict):
    """``{pattern, total}``: the pattern's one group is the amount done, out of ``total``
    (a number or a placeholder such as ``"{end_time}"``)."""

    pattern: Regex
    total: str | None = None

    @model_validator(mode="after")
    def _groups(self) -> ProgressSpec:
        groups = re.compile(self.pattern).groups
        if self.total is not None and groups != 1:
            raise ValueError("progress with a total needs one group: the amount done")
        if self.total is None and groups not in (1, 2):
            raise ValueError("progress needs one group (percent done) or two groups (done, total)")
        return self


class TaskSpec(_Command):
    needs: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    error_patterns: list[Regex] = Field(default_factory=list)
    warning_patterns: list[Regex] = Field(default_factory=list)  # shown; the task goes on
    progress: ProgressSpec | None = None  # a bare regex is {pattern: REGEX}
    success_requires: list[RelPath] = Field(default_factory=list)
    retries: int = Field(default=0, ge=0, le=10)
    stdin: RelPath | None = None  # a file of the working directory fed to standard input
    tty: bool = False  # a pseudo-terminal, so C/Fortran runtimes line-buffer their output
    image: ImageRefText | None = None  # overrides environment.image for this task

    @field_validator("progress", mode="before")
    @classmethod
    def _bare_pattern(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if re.compile(check_regex(value)).groups not in (1, 2):
            raise ValueError("progress needs one group (percent done) or two groups (done, total)")
        return {"pattern": value}

    @property
    def progress_pattern(self) -> str | None:
        """The regex that reads progress from the log, or None."""
        return self.progress.pattern if self.progress is not None else None

    @property
    def progress_total(self) -> str | None:
        """The total the amount done is out of (placeholders unfilled), or None."""
        return self.progress.total if self.progress is not None else None


class OnFailureSpec(_Command):
    pass


# --------------------------------------------------------------------------- results


Delimiter = Annotated[str, Field(pattern=r"^(whitespace|.)$")]  # one character or "whitespace"


class Metric(_Strict):
    file: RelPath | None = None
    log: str | None = None
    key: str | None = None
    pattern: Regex | None = None
    column: str | None = None  # a column of a table file (CSV, or see delimiter)
    agg: Literal["max", "min", "mean", "first", "last", "count"] | None = None
    delimiter: Delimiter = ","
    unit: str | None = None  # shown after the value
    digits: int | None = Field(default=None, ge=0, le=15)  # decimals the value is rounded to

    @model_validator(mode="after")
    def _one_source(self) -> Metric:
        if (self.file is None) == (self.log is None):
            raise ValueError("a metric reads either a 'file' or a task's 'log'")
        readers = [r for r in (self.key, self.pattern, self.column) if r is not None]
        if len(readers) != 1:
            raise ValueError(
                "a metric takes one of a JSON 'key', a regex 'pattern' or a table 'column'"
            )
        if self.column is not None and self.file is None:
            raise ValueError("'column' reads a table file: give 'file'")
        if self.agg is not None and self.column is None:
            raise ValueError("'agg' applies to a 'column'")
        if self.key is not None and self.file is None:
            raise ValueError("'key' reads a JSON file; use 'pattern' with 'log'")
        if self.pattern is not None and re.compile(self.pattern).groups < 1:
            raise ValueError("a metric pattern needs a group: the value is group 1")
        return self


class Plot(_Strict):
    title: str
    file: RelPath
    x: str
    y: list[str] = Field(min_length=1)
    kind: Literal["line", "scatter"] = "line"
    y_label: str | None = None  # the y axis' title (default: the one column's name)
    delimiter: Delimiter = ","  # "whitespace" for columns separated by spaces; '#' lines skipped

    @field_validator("y", mode="before")
    @classmethod
    def _single_y(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Results(_Strict):
    metrics: dict[str, Metric] = Field(default_factory=dict)
    plots: list[Plot] = Field(default_factory=list)


class Environment(_Strict):
    network: bool = False
    image: ImageRefText | None = None  # the model's runtime image (simyard.images.reference)


# --------------------------------------------------------------------------- the manifest


class Manifest(_Strict):
    simyard: Literal[1]
    name: str = Field(pattern=NAME_RE, max_length=64)
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=64)
    title: str | None = None
    description: str = ""
    parameters: dict[Annotated[str, Field(pattern=IDENTIFIER_RE)], Parameter] = Field(
        default_factory=dict
    )
    inputs: dict[Annotated[str, Field(pattern=IDENTIFIER_RE)], InputSpec] = Field(
        default_factory=dict
    )
    parameter_file: ParameterFileSpec | None = None
    parameter_files: list[ParameterFileSpec] = Field(default_factory=list)  # several files
    # for every task (a task's own env wins); {workdir} is the task's working directory
    env: dict[Annotated[str, Field(pattern=IDENTIFIER_RE)], str] = Field(default_factory=dict)
    tasks: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")], TaskSpec] = Field(
        min_length=1
    )
    on_failure: OnFailureSpec | None = None
    hooks: RelPath | None = None
    results: Results = Field(default_factory=Results)
    environment: Environment = Field(default_factory=Environment)

    @model_validator(mode="after")
    def _one_way_to_parameter_files(self) -> Manifest:
        if self.parameter_file is not None and self.parameter_files:
            raise ValueError("give either parameter_file or parameter_files, not both")
        paths = [f.path for f in self.parameter_files]
        if len(set(paths)) != len(paths):
            raise ValueError("parameter_files: two files have the same path")
        return self

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # `version: 1.4` in YAML is a float; a version is text, so say so rather than guess.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f'write the version as a quoted string, e.g. "{value}"')
        return value

    @property
    def display_title(self) -> str:
        """The title, or the name when there is none."""
        return self.title or self.name

    def task_order(self) -> list[str]:
        """Task names in an order where every task comes after the tasks it needs."""
        return taskgraph.task_order(self.needs)

    def ancestors(self, task: str) -> list[str]:
        """Every task ``task`` needs, transitively, in graph order (the nearest last)."""
        return taskgraph.ancestors(self.needs, task)

    def image_of(self, task: str) -> str | None:
        """The image reference ``task`` runs in (its own, else the environment's), or None."""
        spec = self.tasks.get(task)
        own = spec.image if spec is not None else None
        return own or self.environment.image

    @property
    def needs(self) -> dict[str, list[str]]:
        """Each task's ``needs``, in declared order."""
        return {name: list(task.needs) for name, task in self.tasks.items()}
