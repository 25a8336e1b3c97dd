"""The physical floor: starting and reaping a process on this machine, without simyard.

Every simyard run starts at least one process, so no submit latency can beat these
figures; the ``submit`` scenario shows its own next to them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.context import Bench
from benchmarks.figures import LATENCY_COLUMNS, Latency, table
from simyard.engine.sandbox import bwrap_argv, find_bwrap

DEFAULT_RUNS = 100


@dataclass(frozen=True)
class Floor:
    python: Latency
    true: Latency
    sandboxed_python: Latency | None  # under bubblewrap as simyard sandboxes a model


def time_process(argv: list[str], count: int) -> list[float]:
    """Seconds from start to exit of ``argv``, run ``count`` times one after the other
    (what it prints is dropped, as a run's output goes to its log, not to a terminal)."""
    durations = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        durations.append(time.perf_counter() - start)
    return durations


def measure(bench: Bench) -> Floor:
    """The floor figures, measured once per session."""
    if "floor" not in bench.shared:
        count = bench.samples(DEFAULT_RUNS)
        with bench.console.status(f"floor: {count} runs of python -c pass, /bin/true ..."):
            python = Latency.of(time_process([sys.executable, "-c", "pass"], count))
            true = Latency.of(time_process(["/bin/true"], count))
            sandboxed = None
            bwrap = find_bwrap()
            if bwrap is not None:
                with tempfile.TemporaryDirectory(dir=bench.root) as workdir:
                    argv = bwrap_argv(
                        bwrap, [sys.executable, "-c", "pass"], workdir=Path(workdir), network=False
                    )
                    sandboxed = Latency.of(time_process(argv, count))
        bench.shared["floor"] = Floor(python, true, sandboxed)
    floor: Floor = bench.shared["floor"]
    return floor


def run(bench: Bench) -> None:
    floor = measure(bench)
    rows = [
        [f"{Path(sys.executable).name} -c pass", *floor.python.row()],
        ["/bin/true", *floor.true.row()],
    ]
    if floor.sandboxed_python is not None:
        rows.append(
            ["python -c pass in bwrap (as simyard sandboxes)", *floor.sandboxed_python.row()]
        )
    bench.console.print(
        table("floor: subprocess.run start → exit, sequential", ["program", *LATENCY_COLUMNS], rows)
    )
