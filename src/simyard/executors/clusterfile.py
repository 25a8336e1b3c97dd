"""The cluster file (``SIMYARD_CLUSTER_FILE``): which Dask deploy class to start, and its bounds.

```yaml
class: dask_jobqueue.SLURMCluster
options: {cores: 1, memory: 2GiB, walltime: "02:00:00"}
min_workers: 0
max_workers: 8
idle_timeout: 10m
price_per_worker_hour: 0.05
worker: {cpus: 1, memory: 2GiB, threads: 1}   # optional: what one worker offers
```

A file that does not hold this is refused at start with the key that is wrong. ``worker``
defaults to what ``options`` say where the class has the usual names (``cores``/``memory``
of dask-jobqueue, ``threads_per_worker``/``memory_limit`` of ``LocalCluster``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simyard.errors import SimyardError
from simyard.manifest.units import Duration, Size

EXTRAS = {"dask_jobqueue": "slurm", "dask_kubernetes": "kubernetes", "dask_cloudprovider": "aws"}
CLASS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class WorkerShape(BaseModel):
    """What one worker offers: its cores and memory (Dask resources) and its threads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float = Field(default=1, gt=0)
    memory: Size | None = None
    threads: int = Field(default=1, ge=1)  # attempts one worker runs at once


class ClusterFile(BaseModel):
    """A validated cluster file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_: str = Field(alias="class", pattern=CLASS_PATTERN)
    options: dict[str, Any] = Field(default_factory=dict)
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(ge=1)
    idle_timeout: Duration = 600.0
    price_per_worker_hour: float | None = Field(default=None, ge=0)
    worker: WorkerShape | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ClusterFile:
        if self.min_workers > self.max_workers:
            raise ValueError("min_workers is larger than max_workers")
        return self

    @property
    def is_jobqueue(self) -> bool:
        return self.class_.startswith("dask_jobqueue.")

    @property
    def is_local(self) -> bool:
        return self.class_ in ("distributed.LocalCluster", "distributed.deploy.LocalCluster")

    def shape(self) -> WorkerShape:
        """The worker shape: given, or read from the class's usual options."""
        if self.worker is not None:
            return self.worker
        opts = self.options
        if self.is_local:
            threads = int(opts.get("threads_per_worker") or 1)
            memory = opts.get("memory_limit")
            cpus = float(threads)
        else:
            cpus = float(opts.get("cores") or 1)
            memory = opts.get("memory")
            processes = int(opts.get("processes") or 1)
            threads = max(1, int(cpus) // processes)
        if isinstance(memory, str) and memory.lower() == "auto":
            memory = None
        return WorkerShape(cpus=cpus, memory=memory, threads=threads)

    def cluster_class(self) -> type[Any]:
        """The deploy class, imported; a clear error names the extra to install."""
        module_name, _, name = self.class_.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = EXTRAS.get(module_name.split(".")[0], "dask")
            raise SimyardError(
                f"cluster file: class {self.class_!r} cannot be imported ({exc}); "
                f"install it: pip install 'simyard[{extra}]'"
            ) from None
        found = getattr(module, name, None)
        if not isinstance(found, type):
            raise SimyardError(f"cluster file: class {self.class_!r}: {module_name} has no {name}")
        return found


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(the file)"


def parse_cluster_file(data: Any, source: str = "cluster file") -> ClusterFile:
    """Validate loaded YAML; the error names the key."""
    if not isinstance(data, dict):
        raise SimyardError(f"{source}: expected a mapping of keys (class, options, max_workers...)")
    try:
        return ClusterFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SimyardError(f"{source}: {problems}") from None


def load_cluster_file(path: Path) -> ClusterFile:
    """Read and validate ``SIMYARD_CLUSTER_FILE``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimyardError(f"SIMYARD_CLUSTER_FILE {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimyardError(f"cluster file {path}: not valid YAML: {exc}") from None
    return parse_cluster_file(data, f"cluster file {path}")
