"""Load ``simyard.yaml`` and report every problem in it, each with its location.

:func:`load_manifest` is the one way in: it parses the YAML, validates the shape
(pydantic) and then the rules that span fields (:func:`check_manifest`), and raises
:class:`~simyard.errors.ManifestError` listing all problems at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simyard.errors import ManifestError, Problem
from simyard.images.reference import parse_image_ref
from simyard.manifest.placeholders import is_glob
from simyard.manifest.schema import (
    ChoiceParameter,
    DateParameter,
    IntegerParameter,
    Manifest,
    NumberParameter,
    StringParameter,
)

MANIFEST_FILE = "simyard.yaml"
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_PARAMETER_TAGS = {"integer", "number", "string", "boolean", "choice", "date"}


def find_placeholders(text: str) -> list[str]:
    """Names inside ``{...}`` in ``text``; ``{{`` and ``}}`` stand for literal braces."""
    return PLACEHOLDER_RE.findall(text.replace("{{", "").replace("}}", ""))


def format_location(loc: Iterable[int | str]) -> str:
    """``('tasks', 'simulate', 'needs', 0)`` -> ``tasks.simulate.needs[0]``."""
    parts = list(loc)
    # A discriminated union puts the tag in the location: parameters.days.integer.min
    if len(parts) > 2 and parts[0] == "parameters" and parts[2] in _PARAMETER_TAGS:
        del parts[2]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            text += " (name)"
        else:
            text += f".{part}" if text else str(part)
    return text


def _problems_from_validation(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/manifest.md)"
        elif error["type"] == "union_tag_invalid":
            message = (
                f"unknown type {error['input'].get('type')!r}; "
                "use integer, number, string, boolean, choice or date"
                if isinstance(error["input"], dict)
                else message
            )
        elif error["type"] == "union_tag_not_found":
            message = "missing 'type' (integer, number, string, boolean, choice or date)"
        problems.append(Problem(format_location(error["loc"]), message, MANIFEST_FILE))
    return problems


def read_manifest_data(model_dir: Path) -> dict[str, Any]:
    """The raw YAML mapping of ``model_dir/simyard.yaml``."""
    path = model_dir / MANIFEST_FILE
    if not model_dir.is_dir():
        raise ManifestError([Problem("", f"{model_dir}: not a folder")])
    if not path.is_file():
        raise ManifestError([Problem("", f"no {MANIFEST_FILE} in {model_dir}", None)])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ManifestError([Problem("", "not UTF-8 text", MANIFEST_FILE)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([Problem(where, f"YAML syntax: {reason}", MANIFEST_FILE)]) from None
    if not isinstance(data, dict):
        raise ManifestError([Problem("", "the manifest must be a mapping of keys", MANIFEST_FILE)])
    return data


def load_manifest(model_dir: Path) -> Manifest:
    """Parse and fully check ``model_dir/simyard.yaml``; raise ManifestError with every problem."""
    data = read_manifest_data(model_dir)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        graph = [Problem(p.field, p.message, MANIFEST_FILE) for p in _check_tasks(data)]
        raise ManifestError(_problems_from_validation(exc) + graph) from None
    problems = check_manifest(manifest, model_dir)
    if problems:
        raise ManifestError(problems)
    return manifest


def check_manifest(manifest: Manifest, model_dir: Path | None = None) -> list[Problem]:
    """Every rule that spans fields; ``model_dir`` enables the checks of referenced files."""
    problems = [
        *_check_parameters(manifest),
        *_check_tasks(manifest.model_dump(mode="json")),
        *_check_inputs(manifest),
        *_check_results(manifest),
    ]
    if model_dir is not None:
        problems += _check_files(manifest, model_dir)
    return [Problem(p.field, p.message, MANIFEST_FILE) for p in problems]


def _check_parameters(manifest: Manifest) -> Iterator[Problem]:
    for name, spec in manifest.parameters.items():
        loc = f"parameters.{name}"
        if isinstance(spec, IntegerParameter | NumberParameter | DateParameter):
            lo, hi = spec.min, spec.max
            if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
                yield Problem(f"{loc}.max", f"max ({hi}) is below min ({lo})")
            if spec.default is not None:
                if lo is not None and spec.default < lo:  # type: ignore[operator]
                    yield Problem(f"{loc}.default", f"default {spec.default} is below min {lo}")
                if hi is not None and spec.default > hi:  # type: ignore[operator]
                    yield Problem(f"{loc}.default", f"default {spec.default} is above max {hi}")
        if isinstance(spec, IntegerParameter | NumberParameter):
            wlo, whi = spec.warn_min, spec.warn_max
            if wlo is not None and whi is not None and wlo > whi:
                yield Problem(f"{loc}.warn_max", f"warn_max ({whi}) is below warn_min ({wlo})")
        if isinstance(spec, StringParameter):
            if spec.min_length is not None and spec.max_length is not None:
                if spec.min_length > spec.max_length:
                    yield Problem(f"{loc}.max_length", "max_length is below min_length")
            if spec.default is not None:
                if spec.max_length is not None and len(spec.default) > spec.max_length:
                    yield Problem(
                        f"{loc}.default",
                        f"default is {len(spec.default)} characters, over max_length "
                        f"{spec.max_length}",
                    )
                if spec.pattern is not None and not re.fullmatch(spec.pattern, spec.default):
                    yield Problem(f"{loc}.default", f"default does not match {spec.pattern!r}")
        if isinstance(spec, ChoiceParameter) and spec.default is not None:
            if str(spec.default) not in [str(c) for c in spec.choices]:
                yield Problem(f"{loc}.default", f"default {spec.default!r} is not one of choices")


def _check_tasks(data: dict[str, Any]) -> Iterator[Problem]:
    """Graph and placeholder rules, over the raw mapping so they run even beside shape errors."""
    params = set(_mapping(data.get("parameters")))
    tasks = _mapping(data.get("tasks"))
    commands = [(f"tasks.{n}", _mapping(t)) for n, t in tasks.items()]
    if isinstance(data.get("on_failure"), dict):
        commands.append(("on_failure", data["on_failure"]))
    for loc, spec in commands:
        for i, arg in enumerate(_strings(spec.get("command"))):
            for name in find_placeholders(arg):
                if name not in params:
                    yield Problem(
                        f"{loc}.command[{i}]", f"placeholder {{{name}}} names no parameter"
                    )
        for key, value in _mapping(spec.get("env")).items():
            for name in find_placeholders(str(value)):
                if name not in params | {"workdir"}:
                    yield Problem(f"{loc}.env.{key}", f"placeholder {{{name}}} names no parameter")
        for field in ("outputs", "success_requires"):
            for i, path in enumerate(_strings(spec.get(field))):
                for name in find_placeholders(path):
                    if name not in params:
                        yield Problem(
                            f"{loc}.{field}[{i}]", f"placeholder {{{name}}} names no parameter"
                        )
        progress = spec.get("progress")
        if isinstance(progress, dict) and isinstance(progress.get("total"), str):
            for name in find_placeholders(progress["total"]):
                if name not in params:
                    yield Problem(
                        f"{loc}.progress.total", f"placeholder {{{name}}} names no parameter"
                    )
        if isinstance(spec.get("stdin"), str):
            for name in find_placeholders(spec["stdin"]):
                if name not in params:
                    yield Problem(f"{loc}.stdin", f"placeholder {{{name}}} names no parameter")
            if is_glob(spec["stdin"]):
                yield Problem(f"{loc}.stdin", "stdin names one file, not a pattern")
    for key, value in _mapping(data.get("env")).items():
        for name in find_placeholders(str(value)):
            if name not in params | {"workdir"}:
                yield Problem(f"env.{key}", f"placeholder {{{name}}} names no parameter")
    graph: dict[str, list[str]] = {}
    for name, task in tasks.items():
        needs = _strings(_mapping(task).get("needs"))
        for i, need in enumerate(needs):
            if need == name:
                yield Problem(f"tasks.{name}.needs[{i}]", "a task cannot need itself")
            elif need not in tasks:
                yield Problem(f"tasks.{name}.needs[{i}]", f"unknown task {need!r}")
        graph[name] = [d for d in needs if d in tasks and d != name]
    cycle = _find_cycle(graph)
    if cycle:
        yield Problem(f"tasks.{cycle[0]}.needs", "cycle: " + " -> ".join([*cycle, cycle[0]]))


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> nodes it depends on), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph[node]:
            if state.get(dep) == 1:
                return path[path.index(dep) :]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def _check_inputs(manifest: Manifest) -> Iterator[Problem]:
    taken: dict[str, str] = {}
    if manifest.parameter_file is not None:
        taken[manifest.parameter_file.path] = "parameter_file.path"
    for i, file_spec in enumerate(manifest.parameter_files):
        taken[file_spec.path] = f"parameter_files[{i}].path"
    for slot, spec in manifest.inputs.items():
        loc = f"inputs.{slot}.path"
        if spec.path in taken:
            yield Problem(loc, f"{spec.path!r} is also {taken[spec.path]}")
        taken[spec.path] = loc
        if spec.csv is not None:
            for col, check in spec.csv.columns.items():
                if check.min is not None and check.max is not None and check.min > check.max:
                    yield Problem(f"inputs.{slot}.csv.columns.{col}.max", "max is below min")
            if spec.csv.max_rows is not None and spec.csv.max_rows < spec.csv.min_rows:
                yield Problem(f"inputs.{slot}.csv.max_rows", "max_rows is below min_rows")


def _check_results(manifest: Manifest) -> Iterator[Problem]:
    for name, metric in manifest.results.metrics.items():
        if metric.log is not None and metric.log not in manifest.tasks:
            yield Problem(f"results.metrics.{name}.log", f"unknown task {metric.log!r}")
    files = [(f"results.metrics.{n}.file", m.file) for n, m in manifest.results.metrics.items()]
    files += [(f"results.plots[{i}].file", p.file) for i, p in enumerate(manifest.results.plots)]
    for loc, file in files:
        for name in find_placeholders(file or ""):
            if name not in manifest.parameters:
                yield Problem(loc, f"placeholder {{{name}}} names no parameter")


def _check_files(manifest: Manifest, model_dir: Path) -> Iterator[Problem]:
    pf = manifest.parameter_file
    if pf is not None and pf.template is not None and not (model_dir / pf.template).is_file():
        yield Problem("parameter_file.template", f"{pf.template!r} not found in the model folder")
    for i, spec in enumerate(manifest.parameter_files):
        if spec.template is not None and not (model_dir / spec.template).is_file():
            yield Problem(
                f"parameter_files[{i}].template", f"{spec.template!r} not found in the model folder"
            )
    if manifest.hooks is not None and not (model_dir / manifest.hooks).is_file():
        yield Problem("hooks", f"{manifest.hooks!r} not found in the model folder")
    yield from _check_images(manifest, model_dir)
    for name, task in manifest.tasks.items():
        program = task.command[0]
        in_image = manifest.image_of(name) is not None  # may live in the image's WorkingDir
        if (
            "/" in program
            and not program.startswith("/")
            and not find_placeholders(program)
            and not in_image
        ):
            if ".." in program.split("/"):
                yield Problem(f"tasks.{name}.command[0]", "'..' is not allowed in a path")
            elif not (model_dir / program).exists() and not _made_upstream(manifest, name, program):
                yield Problem(
                    f"tasks.{name}.command[0]", f"{program!r} not found in the model folder"
                )


def _check_images(manifest: Manifest, model_dir: Path) -> Iterator[Problem]:
    """Each image named by a file of the model folder exists there, of the right kind."""
    named = [("environment.image", manifest.environment.image)]
    named += [(f"tasks.{n}.image", t.image) for n, t in manifest.tasks.items()]
    for loc, text in named:
        if text is None:
            continue
        ref = parse_image_ref(text)
        if not ref.is_file:
            continue
        path = model_dir / ref.target
        if ref.transport == "oci":
            if not (path / "index.json").is_file():
                yield Problem(loc, f"{ref.target!r} is not an OCI layout in the model folder")
        elif not path.is_file():
            yield Problem(loc, f"{ref.target!r} not found in the model folder")


def _made_upstream(manifest: Manifest, task: str, program: str) -> bool:
    """Whether ``program`` may be produced by a task that ``task`` (transitively) needs."""
    rel = program.removeprefix("./")
    seen: set[str] = set()
    stack = list(manifest.tasks[task].needs)
    while stack:
        name = stack.pop()
        if name in seen or name not in manifest.tasks:
            continue
        seen.add(name)
        for out in manifest.tasks[name].outputs:
            if rel == out or rel.startswith(out.rstrip("/") + "/") or Path(rel).match(out):
                return True
        stack.extend(manifest.tasks[name].needs)
    return False
