"""Elastic compute: submit → model started when the cluster is at zero and when it is warm.

Starts a single-node Slurm cluster (``tests/slurmcluster.py``) and a server with
``SIMYARD_EXECUTOR=dask-cluster`` on ``dask_jobqueue.SLURMCluster``. A cold sample waits
until the cluster is back at zero workers, so its run needs a worker job (sbatch, the
job's start, the worker joining); warm samples follow one another on the running worker.
"""

from __future__ import annotations

import json
import time

from benchmarks import submit
from benchmarks.context import Bench
from benchmarks.dask_s3 import figures
from benchmarks.figures import LATENCY_COLUMNS, table
from benchmarks.server import BenchServer

COLD_RUNS = 3
WARM_RUNS = 10
IDLE_TIMEOUT = 3  # seconds: short, so a cold sample does not wait long for zero

CLUSTER = """\
class: dask_jobqueue.SLURMCluster
options:
  cores: 1
  memory: 1GiB
  processes: 1
  queue: debug
  walltime: "00:30:00"
  log_directory: "{root}/jobs"
  local_directory: "{root}/work"
  worker_extra_args: [--host, 127.0.0.1]
max_workers: 1
idle_timeout: {idle}s
"""


def _workers(server: BenchServer) -> int:
    try:
        state = json.loads((server.home / "cluster" / "workers.json").read_text())
    except (OSError, ValueError):
        return 0
    return len(state.get("workers", []))


def _wait_for_zero(server: BenchServer, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _workers(server) == 0:
            return True
        time.sleep(0.2)
    return False


def run(bench: Bench) -> None:
    from tests.slurmcluster import SlurmCluster, available

    if not available():
        bench.note("cluster: slurm-wlm and munge are not installed; skipped")
        return
    root = bench.root / "slurm"
    root.mkdir(parents=True, exist_ok=True)
    slurm = SlurmCluster(root)
    server = BenchServer(bench.root / "home-cluster")
    (bench.root / "cluster.yaml").write_text(
        CLUSTER.format(root=bench.root / "cluster-dask", idle=IDLE_TIMEOUT)
    )
    server.env |= {"SIMYARD_EXECUTOR": "dask-cluster", **slurm.env,
                   "SIMYARD_CLUSTER_FILE": str(bench.root / "cluster.yaml")}  # fmt: skip
    cold: list[submit.Sample] = []
    warm: list[submit.Sample] = []
    try:
        with bench.console.status("cluster: starting Slurm (munged, slurmctld, slurmd) ..."):
            slurm.start()
        server.start()
        folder = bench.root / "models-cluster" / submit.MODEL
        for rel, text in submit.MODEL_FILES.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        server.add_model(folder)
        with server.api(timeout=120) as api:
            for i in range(bench.samples(COLD_RUNS)):
                with bench.console.status(f"cluster: cold start {i + 1} (waiting for zero) ..."):
                    if not _wait_for_zero(server):
                        bench.note("cluster: the workers did not go back to zero")
                        break
                    sample = submit.one_sample(bench, api)
                if sample is not None:
                    cold.append(sample)
            with bench.console.status("cluster: warm runs ..."):
                submit.one_sample(bench, api)  # the worker is up again
                for _ in range(bench.samples(WARM_RUNS)):
                    sample = submit.one_sample(bench, api)
                    if sample is not None:
                        warm.append(sample)
    finally:
        server.stop()
        for line in server.log_problems()[:20]:
            bench.note(f"cluster server log: {line.strip()}")
        slurm.stop()
    rows = []
    for label, samples in (("cold (Slurm job from zero)", cold), ("warm", warm)):
        if samples:
            started, overhead = figures(samples)
            rows += [[f"{label}: submit → model process started", *started.row()],
                     [f"{label}: end-to-end overhead", *overhead.row()]]  # fmt: skip
    bench.console.print(
        table(
            "cluster: dask_jobqueue.SLURMCluster on a single-node Slurm, max_workers 1, "
            f"idle_timeout {IDLE_TIMEOUT}s",
            ["figure", *LATENCY_COLUMNS],
            rows,
        )
    )
