"""The scaler's decisions: wanted workers from the queue, and which workers to retire."""

from __future__ import annotations

from simyard.executors.clusterfile import WorkerShape
from simyard.executors.scaling import (
    Demand,
    Work,
    WorkerState,
    reconcile,
    unsatisfiable,
    waiting_reason,
    wanted_workers,
)

ONE = WorkerShape(cpus=1, threads=1)
FOUR = WorkerShape(cpus=4, memory=8 * 2**30, threads=4)


def test_no_work_wants_no_workers() -> None:
    assert wanted_workers(Demand(), ONE, max_workers=8) == 0


def test_min_workers_are_kept_without_work() -> None:
    assert wanted_workers(Demand(), ONE, min_workers=2, max_workers=8) == 2


def test_one_worker_per_task_of_a_one_slot_shape_up_to_max_workers() -> None:
    demand = Demand(tuple(Work(user_id=1) for _ in range(5)))
    assert wanted_workers(demand, ONE, max_workers=8) == 5
    assert wanted_workers(demand, ONE, max_workers=3) == 3


def test_tasks_are_packed_by_cpus_memory_and_threads() -> None:
    small = [Work(user_id=1, cpus=1) for _ in range(6)]  # 4 per worker by threads
    assert wanted_workers(Demand(tuple(small)), FOUR, max_workers=8) == 2
    big = [Work(user_id=1, cpus=3) for _ in range(3)]  # one per worker by cpus
    assert wanted_workers(Demand(tuple(big)), FOUR, max_workers=8) == 3
    fat = [Work(user_id=1, cpus=1, memory=5 * 2**30) for _ in range(2)]  # by memory
    assert wanted_workers(Demand(tuple(fat)), FOUR, max_workers=8) == 2


def test_queued_work_beyond_a_users_quota_wants_no_worker() -> None:
    work = [Work(user_id=1, running=True), *(Work(user_id=1) for _ in range(4)), Work(user_id=2)]
    demand = Demand(tuple(work), quotas={1: 2})
    assert wanted_workers(demand, ONE, max_workers=8) == 3  # user 1: 1 running + 1; user 2: 1


def test_work_no_worker_can_run_wants_no_worker() -> None:
    demand = Demand((Work(user_id=1, cpus=16),))
    assert wanted_workers(demand, FOUR, max_workers=8) == 0
    assert unsatisfiable(16, None, FOUR) == "resources.cpus=16: a worker of this cluster has 4"
    assert "resources.memory" in (unsatisfiable(1, 2**40, FOUR) or "")
    assert unsatisfiable(4, 2**30, FOUR) is None


def test_missing_workers_are_started() -> None:
    workers = [WorkerState("w0", connected=True, busy=True)]
    assert reconcile(3, workers, idle_timeout=60).start == 2


def test_idle_workers_retire_only_after_the_idle_timeout() -> None:
    workers = [WorkerState("w0", connected=True, idle_for=30),
               WorkerState("w1", connected=True, idle_for=90)]  # fmt: skip
    assert reconcile(0, workers, idle_timeout=60).retire == ("w1",)


def test_a_busy_worker_is_never_retired() -> None:
    workers = [WorkerState("w0", connected=True, busy=True, idle_for=1e9)]
    plan = reconcile(0, workers, idle_timeout=0)
    assert plan.retire == ()
    assert plan.start == 0


def test_pending_workers_are_retired_before_connected_ones() -> None:
    workers = [WorkerState("w0", connected=True, idle_for=500),
               WorkerState("w1", connected=False, idle_for=100)]  # fmt: skip
    assert reconcile(1, workers, idle_timeout=60).retire == ("w1",)


def test_workers_wanted_are_kept_even_when_idle() -> None:
    workers = [WorkerState(f"w{i}", connected=True, idle_for=999) for i in range(3)]
    assert len(reconcile(2, workers, idle_timeout=60).retire) == 1


def test_waiting_names_the_pending_batch_job() -> None:
    pending = [WorkerState("w0", connected=False, job_id="123")]
    assert waiting_reason(pending, 1, "Slurm job") == "starting a worker (Slurm job 123 pending)"
    assert waiting_reason([WorkerState("w0", connected=True)], 1) is None
    two = [WorkerState("w0", connected=False, job_id="12"),
           WorkerState("w1", connected=False, job_id="9")]  # fmt: skip
    assert waiting_reason(two, 2, "Slurm job") == "starting a worker (Slurm jobs 9, 12 pending)"
