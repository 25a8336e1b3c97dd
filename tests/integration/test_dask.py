"""Runs on a real Dask cluster: end to end, live logs, lost workers and scheduler, cancel."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.daskcluster import DaskCluster
from tests.integration.conftest import Server, _server
from tests.seaweed import Seaweed
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow
NO_SMTP = NotApplicable("no SMTP server in this scenario")
ON_S3 = NotApplicable("an S3 store: an object is whole or absent")
WatchFactory = Callable[..., ProcessWatch]


@pytest.fixture
def cluster(tmp_path: Path, seaweed: Seaweed) -> Iterator[DaskCluster]:
    """Two workers that reach the S3 store (its credentials are in their environment)."""
    root = tmp_path / "dask"
    root.mkdir()
    dask = DaskCluster(root)
    dask.start_scheduler()
    dask.start_worker("w1")
    dask.start_worker("w2")
    dask.wait_for_workers(2)
    yield dask
    dask.stop()


@pytest.fixture
def dask_server(
    tmp_path: Path, cluster: DaskCluster, make_model: MakeModel, seaweed: Seaweed
) -> Iterator[Server]:
    gen = _server(
        tmp_path,
        {
            "SIMYARD_EXECUTOR": "dask://" + cluster.address.removeprefix("tcp://"),
            "SIMYARD_STORAGE_URL": f"s3://{seaweed.bucket}/{tmp_path.name}",
            "SIMYARD_S3_ENDPOINT_URL": seaweed.endpoint_url,
        },
    )
    server = next(gen)
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "forcing.csv").write_text(FORCING)
    yield server
    for _ in gen:
        pass


def start(server: Server, tmp_path: Path, *params: str) -> int:
    args = [a for p in params for a in ("-p", p)]
    done = server.cli("run", "toy", *args, "-i", f"forcing={tmp_path / 'forcing.csv'}", "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


def model_processes(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(root) in (proc.info["cwd"] or "") and ("sim.py" in cmd or "prep.py" in cmd):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_task_running(server: Server, run_id: int, task: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 150  # a worker from zero on a loaded machine
    with server.http() as api:
        while time.monotonic() < deadline:
            run = api.get(f"/runs/{run_id}").json()
            tasks = {t["name"]: t for t in run["tasks"]}
            if tasks[task]["state"] == "running":
                return tasks[task]
            time.sleep(0.05)
    raise AssertionError(f"{task} never ran")


def test_a_run_goes_through_the_cluster_with_live_logs(
    dask_server: Server, cluster: DaskCluster, tmp_path: Path, seaweed: Seaweed
) -> None:
    run_id = start(dask_server, tmp_path, "days=15", "pace=0.1")
    seen: list[str] = []

    def follow() -> None:
        done = dask_server.cli("runs", "logs", str(run_id), "--task", "simulate", "--follow")
        seen.extend(done.stdout.splitlines())

    thread = threading.Thread(target=follow)
    thread.start()
    deadline = time.monotonic() + 120
    with dask_server.http() as api:
        while time.monotonic() < deadline:
            if "day 3 of 15" in api.get(f"/runs/{run_id}/logs/simulate").text:
                assert api.get(f"/runs/{run_id}").json()["state"] == "running"  # live, not after
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no live log line while the task ran")
    thread.join(timeout=120)
    run = dask_server.wait_for_run(run_id)
    assert run["state"] == "succeeded"
    assert run["metrics"] == {"total": 150}
    assert seen[-1] == "day 15 of 15"
    workers = {t["name"]: t for t in run["tasks"]}
    with dask_server.http() as api:
        events = api.get(f"/runs/{run_id}/events").json()
    assert any(e["kind"] == "task.running" for e in events)
    out = tmp_path / "out"
    assert dask_server.cli("runs", "outputs", str(run_id), "-o", out).returncode == 0
    assert json.loads((out / "simulate" / "results" / "summary.json").read_text())["total"] == 150
    assert workers["simulate"]["exit_code"] == 0
    listed = seaweed.client().list_objects_v2(Bucket=seaweed.bucket, Prefix=tmp_path.name + "/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith("/outputs/results/summary.json") for k in keys), keys  # in S3


@pytest.mark.chaos
def test_a_killed_worker_costs_an_attempt_not_the_run(
    dask_server: Server, cluster: DaskCluster, tmp_path: Path, process_watch: WatchFactory
) -> None:
    watch = process_watch(cluster.root, dask_server.work_root)
    run_id = start(dask_server, tmp_path, "days=40", "pace=0.1")
    wait_task_running(dask_server, run_id, "simulate")
    time.sleep(1.0)
    with dask_server.http() as api:
        worker = {t["name"]: t for t in api.get(f"/runs/{run_id}").json()["tasks"]}["simulate"]
    victim = next(n for n in cluster.workers if n in str(cluster.root / n) and
                  model_processes(cluster.root / n))  # fmt: skip
    cluster.kill(cluster.workers[victim])
    deadline = time.monotonic() + 30
    while model_processes(cluster.root / victim) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model_processes(cluster.root / victim) == [], "a model process outlived its worker"
    run = dask_server.wait_for_run(run_id, timeout=180)
    assert run["state"] == "succeeded", run
    simulate = {t["name"]: t for t in run["tasks"]}["simulate"]
    assert simulate["attempt"] == 2
    assert worker["attempt"] == 1
    outputs = [o["path"] for o in run["outputs"]]
    assert len(outputs) == len(set(outputs)), "duplicated outputs"
    # As a nanny would: a worker started again in the dead one's folder, which Dask then
    # removes (docs/scale-out.md) with the killed attempt's working folder in it.
    cluster.workers[victim].wait()
    cluster.start_worker(victim)
    cluster.wait_for_workers(2)
    assert_clean_outcome(dask_server, [run_id], watch, kills=True, states={run_id: "succeeded"},
                         outputs=toy_outputs, smtp=NO_SMTP, store_root=ON_S3)  # fmt: skip


@pytest.mark.chaos
def test_cancel_reaches_the_remote_process_tree(
    dask_server: Server, cluster: DaskCluster, tmp_path: Path, process_watch: WatchFactory
) -> None:
    watch = process_watch(cluster.root, dask_server.work_root)
    run_id = start(dask_server, tmp_path, "days=100", "pace=0.5")
    wait_task_running(dask_server, run_id, "simulate")
    deadline = time.monotonic() + 30
    while not (running := model_processes(cluster.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running
    assert dask_server.cli("runs", "cancel", str(run_id)).returncode == 0
    run = dask_server.wait_for_run(run_id, timeout=60)
    assert run["state"] == "cancelled"
    deadline = time.monotonic() + 20
    while model_processes(cluster.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model_processes(cluster.root) == []
    assert_clean_outcome(
        dask_server, [run_id], watch, kills=False, states={run_id: "cancelled"}, smtp=NO_SMTP,
        outputs=NotApplicable("a cancelled run keeps no output"), store_root=ON_S3,
    )  # fmt: skip


@pytest.mark.chaos
def test_a_killed_scheduler_restarted_lets_every_run_finish(
    dask_server: Server, cluster: DaskCluster, tmp_path: Path, process_watch: WatchFactory
) -> None:
    watch = process_watch(cluster.root, dask_server.work_root)
    ids = [start(dask_server, tmp_path, "days=20", "pace=0.1") for _ in range(2)]
    wait_task_running(dask_server, ids[0], "simulate")
    cluster.kill(cluster.scheduler)
    time.sleep(1)
    cluster.start_scheduler()
    # Workers stop when their scheduler goes; a deployment (nanny, Kubernetes, Slurm) starts
    # new ones, as this does.
    cluster.start_worker("w3")
    cluster.start_worker("w4")
    cluster.wait_for_workers(2, timeout=90)
    for run_id in ids:
        run = dask_server.wait_for_run(run_id, timeout=240)
        assert run["state"] in ("succeeded", "failed"), run
        assert run["state"] == "succeeded", run.get("error")
    assert_clean_outcome(
        dask_server, ids, watch, kills=True, states=dict.fromkeys(ids, "succeeded"),
        outputs=toy_outputs, smtp=NO_SMTP, store_root=ON_S3,
    )  # fmt: skip


UNSAT = """\
simyard: 1
name: greedy
version: "1"
tasks:
  run:
    command: [python3, -c, "print(1)"]
    resources: {cpus: 16}
"""


def test_a_task_no_worker_can_run_is_reported_not_left_queued(
    dask_server: Server, make_model: MakeModel
) -> None:
    assert dask_server.cli("models", "add", make_model(UNSAT)).returncode == 0
    done = dask_server.cli("run", "greedy", "--wait", "--json", timeout=60)
    run = json.loads(done.stdout)
    assert run["state"] == "failed"
    assert "no worker can ever run this task: it needs cpus=16" in run["error"]["summary"]


@pytest.mark.parametrize("example", ["lake-heat", "river-sediment"])
def test_the_example_models_run_on_the_cluster(dask_server: Server, example: str) -> None:
    from tests.conftest import EXAMPLES

    assert dask_server.cli("models", "add", EXAMPLES / example).returncode == 0
    done = dask_server.cli("run", example, "--wait", "--json", timeout=240)
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded", run["error"]
    assert run["outputs"]
