"""The wake-up of followers: a change of a kind wakes those waiting for that kind, at once."""

from __future__ import annotations

import asyncio
import threading
import time

from simyard.dispatch.changes import MIN_SPACING, Change, Changes
from tests.conftest import run_apart


def waited(
    changes: Changes, kinds: tuple[Change, ...], timeout: float, act: Change | None
) -> float:
    """Seconds a wait for ``kinds`` took while ``act`` (if any) changed 50 ms in, from
    another thread."""

    async def wait() -> float:
        seen = changes.seen()
        if act is not None:
            threading.Timer(0.05, changes.changed, [act]).start()
        began = time.monotonic()
        await changes.wait(seen, timeout, *kinds)
        return time.monotonic() - began

    return run_apart(wait)


def test_a_change_wakes_a_waiter_of_its_kind_from_another_thread() -> None:
    changes = Changes()
    assert waited(changes, (Change.recorded,), 60.0, Change.recorded) < 30
    assert waited(changes, (Change.logged, Change.recorded), 60.0, Change.logged) < 30


def test_a_change_of_another_kind_wakes_nobody() -> None:
    changes = Changes()
    assert waited(changes, (Change.recorded,), 0.5, Change.logged) >= 0.5


def test_a_change_made_since_it_was_seen_returns_at_once_but_spaced() -> None:
    changes = Changes()
    seen = changes.seen()
    changes.changed(Change.recorded)
    began = time.monotonic()
    run_apart(lambda: changes.wait(seen, 60.0, Change.recorded))
    took = time.monotonic() - began
    assert took < 30
    assert time.monotonic() - seen.at >= MIN_SPACING  # reads at most once per spacing


def test_a_wait_that_timed_out_leaves_no_waiter_behind() -> None:
    changes = Changes()
    for _ in range(3):
        assert waited(changes, (Change.recorded, Change.logged), 0.05, None) >= 0.05
    assert all(not waiting for waiting in changes._waiting.values())


def test_a_waiter_whose_loop_closed_does_not_break_the_next_change() -> None:
    changes = Changes()
    loop = asyncio.new_event_loop()
    changes._waiting[Change.recorded].add(loop.create_future())  # its stream was cut short
    loop.close()
    changes.changed(Change.recorded)  # the dispatcher goes on to hand its orders over
    assert waited(changes, (Change.recorded,), 60.0, Change.recorded) < 30
