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

A file that does not hold this is refused at start with the key that is wrong: an
``options`` key is checked against the deploy class's constructor, and the constructors its
``**kwargs`` go to, without starting anything (:func:`option_names`). ``worker`` defaults to
what ``options`` say where the class has the usual names (``cores``/``memory`` of
dask-jobqueue, ``threads_per_worker``/``memory_limit`` of ``LocalCluster``,
``worker_cpu``/``worker_mem`` of dask-cloudprovider's ECS and Fargate).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
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
    def is_operator(self) -> bool:
        return self.class_.startswith("dask_kubernetes.operator")

    @property
    def is_ecs(self) -> bool:
        return self.class_.startswith("dask_cloudprovider.aws.")

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
        elif self.is_ecs and "worker_cpu" in opts:  # vCPU in 1/1024, memory in MiB
            try:
                cpus = float(opts["worker_cpu"]) / 1024
                memory = int(opts["worker_mem"]) * 2**20 if opts.get("worker_mem") else None
                threads = int(opts.get("worker_nthreads") or max(1, int(cpus)))
            except (TypeError, ValueError):
                raise SimyardError(
                    "cluster file: options.worker_cpu, worker_mem and worker_nthreads "
                    "take numbers (1/1024 vCPU, MiB, threads)"
                ) from None
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
            package = module_name.split(".")[0]
            near = difflib.get_close_matches(package, EXTRAS, n=1)
            guess = near[0] if package not in EXTRAS and near else package
            hint = f"did you mean {guess}? " if guess != package else ""
            raise SimyardError(
                f"cluster file: class {self.class_!r} cannot be imported ({exc}); {hint}"
                f"install it: pip install 'simyard[{EXTRAS.get(guess, 'dask')}]'"
            ) from None
        found = getattr(module, name, None)
        if not isinstance(found, type):
            classes = [n for n, v in vars(module).items() if isinstance(v, type)]
            near = difflib.get_close_matches(name, classes, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SimyardError(
                f"cluster file: class {self.class_!r}: {module_name} has no {name}{hint}"
            )
        return found

    def deploy_class(self) -> type[Any]:
        """The deploy class, imported, with every key of ``options`` checked against it."""
        cls = self.cluster_class()
        check_options(cls, self.options, self.class_)
        return cls


def _qualname(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _job_class(cls: type[Any]) -> list[type[Any]]:
    job_cls = getattr(cls, "job_cls", None)
    return [job_cls] if isinstance(job_cls, type) else []


def _worker_classes(cls: type[Any]) -> list[type[Any]]:
    from distributed import Nanny, Worker

    return [Nanny, Worker]  # LocalCluster's worker_class: Nanny with processes, else Worker


def _worker_class(cls: type[Any]) -> list[type[Any]]:
    from distributed import Worker

    return [Worker]


def _server_class(cls: type[Any]) -> list[type[Any]]:
    from distributed.core import Server

    return [Server]


# Where a constructor's **kwargs go when not to the next class of its MRO: dask-jobqueue's
# clusters hand them to their job class, LocalCluster to its workers (Nanny, then Worker),
# Worker to its Server.
KWARGS_GO_TO: dict[str, Callable[[type[Any]], list[type[Any]]]] = {
    "dask_jobqueue.core.JobQueueCluster": _job_class,
    "distributed.deploy.local.LocalCluster": _worker_classes,
    "distributed.nanny.Nanny": _worker_class,
    "distributed.worker.Worker": _server_class,
}


def option_names(cls: type[Any]) -> frozenset[str] | None:
    """The keyword arguments ``cls(...)`` takes, following its ``**kwargs`` to where they go.

    Read from the constructors' signatures only: nothing is started, nothing reached. None
    when a ``**kwargs`` leads somewhere unknown (any key may then be right).
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:  # super().__init__(**kwargs) reaching object takes nothing
            return frozenset(names)
        try:
            params = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return None
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names.update(p.name for p in params[1:] if p.kind in kinds)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return frozenset(names)
        redirect = KWARGS_GO_TO.get(_qualname(klass))
        if redirect is not None:
            targets = redirect(cls)
            for target in targets:
                more = option_names(target)
                if more is None:
                    return None
                names.update(more)
            return frozenset(names) if targets else None
    return frozenset(names)


def check_options(cls: type[Any], options: dict[str, Any], class_name: str) -> None:
    """Refuse an ``options`` key that ``cls`` does not take, naming it (and a near name)."""
    accepted = option_names(cls)
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            near = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SimyardError(
                f"cluster file: options.{key}: {class_name} takes no option {key!r}{hint}"
            )


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
