"""Check everything a run is given (parameters and input files) before anything runs.

One function serves the CLI, the API and the web form, so they refuse the same things
with the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simyard.errors import ParameterFileError, Problem, ValidationFailed
from simyard.manifest.inputs import DEFAULT_MAX_UNPACKED_SIZE, check_inputs
from simyard.manifest.paramfile import render_parameter_file
from simyard.manifest.params import validate_parameters
from simyard.manifest.schema import Manifest


@dataclass
class RunInput:
    """Validated, typed parameters (defaults applied) and the input files of one run."""

    params: dict[str, Any]
    inputs: dict[str, Path]
    warnings: list[Problem] = field(default_factory=list)
    parameter_file: bytes | None = None  # rendered once here; stored with the run


def validate_run_input(
    manifest: Manifest,
    model_dir: Path,
    params: Mapping[str, Any],
    inputs: Mapping[str, Path],
    *,
    filenames: Mapping[str, str] | None = None,
    max_input_size: int,
    max_unpacked_size: int = DEFAULT_MAX_UNPACKED_SIZE,
    file_problems: list[Problem] | None = None,
) -> RunInput:
    """Check parameters and input files together; raise ValidationFailed listing every problem.

    The hooks' cross-field rules run only when every single value and file is fine, so
    a hook never sees a half-valid run. ``file_problems`` are the files' own problems when
    the caller checked them already (a sweep checks its shared files once, not per run).
    """
    if file_problems is None:
        file_problems = check_inputs(
            manifest,
            dict(inputs),
            filenames=filenames,
            default_max_size=max_input_size,
            max_unpacked_size=max_unpacked_size,
        )
    checked = validate_parameters(
        manifest,
        params,
        inputs=inputs if not file_problems else None,
        model_dir=model_dir if not file_problems else None,
    )
    problems = checked.problems + file_problems
    rendered: bytes | None = None
    if not problems and manifest.parameter_file is not None:
        # Rendered once, now: a value the file format cannot hold is refused before the
        # run, and the file is stored with it (the worker writes it, compare diffs it).
        try:
            rendered = render_parameter_file(
                manifest, checked.values, model_dir, inputs=inputs, filenames=filenames
            )
        except ParameterFileError as exc:
            problems.append(Problem("parameter_file", str(exc)))
    if problems:
        raise ValidationFailed(problems, checked.warnings)
    return RunInput(checked.values, dict(inputs), checked.warnings, rendered)
