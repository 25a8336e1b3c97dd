"""The elastic executor on a real Slurm cluster through dask_jobqueue.SLURMCluster.

Worker jobs appear in ``squeue`` for queued work and are gone after the idle timeout;
``scancel`` of a worker job costs an attempt, not the run; a server killed with
``kill -9`` leaves no job behind once it is back.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.slurmcluster import SlurmCluster, available
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="needs slurm-wlm and munge"),
]

CLUSTER = """\
class: dask_jobqueue.SLURMCluster
options:
  cores: 1
  memory: 1GiB
  processes: 1
  queue: debug
  walltime: "00:10:00"
  log_directory: "{root}/jobs"
  local_directory: "{root}/work"
  worker_extra_args: [--host, 127.0.0.1]
max_workers: 2
idle_timeout: 3s
"""


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[SlurmCluster]:
    root = tmp_path / "slurm"
    root.mkdir()
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def elastic(tmp_path: Path, slurm: SlurmCluster, make_model: MakeModel) -> Iterator[Server]:
    (tmp_path / "cluster.yaml").write_text(CLUSTER.format(root=tmp_path / "dask"))
    gen = _server(tmp_path, {"SIMYARD_EXECUTOR": "dask-cluster", **slurm.env,
                             "SIMYARD_CLUSTER_FILE": str(tmp_path / "cluster.yaml")})  # fmt: skip
    server = next(gen)
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "forcing.csv").write_text(FORCING)
    yield server
    for _ in gen:
        pass


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def explain(server: Server, slurm: SlurmCluster, tmp_path: Path) -> str:
    """What a failure message shows: Slurm's nodes and jobs, its daemons' and the worker
    jobs' logs, the server's log."""
    daemons = [slurm.root / "slurmctld.log", slurm.root / "slurmd.log"]
    logs = [*daemons, *sorted((tmp_path / "dask" / "jobs").glob("*")), server.home / "server.log"]
    parts = [slurm.run("sinfo", "-N", "-l").stdout, slurm.run("squeue", "-l").stdout]
    parts += [f"--- {log}\n{tail(log)}" for log in logs if log.is_file()]
    return "\n".join(parts)


def wait_for(
    check: Callable[[], object], timeout: float, what: str, why: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}\n{why()}")


def start(server: Server, tmp_path: Path, *params: str) -> int:
    args = [a for p in params for a in ("-p", p)]
    done = server.cli("run", "toy", *args, "-i", f"forcing={tmp_path / 'forcing.csv'}", "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


NO_SMTP = NotApplicable("no SMTP server in this scenario")
WatchFactory = Callable[..., ProcessWatch]


def running_task(server: Server, run_id: int, task: str) -> dict | None:  # type: ignore[type-arg]
    with server.http() as api:
        tasks = {t["name"]: t for t in api.get(f"/runs/{run_id}").json()["tasks"]}
    return tasks[task] if tasks[task]["state"] == "running" else None


@pytest.mark.chaos
def test_worker_jobs_follow_the_queue_and_a_cancelled_job_costs_an_attempt(
    elastic: Server, slurm: SlurmCluster, tmp_path: Path, process_watch: WatchFactory
) -> None:
    watch = process_watch(tmp_path / "dask", elastic.work_root)
    assert slurm.jobs() == []  # nothing queued: no worker job
    t0 = time.monotonic()
    done = elastic.cli("sweep", "toy", "-p", "days=2,3,4", "-p", "pace=0.1",
                       "-i", f"forcing={tmp_path / 'forcing.csv'}", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    sweep = json.loads(done.stdout)
    with elastic.http() as api:
        runs = api.get(f"/sweeps/{sweep['id']}").json()["runs"]
    why = functools.partial(explain, elastic, slurm, tmp_path)
    said = set()
    with elastic.http() as api:  # a worker job takes seconds to start: the runs say which
        waiting = [r["id"] for r in runs]
        deadline = time.monotonic() + 150
        while waiting:
            assert time.monotonic() < deadline, f"runs {waiting} still queued\n{why()}"
            seen = [api.get(f"/runs/{run_id}").json() for run_id in waiting]
            said |= {run["waiting"] for run in seen}
            waiting = [run["id"] for run in seen if run["state"] == "queued"]
    pending = r"starting a worker \(Slurm jobs? \d+(, \d+)* pending\)"
    assert any(re.fullmatch(pending, s or "") for s in said), said
    wait_for(slurm.jobs, 60, "no worker job appeared in squeue", why)
    assert len(slurm.jobs()) <= 2  # max_workers
    for run in runs:
        assert elastic.wait_for_run(run["id"], timeout=180)["state"] == "succeeded"
    print(f"sweep of 3 from zero workers: {time.monotonic() - t0:.1f} s")

    run_id = start(elastic, tmp_path, "days=60", "pace=0.1")
    wait_for(lambda: running_task(elastic, run_id, "simulate"), 150, "simulate never ran", why)
    time.sleep(1)  # it is well under way on its worker
    jobs = [job for job, state in slurm.jobs() if state == "RUNNING"]
    assert jobs
    assert slurm.run("scancel", *jobs).returncode == 0
    run = elastic.wait_for_run(run_id, timeout=180)
    assert run["state"] == "succeeded", run.get("error")
    assert {t["name"]: t for t in run["tasks"]}["simulate"]["attempt"] == 2
    wait_for(lambda: slurm.jobs() == [], 60, "worker jobs still queued after the idle timeout")
    ids = [*(r["id"] for r in runs), run_id]
    assert_clean_outcome(elastic, ids, watch, kills=True, states=dict.fromkeys(ids, "succeeded"),
                         outputs=toy_outputs, smtp=NO_SMTP)  # fmt: skip


@pytest.mark.chaos
def test_a_killed_server_leaves_no_slurm_job_once_it_is_back(
    elastic: Server, slurm: SlurmCluster, tmp_path: Path, process_watch: WatchFactory
) -> None:
    watch = process_watch(tmp_path / "dask", elastic.work_root)
    why = functools.partial(explain, elastic, slurm, tmp_path)
    run_id = start(elastic, tmp_path, "days=60", "pace=0.1")
    wait_for(lambda: running_task(elastic, run_id, "simulate"), 150, "simulate never ran", why)
    before = {job for job, _ in slurm.jobs()}
    assert before
    elastic.stop(signal.SIGKILL)
    elastic.start()
    wait_for(lambda: not before & {job for job, _ in slurm.jobs()}, 30,
             "a worker job of the killed server is still in squeue")  # fmt: skip
    run = elastic.wait_for_run(run_id, timeout=180)
    assert run["state"] == "succeeded", run.get("error")
    wait_for(lambda: slurm.jobs() == [], 60, "worker jobs still queued after the idle timeout")
    assert_clean_outcome(elastic, [run_id], watch, kills=True, states={run_id: "succeeded"},
                         outputs=toy_outputs, smtp=NO_SMTP)  # fmt: skip
