"""Runs and sweeps as Python objects: what ``simyard.Client`` gives a notebook or a script.

    import simyard
    client = simyard.Client.from_login()          # what `simyard login` stored
    run = client.run("lake-heat", params={"days": 90}, inputs={"forcing": "f.csv"}, wait=True)
    run.state, run.metrics["max_surface_temp"], run.logs("simulate")
    run.download("results/")                       # the paths written

Each object holds the server's answer, typed by the API's own shapes (simyard.schemas),
and reads it again on ``refresh()`` / ``wait()``.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Self

from simyard.schemas import OutputOut, RunOut, SweepOut, TaskOut

if TYPE_CHECKING:
    from simyard.client import Client

FINAL = ("succeeded", "failed", "cancelled", "timed_out")


class TimedOut(TimeoutError):
    """``wait(timeout=...)`` ran out before the run or sweep ended."""


class _Watched:
    """What a run and a sweep share: the server's answer, read again by ``refresh``,
    waited for by ``wait`` until ``done``."""

    kind = ""

    def __init__(self, client: Client, data: Any) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> int:
        return int(self.data.id)

    @property
    def state(self) -> str:
        return str(self.data.state)

    @property
    def done(self) -> bool:
        raise NotImplementedError

    def refresh(self) -> Self:
        """Read it again from the server."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> Self:
        """Wait until it has ended (TimedOut after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimedOut(f"{self.kind} {self.id} is still {self.state} after {timeout} s")
            time.sleep(poll)
        return self


class Run(_Watched):
    """One run on the server."""

    kind = "run"
    data: RunOut

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.data.model} {self.data.version} {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in FINAL

    @property
    def params(self) -> dict[str, Any]:
        return self.data.params

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data.metrics or {}

    @property
    def tasks(self) -> list[TaskOut]:
        return self.data.tasks

    @property
    def error(self) -> str | None:
        """The failure summary in words, when the run failed."""
        return self.data.error.summary if self.data.error else None

    def refresh(self) -> Self:
        self.data = RunOut.model_validate(self.client.get_run(self.id))
        return self

    def cancel(self) -> Run:
        """Ask the server to stop the run."""
        self.data = RunOut.model_validate(self.client.cancel(self.id))
        return self

    def logs(self, task: str) -> str:
        """The whole log of ``task`` so far (the live one while it runs)."""
        chunks: list[bytes] = []
        offset = 0
        while True:
            data, offset = self.client.log(self.id, task, offset)
            if not data:
                return b"".join(chunks).decode("utf-8", "replace")
            chunks.append(data)

    def outputs(self) -> list[OutputOut]:
        """Every output file: task, path, size, sha256."""
        return [OutputOut.model_validate(o) for o in self.client.outputs(self.id)]

    def download(self, folder: str | Path) -> list[Path]:
        """Download every output to ``folder/<task>/<path>``; the paths written."""
        root = Path(folder)
        written = []
        for output in self.outputs():
            target = root / _safe_relative(output.task) / _safe_relative(output.path)
            self.client.download_output(self.id, output.task, output.path, target)
            written.append(target)
        return written


class Sweep(_Watched):
    """One sweep on the server, with its runs; its state is ``running`` until every run
    has ended, then ``finished``."""

    kind = "sweep"
    data: SweepOut

    def __repr__(self) -> str:
        return f"<Sweep {self.id} {self.data.model} {self.state} {self.data.counts}>"

    @property
    def done(self) -> bool:
        return self.state == "finished"

    @property
    def runs(self) -> list[Run]:
        return [Run(self.client, run) for run in self.data.runs]

    def refresh(self) -> Self:
        self.data = SweepOut.model_validate(self.client.get_sweep(self.id))
        return self

    def records(self) -> list[dict[str, Any]]:
        """One row per run: id, state, every parameter and every metric."""
        return [
            {"run": run.id, "state": run.state, **run.params, **(run.metrics or {})}
            for run in self.data.runs
        ]

    def to_dataframe(self) -> Any:
        """:meth:`records` as a pandas DataFrame (``pip install 'simyard[pandas]'``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe needs pandas: pip install 'simyard[pandas]'") from None
        return pd.DataFrame.from_records(self.records()).set_index("run")


def _safe_relative(path: str) -> PurePosixPath:
    """``path`` as given by the server, refused if it would leave the download folder."""
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"the server named an output path outside the folder: {path!r}")
    return relative
