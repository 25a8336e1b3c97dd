"""Submit latency, end-to-end overhead and throughput of trivial runs through a real server.

A trivial model prints its wall-clock time when it starts and again as its last line;
the client compares them with its own clock around ``POST /api/v1/runs`` and the moment
it is told the run succeeded: following the run's events (``GET …/events/follow``, the
way to be told at once), and for scale polling ``GET /runs/{id}`` every 5 ms. The run's
own timestamps split the time into stages.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import floor
from benchmarks.context import Bench
from benchmarks.figures import (
    BAR_COLUMNS,
    LATENCY_COLUMNS,
    Latency,
    bar_row,
    latency_bar,
    table,
)
from benchmarks.server import BenchServer

DEFAULT_RUNS = 50
THROUGHPUT_RUNS = 100
SUBMITTERS = 8
BARE_CONCURRENCY = 2  # the server's SIMYARD_MAX_PARALLEL
SPARE_SLOTS = 3  # for scale: one slot more than the runs' concurrency
POLL_SECONDS = 0.005
POLLED_RUNS = 20  # for scale: runs seen by polling, besides those followed
END_POLL_SECONDS = 0.25  # the throughput scenario's look for runs left
RUN_TIMEOUT = 60.0
OVERHEAD_BAR = 0.060  # SPEC.md: end-to-end overhead p50, local executor
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}

MODEL = "bench-stamp"
TASK = "stamp"
STAMP_SCRIPT = """\
import time
print("start", repr(time.time()), flush=True)
print("end", repr(time.time()), flush=True)
"""
MODEL_FILES = {
    "simyard.yaml": f"""\
simyard: 1
name: {MODEL}
version: "1"
title: Benchmark model that prints its start and end time
tasks:
  {TASK}:
    command: [python3, stamp.py]
""",
    "stamp.py": STAMP_SCRIPT,
}


@dataclass(frozen=True)
class Sample:
    """One trivial run seen from the client, with the model's and the server's timestamps."""

    submitted: float  # client clock, just before POST
    answered: float  # POST returned
    seen_done: float  # the client saw ``succeeded``
    model_start: float  # printed by the model
    model_end: float
    run: dict[str, Any]  # the final GET /runs/{id}

    @property
    def to_started(self) -> float:
        return self.model_start - self.submitted

    @property
    def overhead(self) -> float:
        return (self.seen_done - self.submitted) - (self.model_end - self.model_start)

    def stages(self) -> dict[str, float]:
        """Seconds spent in each stage, from the client's, the server's and the model's clocks."""
        task = self.run["tasks"][0]
        created = timestamp(self.run["created_at"])
        claimed = timestamp(task["started_at"])
        task_done = timestamp(task["finished_at"])
        run_done = timestamp(self.run["finished_at"])
        return {
            "POST /runs answered": self.answered - self.submitted,
            "created → task claimed by the dispatcher": claimed - created,
            "claimed → model printed its start": self.model_start - claimed,
            "model's last line → task recorded finished": task_done - self.model_end,
            "task finished → run finished": run_done - task_done,
            "run finished → client told (following its events)": self.seen_done - run_done,
        }


def timestamp(text: str) -> float:
    """An API timestamp as seconds since the epoch (a naive one is UTC)."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def model_times(log: str) -> tuple[float, float]:
    """The start and end times the stamp model printed."""
    found = {}
    for line in log.splitlines():
        word, _, value = line.partition(" ")
        if word in ("start", "end"):
            found[word] = float(value)
    return found["start"], found["end"]


def submit(bench: Bench, api: httpx.Client) -> int | None:
    """POST one trivial run; its id, or None (noted) when the server refused it."""
    response = api.post("/runs", json={"model": MODEL, "params": {}})
    if response.status_code != 201:
        bench.note(f"POST /runs answered {response.status_code}: {response.text[:300]}")
        return None
    return int(response.json()["id"])


def wait_final(api: httpx.Client, run_id: int) -> dict[str, Any] | None:
    """Poll the run every 5 ms until it is final; None after a minute."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        response = api.get(f"/runs/{run_id}")
        if response.status_code == 200:
            run: dict[str, Any] = response.json()
            if run["state"] in FINAL:
                return run
        time.sleep(POLL_SECONDS)
    return None


def follow_final(api: httpx.Client, run_id: int) -> tuple[float, dict[str, Any] | None]:
    """Follow the run's events until its final one: when that came, and then the run
    (None if the stream ended without it, or after a minute)."""
    try:
        with api.stream("GET", f"/runs/{run_id}/events/follow", timeout=RUN_TIMEOUT) as events:
            ended = events.status_code == 200 and any(
                line.startswith("event: run.") and line.removeprefix("event: run.") in FINAL
                for line in events.iter_lines()
            )
            told = time.time()
    except httpx.TimeoutException:  # a minute without an event: noted as not ended
        return time.time(), None
    answer = api.get(f"/runs/{run_id}")
    return told, answer.json() if ended and answer.status_code == 200 else None


def one_sample(bench: Bench, api: httpx.Client, *, poll: bool = False) -> Sample | None:
    """A trivial run, told of its end by following its events (``poll``: by polling)."""
    submitted = time.time()
    run_id = submit(bench, api)
    answered = time.time()
    if run_id is None:
        return None
    if poll:
        run = wait_final(api, run_id)
        seen_done = time.time()
    else:  # the clock stops when the final event comes; the run is read after that
        seen_done, run = follow_final(api, run_id)
    if run is None:
        bench.note(f"run {run_id} of the trivial model did not end within {RUN_TIMEOUT:.0f} s")
        return None
    if run["state"] != "succeeded":
        bench.note(f"run {run_id} of the trivial model ended {run['state']}: {run['error']}")
        return None
    log = api.get(f"/runs/{run_id}/logs/{TASK}")
    try:
        start, end = model_times(log.text)
    except (KeyError, ValueError):
        bench.note(f"run {run_id}: log {log.status_code} without start/end lines: {log.text!r}")
        return None
    return Sample(submitted, answered, seen_done, start, end, run)


def latency_samples(bench: Bench, count: int, *, poll: bool = False) -> list[Sample]:
    """``count`` trivial runs one after the other, each followed (``poll``: polled)."""
    samples = []
    how = "polled" if poll else "followed"
    with bench.server().api() as api:
        one_sample(bench, api)  # warm-up: the first run unpacks the model into the cache
        with bench.console.status(f"submit: {count} trivial runs, one after the other, {how} ..."):
            for _ in range(count):
                sample = one_sample(bench, api, poll=poll)
                if sample is not None:
                    samples.append(sample)
    return samples


@dataclass(frozen=True)
class CpuSeconds:
    """CPU seconds (user + system) spent by the server itself and by the processes below it."""

    server: float
    below: float  # the forkserver, the attempt processes, the sandboxes and the models

    @classmethod
    def of_tree(cls, pid: int) -> CpuSeconds:
        """Now, for the process ``pid``: reaped children count where their parent reaped them."""
        root = psutil.Process(pid)
        own = root.cpu_times()
        below = own.children_user + own.children_system
        for child in root.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue  # ended meanwhile: counted by its parent once reaped
            below += times.user + times.system + times.children_user + times.children_system
        return cls(own.user + own.system, below)

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.server - other.server, self.below - other.below)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def cores_busy(before: tuple[float, float] | None) -> float | None:
    """How many of the machine's cores were busy, on average, since ``before``."""
    after = machine_cpu()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Throughput:
    runs: int
    succeeded: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds by where they were spent
    busy: float | None = None  # the machine's cores busy meanwhile, on average

    def cpu_ms_per_run(self) -> str:
        parts = [f"{where} {1000 * s / self.runs:.0f}" for where, s in self.cpu.items()]
        return ", ".join(parts)

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds


def server_throughput(bench: Bench, server: BenchServer | None = None) -> Throughput:
    """Submit ``THROUGHPUT_RUNS`` runs from ``SUBMITTERS`` threads to ``server`` (the
    session's by default), wait until none is left."""
    server = server or bench.server()
    limits = httpx.Limits(max_connections=SUBMITTERS + 1)
    with httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=60,
        limits=limits,
    ) as api:
        start, cpu_before = time.time(), CpuSeconds.of_tree(server.pid)
        client_before, machine_before = time.process_time(), machine_cpu()
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            ids = [i for i in pool.map(lambda _: submit(bench, api), range(THROUGHPUT_RUNS)) if i]
        deadline = time.monotonic() + 300
        # Runs only go queued -> running -> final, so asking for queued first cannot miss one.
        # Asked now and then only: the end is the last run's recorded end, not when the
        # client saw it, and asking 100 times a second cost the server 11 ms per run.
        while time.monotonic() < deadline and any(
            api.get("/runs", params={"state": state, "limit": 1}).json()
            for state in ("queued", "running")
        ):
            time.sleep(END_POLL_SECONDS)
        else:
            if time.monotonic() >= deadline:
                bench.note("throughput: runs were still queued or running after 300 s")
        cpu = CpuSeconds.of_tree(server.pid) - cpu_before
        client, busy = time.process_time() - client_before, cores_busy(machine_before)
        listed = api.get("/runs", params={"limit": 500}).json()
        runs = {run["id"]: run for run in listed}
        for run_id in set(ids) - set(runs):  # older than the newest 500
            runs[run_id] = api.get(f"/runs/{run_id}").json()
        states = {run_id: run["state"] for run_id, run in runs.items()}
        ends = [timestamp(runs[i]["finished_at"]) for i in ids if runs[i].get("finished_at")]
        seconds = (max(ends) if ends else time.time()) - start
    succeeded = sum(states.get(i) == "succeeded" for i in ids)
    if succeeded < THROUGHPUT_RUNS:
        others = sorted({states.get(i, "missing") for i in ids} - {"succeeded"})
        bench.note(
            f"throughput: {THROUGHPUT_RUNS - succeeded} of {THROUGHPUT_RUNS} runs did not succeed "
            f"({', '.join(others) or 'refused'})"
        )
    spent = {"server": cpu.server, "executor and models": cpu.below, "clients": client}
    return Throughput(THROUGHPUT_RUNS, succeeded, seconds, spent, busy)


def bare_throughput(argv: list[str]) -> Throughput:
    """``argv`` in a plain subprocess loop, ``BARE_CONCURRENCY`` at a time."""

    def once(_: int) -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    start, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before = machine_cpu()
    with ThreadPoolExecutor(BARE_CONCURRENCY) as pool:
        list(pool.map(once, range(THROUGHPUT_RUNS)))
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), cores_busy(machine_before)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    seconds = time.time() - start
    return Throughput(THROUGHPUT_RUNS, THROUGHPUT_RUNS, seconds, {"programs": spent}, busy)


def run(bench: Bench) -> None:
    floor_figures = floor.measure(bench)
    bench.model(MODEL, MODEL_FILES)
    samples = latency_samples(bench, bench.samples(DEFAULT_RUNS))
    polled = latency_samples(bench, min(POLLED_RUNS, bench.samples(DEFAULT_RUNS)), poll=True)
    if not samples:
        bench.console.print("[red]submit: no trivial run succeeded; nothing to report[/red]")
        return
    started = Latency.of([s.to_started for s in samples])
    script = bench.root / "stamp.py"
    script.write_text(STAMP_SCRIPT)
    with bench.console.status("submit: the same program run bare, one after the other ..."):
        bare_own = Latency.of(floor.time_process([sys.executable, str(script)], len(samples)))
    added = show_latency(bench, samples, polled, started, floor_figures, bare_own)
    with bench.console.status(f"throughput: {THROUGHPUT_RUNS} runs from {SUBMITTERS} threads ..."):
        served = server_throughput(bench)
    with bench.console.status(f"throughput: a server with {SPARE_SLOTS} slots ..."):
        spare = spare_slot_throughput(bench)
    with bench.console.status(f"throughput: bare loops at concurrency {BARE_CONCURRENCY} ..."):
        bare = bare_throughput([sys.executable, str(script)])
        bare_true = bare_throughput(["/bin/true"])
    show_throughput(bench, served, spare, bare, bare_true)
    rate = served.per_second
    bench.shared["throughput_per_s"] = rate  # the sweep scenario compares with it
    share = rate / bare.per_second
    bars = [
        *started_bars(started, floor_figures),
        latency_bar("overhead p50 ≤ 60 ms (against the program run bare)", added, OVERHEAD_BAR),
        bar_row("throughput ≥ 50 % of the bare loop", f"{share:.0%}", share, 0.5, at_most=False),
    ]
    bench.console.print(table("submit and throughput against SPEC.md's quality bars",
                              BAR_COLUMNS, bars))  # fmt: skip


def started_bars(started: Latency, floor_figures: floor.Floor) -> list[list[str]]:
    """submit → started: p50 within the program's own start in the sandbox + 25 ms (when
    bubblewrap is there to measure that), p99 within 250 ms."""
    rows = [latency_bar("submit → started p99 ≤ 250 ms", started.p99, 0.250)]
    sandboxed = floor_figures.sandboxed_python
    if sandboxed is not None:
        limit = sandboxed.p50 + 0.025
        bar = f"submit → started p50 ≤ python in bwrap + 25 ms = {limit * 1000:.0f} ms"
        rows.insert(0, latency_bar(bar, started.p50, limit))
    return rows


def show_latency(
    bench: Bench,
    samples: list[Sample],
    polled: list[Sample],
    started: Latency,
    floor_figures: floor.Floor,
    bare_own: Latency,
) -> float:
    """Print the latency figures; the overhead as the bar reads it: submit → seen
    succeeded (following the run's events), p50, minus the same program's p50 run bare,
    start to exit. ``polled``: runs seen by polling every 5 ms, for scale."""
    overhead = Latency.of([s.overhead for s in samples])
    own = Latency.of([s.model_end - s.model_start for s in samples])
    end_to_end = Latency.of([s.seen_done - s.submitted for s in samples])
    rows = [
        ["submit → model process started (its first line)", *started.row()],
        ["submit → seen succeeded, minus the model's first → last line", *overhead.row()],
        ["model's own time (its first line → its last line)", *own.row()],
        ["submit → seen succeeded", *end_to_end.row()],
        *(
            [
                [
                    f"for scale: submit → seen succeeded, polling every {POLL_SECONDS * 1000:g} ms",
                    *Latency.of([s.seen_done - s.submitted for s in polled]).row(),
                ]
            ]
            if polled
            else []
        ),
        ["the same program run bare, start → exit", *bare_own.row()],
        ["floor: python -c pass, start → exit", *floor_figures.python.row()],
        ["floor: /bin/true, start → exit", *floor_figures.true.row()],
    ]
    if floor_figures.sandboxed_python is not None:
        rows.append(["floor: python -c pass in bwrap", *floor_figures.sandboxed_python.row()])
    bench.console.print(
        table(
            "submit: trivial runs one after the other (local executor, SIMYARD_MAX_PARALLEL=2; "
            "the client follows each run's events)",
            ["figure", *LATENCY_COLUMNS],
            rows,
        )
    )
    # The model's own time is the program's, start to exit, run bare: what it takes by
    # hand. The first → last line reading above counts its interpreter's start and exit
    # (30 ms and more for Python) as simyard's. Issue 13 read its bar this way: "today
    # 150-185 ms" is its table's simyard p50s (182-214 ms) minus the bare loop's 28.7 ms.
    added = end_to_end.p50 - bare_own.p50
    bench.console.print(
        f"end-to-end overhead: submit → seen succeeded, p50, minus the program's own p50 "
        f"run bare: {added * 1000:.1f} ms"
    )
    stages: dict[str, list[float]] = {}
    for sample in samples:
        for name, seconds in sample.stages().items():
            stages.setdefault(name, []).append(seconds)
    bench.console.print(
        table(
            "submit: where the time goes (run and task timestamps from the API)",
            ["stage", *LATENCY_COLUMNS],
            [[name, *Latency.of(values).row()] for name, values in stages.items()],
        )
    )
    return added


def spare_slot_throughput(bench: Bench) -> Throughput | None:
    """The same runs on a second server with ``SPARE_SLOTS`` slots: a slot is free the
    moment one ends, as if the next order were always handed over ahead. What that would
    give, against the two slots' figure, is what idle slots cost; the rest is CPU."""
    server = BenchServer(bench.root / "home-spare-slot", max_parallel=SPARE_SLOTS)
    try:
        server.start()
        server.add_model(bench.root / "models" / MODEL)
        with server.api() as api:  # warm-up: the model unpacked, the first imports done
            run_id = submit(bench, api)
            if run_id is not None:
                wait_final(api, run_id)
        return server_throughput(bench, server)
    except (OSError, RuntimeError, httpx.HTTPError) as exc:
        bench.note(f"throughput with {SPARE_SLOTS} slots: not measured ({exc})")
        return None
    finally:
        server.stop()


def show_throughput(
    bench: Bench,
    served: Throughput,
    spare: Throughput | None,
    bare: Throughput,
    true: Throughput,
) -> None:
    rows = [
        (f"simyard ({SUBMITTERS} submitting threads, local executor, 2 slots)", served),
        *(
            [(f"for scale: simyard with {SPARE_SLOTS} slots (a slot free when one ends)", spare)]
            if spare is not None
            else []
        ),
        (f"bare subprocess loop, same program, concurrency {BARE_CONCURRENCY}", bare),
        (f"for scale: bare loop of /bin/true, concurrency {BARE_CONCURRENCY}", true),
    ]
    bench.console.print(
        table(
            f"throughput: {THROUGHPUT_RUNS} trivial runs started at once, until all ended",
            ["how", "runs", "succeeded", "seconds", "runs/s", "CPU ms per run", "cores busy"],
            [
                [
                    how,
                    str(t.runs),
                    str(t.succeeded),
                    f"{t.seconds:.2f}",
                    f"{t.per_second:.1f}",
                    t.cpu_ms_per_run(),
                    "" if t.busy is None else f"{t.busy:.2f}",
                ]
                for how, t in rows
            ],
        )
    )
