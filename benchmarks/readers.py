"""Twenty clients reading while runs execute: API latency and dispatch throughput.

Issue 13 item 8: with 20 clients reading lists, runs and logs while runs execute, the
API answers p99 ≤ 200 ms and dispatch throughput stays within 10 % of an idle API.
Measured on one server: the throughput of ``THROUGHPUT_RUNS`` trivial runs with no
reader, then again with ``READERS`` threads each looping over ``GET /runs``,
``GET /runs/{id}`` and ``GET /runs/{id}/logs/<task>`` of runs they saw, timing every
answer. Twice: as clients, each pausing about ``PAUSE_SECONDS`` (0.5 to 1.5 times it, so
they are not in step) after each round (a browser's pages poll every 3 s; these poll
three times as often), which the bars are read against; each starts at a random moment
of its first pause, and answers are timed once every one has begun and the runs are
being submitted (twenty clients arriving in the same millisecond before any run exists
are not the steady load the bar describes). Then flat out, with no pause (a load
generator: 20 threads asking as fast as answers come, on the two cores the server and
its models share), shown for scale.
"""

from __future__ import annotations

import random
import threading
import time

import httpx

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, bar_row, table
from benchmarks.submit import (
    MODEL,
    MODEL_FILES,
    TASK,
    Throughput,
    server_throughput,
    submit,
    wait_final,
)

READERS = 20
PAUSE_SECONDS = 1.0
API_P99_BAR = 0.200
THROUGHPUT_SHARE_BAR = 0.90


def _read_loop(
    bench: Bench,
    stop: threading.Event,
    timings: dict[str, list[float]],
    lock: threading.Lock,
    pause: float,
    measuring: threading.Event,
) -> None:
    """One client: the runs list, a run, its log, over and over, each answer timed once
    ``measuring`` is set (the runs execute)."""
    server = bench.server()
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {server.token}"}) as api:  # fmt: skip
        seen: list[int] = []
        stop.wait(pause * random.uniform(0, 1))  # clients that poll come in at any moment
        while not stop.is_set():
            paths = [("list", "/runs?limit=50")]
            if seen:
                run_id = seen[int(time.monotonic() * 1000) % len(seen)]
                paths += [("run", f"/runs/{run_id}"), ("log", f"/runs/{run_id}/logs/{TASK}")]
            for what, path in paths:
                started = time.perf_counter()
                try:
                    answer = api.get(path)
                except httpx.HTTPError as exc:  # counted and shown: a reader never stops
                    bench.note(f"readers: GET {what} failed: {type(exc).__name__}")
                    continue
                took = time.perf_counter() - started
                if measuring.is_set():
                    with lock:
                        timings[what].append(took)
                if answer.status_code >= 400:
                    bench.note(f"readers: GET {what} answered {answer.status_code}")
                elif what == "list":
                    seen = [run["id"] for run in answer.json()][:20]
            stop.wait(pause * random.uniform(0.5, 1.5))  # out of step, as real clients are


def run(bench: Bench) -> None:
    bench.model(MODEL, MODEL_FILES)
    with bench.server().api() as api:  # warm-up: the model unpacked, the first imports done
        run_id = submit(bench, api)
        if run_id is not None:
            wait_final(api, run_id)
    idle = server_throughput(bench)
    paced, paced_api = _with_readers(bench, PAUSE_SECONDS)
    flat, flat_api = _with_readers(bench, 0.0)
    # The clients' CPU is this process's (the readers' threads and the submitters'): on the
    # two cores the server and its models share, it is part of what the readers cost.
    rows = [
        ["idle API", f"{idle.per_second:.1f} runs/s", "", "", idle.cpu_ms_per_run()],
        [f"{READERS} clients, each pausing {PAUSE_SECONDS:g} s", f"{paced.per_second:.1f} runs/s",
         f"{paced.per_second / idle.per_second:.0%} of idle", f"{paced_api.p99 * 1000:.0f} ms",
         paced.cpu_ms_per_run()],
        [f"{READERS} threads reading flat out", f"{flat.per_second:.1f} runs/s",
         f"{flat.per_second / idle.per_second:.0%} of idle", f"{flat_api.p99 * 1000:.0f} ms",
         flat.cpu_ms_per_run()],
    ]  # fmt: skip
    columns = ["API", "throughput", "share", "API p99", "CPU ms per run"]
    bench.console.print(table("dispatch throughput", columns, rows))
    show(bench, idle, paced, paced_api)


def _with_readers(bench: Bench, pause: float) -> tuple[Throughput, Latency]:
    """The runs' throughput with ``READERS`` reading threads, and the latency they saw."""
    stop = threading.Event()
    lock = threading.Lock()
    timings: dict[str, list[float]] = {"list": [], "run": [], "log": []}
    measuring = threading.Event()
    args = (bench, stop, timings, lock, pause, measuring)
    readers = [threading.Thread(target=_read_loop, args=args, daemon=True) for _ in range(READERS)]
    for reader in readers:
        reader.start()
    time.sleep(pause)  # every client has begun: the runs meet the readers' steady load
    measuring.set()
    try:
        busy = server_throughput(bench)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    every = [t for found in timings.values() for t in found]
    rows = [[f"GET {what}", *Latency.of(found).row()] for what, found in timings.items()]
    rows.append(["every answer", *Latency.of(every).row()])
    how = f"each pausing {pause:g} s after a round" if pause else "flat out, no pause"
    title = f"the API under {READERS} reading clients ({how}), while runs execute"
    bench.console.print(table(title, ["request", *LATENCY_COLUMNS], rows))
    return busy, Latency.of(every)


def show(bench: Bench, idle: Throughput, busy: Throughput, api: Latency) -> None:
    """The bars, read against the paced clients."""
    bars = [
        bar_row("API p99 ≤ 200 ms", f"{api.p99 * 1000:.1f}", api.p99, API_P99_BAR, at_most=True),
        bar_row("throughput ≥ 90 % of idle", f"{busy.per_second / idle.per_second:.0%}",
                busy.per_second / idle.per_second, THROUGHPUT_SHARE_BAR, at_most=False),
    ]  # fmt: skip
    bench.console.print(table("bars", BAR_COLUMNS, bars))
