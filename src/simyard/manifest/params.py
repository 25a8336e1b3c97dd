"""Parameter values: parse what a user typed (or sent as JSON), check every rule, apply defaults.

The same code serves the CLI (``-p days=30`` gives text), the API (JSON gives typed
values) and the web form, so all three refuse exactly the same inputs with the same
words. Every refusal is a :class:`~simyard.errors.Problem` whose field is
``params.<name>``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simyard.errors import Problem
from simyard.manifest.schema import (
    BooleanParameter,
    ChoiceParameter,
    DateParameter,
    IntegerParameter,
    Manifest,
    NumberParameter,
    Parameter,
    StringParameter,
)

_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
MAX_DIGITS = 30  # of a whole number
# What str.splitlines (and so many a model's reader) takes for the end of a line.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass
class ParameterCheck:
    """The outcome of checking a parameter set: typed values, refusals and soft warnings."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_value(spec: Parameter, raw: Any) -> Any:
    """Turn ``raw`` (text or a JSON value) into the parameter's type; ValueError says why not."""
    if isinstance(spec, IntegerParameter):
        return _parse_integer(raw)
    if isinstance(spec, NumberParameter):
        return _parse_number(raw)
    if isinstance(spec, BooleanParameter):
        return _parse_boolean(raw)
    if isinstance(spec, DateParameter):
        return _parse_date(raw)
    if isinstance(spec, ChoiceParameter):
        for choice in spec.choices:
            if str(choice) == str(raw).strip() and not isinstance(raw, bool):
                return choice
        raise ValueError(f"must be one of: {', '.join(str(c) for c in spec.choices)}")
    if not isinstance(raw, str):
        raise ValueError(f"must be text, got {type(raw).__name__}")
    if "\x00" in raw:
        raise ValueError("must not contain a NUL character")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): no file can hold it
        raise ValueError("must be valid Unicode text") from None
    return raw


def _parse_integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("must be a whole number, not true/false")
    if isinstance(raw, float):
        if not (math.isfinite(raw) and raw.is_integer()):
            raise ValueError(f"must be a whole number, got {raw}")
        raw = int(raw)
    if isinstance(raw, int):
        # The same limit for JSON as for text, so any accepted value can be written as text
        # (a parameter file) and read back.
        if abs(raw) >= 10**MAX_DIGITS:
            raise ValueError("is too large")
        return raw
    if isinstance(raw, str) and _INT_RE.match(raw.strip()):
        if len(raw.strip().lstrip("+-")) > MAX_DIGITS:
            raise ValueError("is too large")
        return int(raw.strip())
    raise ValueError(f"must be a whole number, got {_show(raw)}")


def _parse_number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(raw, int):
        value = float(raw)
    elif isinstance(raw, float):
        value = raw
    elif isinstance(raw, str) and _FLOAT_RE.match(raw.strip()):
        value = float(raw.strip())
    else:
        raise ValueError(f"must be a number, got {_show(raw)}")
    if math.isnan(value):
        raise ValueError("must be a number, got NaN")
    if math.isinf(value):
        raise ValueError(f"must be a finite number, got {_show(raw)} (too large)")
    return value


def _parse_boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"must be true or false, got {_show(raw)}")


def _parse_date(raw: Any) -> dt.date:
    if isinstance(raw, dt.datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str) and _DATE_RE.match(raw.strip()):
        try:
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError(f"is not a real date: {raw.strip()}") from None
    raise ValueError(f"must be a date written YYYY-MM-DD, got {_show(raw)}")


def _show(raw: Any) -> str:
    text = repr(raw) if isinstance(raw, str) else str(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def show_number(value: Any) -> str:
    """A limit or value as a person writes it: ``1`` rather than ``1.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def check_rules(spec: Parameter, value: Any) -> tuple[list[str], list[str]]:
    """Errors and soft warnings for an already typed ``value``."""
    errors: list[str] = []
    warnings: list[str] = []
    shown = show_number(value)
    if isinstance(spec, IntegerParameter | NumberParameter | DateParameter):
        if spec.min is not None and value < spec.min:
            errors.append(f"must be at least {show_number(spec.min)} (got {shown})")
        if spec.max is not None and value > spec.max:
            errors.append(f"must be at most {show_number(spec.max)} (got {shown})")
    if isinstance(spec, IntegerParameter | NumberParameter) and not errors:
        if spec.warn_min is not None and value < spec.warn_min:
            usual = show_number(spec.warn_min)
            warnings.append(f"{shown} is below the usual minimum {usual} (allowed)")
        if spec.warn_max is not None and value > spec.warn_max:
            usual = show_number(spec.warn_max)
            warnings.append(f"{shown} is above the usual maximum {usual} (allowed)")
    if isinstance(spec, StringParameter):
        if spec.max_length is not None and len(value) > spec.max_length:
            errors.append(f"must be at most {spec.max_length} characters (got {len(value)})")
        if spec.min_length is not None and len(value) < spec.min_length:
            errors.append(f"must be at least {spec.min_length} characters (got {len(value)})")
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            errors.append(f"must match the pattern {spec.pattern}")
        if not spec.multiline and not LINE_BREAKS.isdisjoint(value):
            errors.append("must be a single line")
    return errors, warnings


def validate_parameters(
    manifest: Manifest,
    given: Mapping[str, Any],
    *,
    inputs: Mapping[str, Path] | None = None,
    model_dir: Path | None = None,
) -> ParameterCheck:
    """Check ``given`` against the manifest, apply defaults, run the hooks' cross-field rules.

    ``inputs`` (slot -> file) and ``model_dir`` are passed to ``hooks.py`` when the
    manifest names one; hooks only run once every single parameter is valid.
    """
    result = ParameterCheck()
    for name in given:
        if name not in manifest.parameters:
            known = ", ".join(manifest.parameters) or "none"
            result.problems.append(
                Problem(f"params.{name}", f"unknown parameter (this model has: {known})")
            )
    for name, spec in manifest.parameters.items():
        loc = f"params.{name}"
        raw = given.get(name)
        if raw is None or (isinstance(raw, str) and raw == "" and spec.type != "string"):
            if spec.required:
                result.problems.append(Problem(loc, "is required"))
                continue
            raw = getattr(spec, "default", None)
        try:
            value = parse_value(spec, raw)
        except ValueError as exc:
            result.problems.append(Problem(loc, str(exc)))
            continue
        errors, warnings = check_rules(spec, value)
        result.problems += [Problem(loc, e) for e in errors]
        result.warnings += [Problem(loc, w) for w in warnings]
        result.values[name] = value
    if result.ok and manifest.hooks is not None and model_dir is not None:
        errors_, warnings_ = run_validate_hook(
            model_dir / manifest.hooks, dict(result.values), dict(inputs or {})
        )
        result.problems += errors_
        result.warnings += warnings_
    return result


def run_validate_hook(
    hooks_file: Path, params: dict[str, Any], inputs: dict[str, Path]
) -> tuple[list[Problem], list[Problem]]:
    """Call ``validate(params, inputs)`` from the model's hooks module.

    The hook returns nothing when all is well, or a list whose items are a message
    (an error), a ``(field, message)`` pair, or ``{"field", "message", "level"}`` with
    level ``error`` or ``warning``; or ``{"errors": [...], "warnings": [...]}``.
    """
    module_spec = importlib.util.spec_from_file_location("simyard_model_hooks", hooks_file)
    if module_spec is None or module_spec.loader is None:
        return [Problem("hooks", f"cannot load {hooks_file.name}")], []
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        validate = getattr(module, "validate", None)
        if validate is None:
            return [], []
        answer = validate(params, inputs)
    except Exception as exc:  # the model owner's code: report it, never crash the caller
        return [Problem("hooks", f"{hooks_file.name} raised {type(exc).__name__}: {exc}")], []
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if isinstance(answer, dict):
        items = [(i, "error") for i in answer.get("errors", [])]
        items += [(i, "warning") for i in answer.get("warnings", [])]
    else:
        items = [(i, "error") for i in answer or []]
    for item, level in items:
        field_, message = "params", str(item)
        if isinstance(item, tuple | list) and len(item) == 2:
            field_, message = _hook_field(str(item[0])), str(item[1])
        elif isinstance(item, dict):
            field_ = _hook_field(str(item.get("field", "params")))
            message = str(item.get("message", ""))
            level = str(item.get("level", level))
        (warnings if level == "warning" else errors).append(Problem(field_, message))
    return errors, warnings


def _hook_field(name: str) -> str:
    if name.startswith(("params", "inputs")):
        return name
    return f"params.{name}"
