"""The one task-graph module: order, readiness (start, wait, skip) and rerun reuse."""

from __future__ import annotations

from simyard import taskgraph
from simyard.domain.states import TaskRunState
from simyard.errors import (
    EngineError,
    InfrastructureFault,
    LeaseLost,
    ManifestError,
    Refusal,
    TaskRefused,
    UnsafeArchive,
    ValidationFailed,
    retryable,
)
from simyard.taskgraph import Readiness, Standing

DIAMOND = {"report": ["left", "right"], "left": ["prep"], "right": ["prep"], "prep": []}


def test_order_puts_every_task_after_the_tasks_it_needs() -> None:
    order = taskgraph.task_order(DIAMOND)
    assert order == ["prep", "left", "right", "report"]


def test_ancestors_are_transitive_in_graph_order() -> None:
    assert taskgraph.ancestors(DIAMOND, "report") == ["prep", "left", "right"]
    assert taskgraph.ancestors(DIAMOND, "prep") == []


def test_a_task_starts_when_all_it_needs_ended_well_and_skips_after_a_bad_end() -> None:
    assert taskgraph.readiness([]) is Readiness.start
    assert taskgraph.readiness([Standing.ok, Standing.ok]) is Readiness.start
    assert taskgraph.readiness([Standing.ok, Standing.open]) is Readiness.wait
    assert taskgraph.readiness([Standing.open, Standing.bad]) is Readiness.skip


def test_rerun_reuses_only_tasks_whose_whole_upstream_ended_well() -> None:
    standing = {"prep": Standing.ok, "left": Standing.bad, "right": Standing.ok,
                "report": Standing.ok}  # fmt: skip
    assert taskgraph.reusable(DIAMOND, standing) == {"prep", "right"}


def test_task_run_states_map_onto_standings() -> None:
    assert TaskRunState.cached.standing is Standing.ok
    assert TaskRunState.skipped.standing is Standing.bad
    assert TaskRunState.queued.standing is Standing.open


def test_refusals_and_faults_are_different_classes_and_only_faults_are_retried() -> None:
    for refusal in (ManifestError([]), ValidationFailed([]), UnsafeArchive("x"), TaskRefused("x")):
        assert isinstance(refusal, Refusal)
        assert not retryable(refusal)
    for fault in (EngineError("x"), LeaseLost("x")):
        assert isinstance(fault, InfrastructureFault)
        assert retryable(fault)
