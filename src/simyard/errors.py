"""The one exception tree of simyard.

::

    SimyardError
    ├── Refusal                final: the same request would be refused again; never retried
    │   ├── ManifestError      the manifest (simyard.yaml) is invalid; carries every Problem
    │   ├── ValidationFailed   parameters or input files refused; carries every Problem
    │   ├── UnsafeArchive      an archive tries to escape, link out or explode
    │   ├── ParameterFileError a parameter file cannot be written or read back
    │   └── TaskRefused        the engine will not start a task as it is written
    │                          (a placeholder without a value, stored parameters invalid)
    └── InfrastructureFault    retryable: the platform failed, not the request
        ├── EngineError        the engine could not prepare or start a task run
        └── LeaseLost          this server no longer holds the dispatch lease (fencing)

Retry policy asks :func:`retryable`, never the message: only infrastructure faults (and
errors of no known kind, which are taken for faults) are tried again.
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


class Refusal(SimyardError):
    """Final: trying the same thing again cannot succeed (the request, not the platform)."""

    failure_kind = "invalid_input"  # how a task run refused so is shown (FailureKind value)


class InfrastructureFault(SimyardError):
    """Retryable: the platform failed (a worker, storage, the database), not the request."""


def retryable(exc: BaseException) -> bool:
    """Whether trying again may succeed: everything but a Refusal."""
    return not isinstance(exc, Refusal)


class _ProblemsError(Refusal):
    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(_ProblemsError):
    """The manifest is invalid; ``problems`` lists every problem found."""


class ValidationFailed(_ProblemsError):
    """Parameters or input files were refused; nothing was run."""


class UnsafeArchive(Refusal):
    """An uploaded archive would write outside its folder, link out, or is too large."""


class ParameterFileError(Refusal):
    """A parameter file could not be rendered, or an existing one could not be read back."""


class TaskRefused(Refusal):
    """The engine will not start the task as written; another attempt would fail the same."""


class EngineError(InfrastructureFault):
    """The engine failed for reasons outside the model (staging, sandbox, storage)."""


class LeaseLost(InfrastructureFault):
    """This server's dispatch lease ended (or another server took it): it must not write."""
