"""The task-graph rules, in one place: order by ``needs``, when a task may start, reuse.

Pure functions over names and ``needs`` lists. The manifest, the dispatcher, the
local test runner (``simyard models test``) and rerun-from-failed all ask these, so
they cannot disagree. Each caller maps its own states onto a :class:`Standing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

Needs = Mapping[str, Sequence[str]]


class Standing(StrEnum):
    """What a task's state means to the tasks that need it."""

    ok = "ok"  # ended well (succeeded, cached): dependents may start
    bad = "bad"  # ended otherwise (failed, timed out, cancelled, skipped): dependents skip
    open = "open"  # not ended yet: dependents wait


class Readiness(StrEnum):
    """What a task that has not started should do now."""

    wait = "wait"
    start = "start"
    skip = "skip"


def task_order(needs: Needs) -> list[str]:
    """Names in an order where every task comes after the tasks it needs.

    Ties keep the declared order; on a cycle (the manifest check reports it) the rest
    keeps the declared order too.
    """
    order: list[str] = []
    done: set[str] = set()
    remaining = {name: list(deps) for name, deps in needs.items()}
    while remaining:
        ready = [n for n, deps in remaining.items() if all(d in done for d in deps)]
        if not ready:
            order.extend(remaining)
            break
        for name in ready:
            order.append(name)
            done.add(name)
            del remaining[name]
    return order


def ancestors(needs: Needs, task: str) -> list[str]:
    """Every task ``task`` needs, transitively, in graph order (the nearest last)."""
    found: set[str] = set()
    stack = list(needs[task])
    while stack:
        current = stack.pop()
        if current not in found and current in needs:
            found.add(current)
            stack.extend(needs[current])
    return [name for name in task_order(needs) if name in found]


def readiness(upstream: Iterable[Standing]) -> Readiness:
    """A waiting task skips once a task it needs ended badly, starts once all ended well."""
    standings = list(upstream)
    if any(s is Standing.bad for s in standings):
        return Readiness.skip
    if all(s is Standing.ok for s in standings):
        return Readiness.start
    return Readiness.wait


def reusable(needs: Needs, standing: Mapping[str, Standing]) -> set[str]:
    """Tasks a rerun from the failed part may reuse: ended well, as did all they need."""
    reuse: set[str] = set()
    for name in task_order(needs):
        if standing.get(name) is Standing.ok and all(n in reuse for n in needs[name]):
            reuse.add(name)
    return reuse
