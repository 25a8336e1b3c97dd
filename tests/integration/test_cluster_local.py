"""The elastic executor on a distributed.LocalCluster: from zero workers to some and back."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.integration.test_web_pages import browser
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow

CLUSTER = """\
class: distributed.LocalCluster
options: {{threads_per_worker: 1, local_directory: "{root}"}}
max_workers: 2
idle_timeout: 2s
price_per_worker_hour: 0.5
"""


@pytest.fixture
def elastic(tmp_path: Path, make_model: MakeModel) -> Iterator[Server]:
    (tmp_path / "cluster.yaml").write_text(CLUSTER.format(root=tmp_path / "dask"))
    gen = _server(tmp_path, {"SIMYARD_EXECUTOR": "dask-cluster",
                             "SIMYARD_CLUSTER_FILE": str(tmp_path / "cluster.yaml")})  # fmt: skip
    server = next(gen)
    assert server.cli("models", "add", make_model(MODEL, FILES)).returncode == 0
    (tmp_path / "forcing.csv").write_text(FORCING)
    yield server
    for _ in gen:
        pass


def slots(server: Server) -> int:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(r"^simyard_executor_slots (\S+)$", text, re.M)
    assert found, text
    return int(float(found.group(1)))


def start(server: Server, tmp_path: Path, *params: str) -> int:
    args = [a for p in params for a in ("-p", p)]
    done = server.cli("run", "toy", *args, "-i", f"forcing={tmp_path / 'forcing.csv'}", "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["id"])


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(what)


def worker_pids(server: Server) -> list[int]:
    state = json.loads((server.home / "cluster" / "workers.json").read_text())
    return [int(pid) for pid, _ in state["pids"]]


def test_workers_follow_the_queue_from_zero_and_back(elastic: Server, tmp_path: Path) -> None:
    assert slots(elastic) == 0  # nothing queued: no worker
    # Runs long enough that the second worker (seconds to start) finds work left.
    ids = [start(elastic, tmp_path, "days=30", "pace=0.15")]
    said = set()
    with elastic.http() as api:  # the first worker takes seconds to start: the run says so
        while (run := api.get(f"/runs/{ids[0]}").json())["state"] == "queued":
            said.add(run["waiting"])
    assert "starting a worker" in said, said
    ids += [start(elastic, tmp_path, "days=30", "pace=0.15") for _ in range(2)]
    seen = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and seen < 2:
        seen = max(seen, slots(elastic))
        time.sleep(0.2)
    assert seen == 2  # max_workers, one thread each
    for run_id in ids:
        run = elastic.wait_for_run(run_id, timeout=180)
        assert run["state"] == "succeeded", run.get("error")
        assert run["metrics"] == {"total": 300}
        assert run["waiting"] is None
        assert run["worker_seconds"] > 4.5  # 30 days at 0.15 s in simulate alone
        # measured, not reserved: a model that mostly sleeps uses a fraction of its time
        assert 0 < run["cpu_seconds"] < run["worker_seconds"] / 2
    with elastic.http() as api:
        usage = api.get("/usage", params={"by": "user"}).json()
    (row,) = usage["rows"]
    assert (row["key"], row["task_runs"]) == ("admin", 9)
    assert row["cost"] == pytest.approx(row["worker_seconds"] / 3600 * 0.5, abs=1e-6)
    with browser(elastic) as client:
        page = client.get("/admin/usage", params={"by": "run", "period": "day"})
    assert page.status_code == 200
    assert f'href="/runs/{ids[0]}"' in page.text
    assert "Cost at 0.5 per worker-hour" in page.text
    wait_for(lambda: slots(elastic) == 0, 60, "idle workers did not retire")
    wait_for(lambda: worker_pids(elastic) == [], 30, "worker processes left")


GREEDY = """\
simyard: 1
name: greedy
version: "1"
tasks:
  run:
    command: [python3, -c, "print(1)"]
    resources: {cpus: 16}
"""


def test_a_task_no_worker_can_ever_run_is_refused_at_submission(
    elastic: Server, make_model: MakeModel
) -> None:
    assert elastic.cli("models", "add", make_model(GREEDY, {})).returncode == 0
    with elastic.http() as api:
        answer = api.post("/runs", json={"model": "greedy"})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["field"] == "tasks.run.resources"
    assert "resources.cpus=16: a worker of this cluster has 1" in error["message"]
    with elastic.http() as api:  # the usage API refuses what it cannot read, naming it
        late = api.get("/usage", params={"since": "9999-12-31T23:59:59-05:00"})
        assert late.status_code == 422, late.text
        assert late.json()["errors"][0]["field"] == "since"
        assert api.get("/usage", params={"by": "planet"}).status_code == 422
        assert api.get("/usage", params={"until": "2026-01-01T00:00:00Z"}).json()["rows"] == []


@pytest.mark.chaos
def test_a_killed_server_leaves_no_worker_once_it_is_back(
    elastic: Server, tmp_path: Path, process_watch: Callable[..., ProcessWatch]
) -> None:
    watch = process_watch(tmp_path / "dask", elastic.work_root)
    run_id = start(elastic, tmp_path, "days=40", "pace=0.1")
    wait_for(lambda: worker_pids(elastic) != [], 120, "no worker started")
    pids = worker_pids(elastic)
    elastic.stop(signal_kill())
    elastic.start()
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 30,
             "a worker of the killed server is still running")  # fmt: skip
    run = elastic.wait_for_run(run_id, timeout=240)
    assert run["state"] == "succeeded", run.get("error")
    simulate = {t["name"]: t for t in run["tasks"]}["simulate"]
    assert simulate["attempt"] >= 1
    assert_clean_outcome(
        elastic, [run_id], watch, kills=True, states={run_id: "succeeded"}, outputs=toy_outputs,
        smtp=NotApplicable("no SMTP server in this scenario"),
    )  # fmt: skip


def signal_kill() -> int:
    import signal

    return signal.SIGKILL
