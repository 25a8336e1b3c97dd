"""The one exception tree of simyard.

::

    SimyardError
    ├── ManifestError          the manifest (simyard.yaml) is invalid; carries every Problem
    ├── ValidationFailed       parameters or input files refused; carries every Problem
    ├── UnsafeArchive          an archive tries to escape, link out or explode
    ├── ParameterFileError     a parameter file cannot be written or read back
    └── EngineError            the engine could not prepare or start a task run
                               (infrastructure, not the model's fault)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user-supplied data, with where it is.

    ``field`` is a dotted location such as ``tasks.simulate.needs[0]`` or
    ``params.days``; ``file`` names the file the location is in, when there is one.
    """

    field: str
    message: str
    file: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.file else self.field
        return f"{where}: {self.message}" if where else self.message


class SimyardError(Exception):
    """Root of every error simyard raises on purpose."""


class _ProblemsError(SimyardError):
    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(_ProblemsError):
    """The manifest is invalid; ``problems`` lists every problem found."""


class ValidationFailed(_ProblemsError):
    """Parameters or input files were refused; nothing was run."""


class UnsafeArchive(SimyardError):
    """An uploaded archive would write outside its folder, link out, or is too large."""


class ParameterFileError(SimyardError):
    """A parameter file could not be rendered, or an existing one could not be read back."""


class EngineError(SimyardError):
    """The engine failed for reasons outside the model (staging, sandbox, storage)."""
