"""Concurrent writers on the embedded database: many clients creating and cancelling runs.

Each of ``--runs`` (default 50) clients creates a trivial run and cancels it, several
times, all at once, against a real server on SQLite (no per-user run rate limit). The
figures: latency of creates and cancels, answers by status (a 503 with Retry-After is
the server saying it is full, a 5xx other than that is a failure), dropped connections,
and what the server log says ("database is locked", tracebacks).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, table
from benchmarks.server import BenchServer

DEFAULT_WRITERS = 50
ROUNDS = 3
CREATE_P99_BAR = 2.0  # issue 18: p99 of creates under 2 s at 50 concurrent writers on SQLite
MODEL_FILES = {
    "simyard.yaml": """\
simyard: 1
name: bench-writers
version: "1"
title: Benchmark model that does almost nothing
tasks:
  run:
    command: [python3, -c, "print('ok')"]
""",
}


@dataclass
class Tally:
    creates: list[float] = field(default_factory=list)
    cancels: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str, answer: httpx.Response) -> None:
        with self.lock:
            self.statuses[f"{what} {answer.status_code}"] += 1


def writer(server: BenchServer, rounds: int, tally: Tally, start: threading.Barrier) -> None:
    with server.api(timeout=180) as api:
        start.wait()
        for _ in range(rounds):
            began = time.monotonic()
            try:
                created = api.post("/runs", json={"model": "bench-writers"})
            except httpx.HTTPError:
                tally.dropped += 1
                continue
            took = time.monotonic() - began
            tally.count("create", created)
            if created.status_code != 201:
                if created.status_code == 503:
                    time.sleep(float(created.headers.get("retry-after", "1")))
                continue
            tally.creates.append(took)
            began = time.monotonic()
            try:
                cancelled = api.post(f"/runs/{created.json()['id']}/cancel")
            except httpx.HTTPError:
                tally.dropped += 1
                continue
            tally.count("cancel", cancelled)
            if cancelled.status_code == 200:
                tally.cancels.append(time.monotonic() - began)


def measure(server: BenchServer, writers: int, rounds: int = ROUNDS) -> tuple[Tally, str]:
    """Run the load against ``server``; the tally and the part of its log written meanwhile."""
    offset = server.log_path.stat().st_size if server.log_path.exists() else 0
    tally = Tally()
    start = threading.Barrier(writers)
    with ThreadPoolExecutor(writers) as pool:
        for future in [pool.submit(writer, server, rounds, tally, start) for _ in range(writers)]:
            future.result()
    with open(server.log_path, "rb") as log:
        log.seek(offset)
        return tally, log.read().decode(errors="replace")


def run(bench: Bench) -> None:
    writers = bench.samples(DEFAULT_WRITERS)
    server = BenchServer(bench.root / "writers-home")
    server.env["SIMYARD_RUN_RATE"] = ""  # the load, not the per-user rate limit
    with bench.console.status("starting simyard serve (SQLite) ..."):
        server.start()
    try:
        folder = bench.root / "models" / "bench-writers"
        folder.mkdir(parents=True)
        (folder / "simyard.yaml").write_text(MODEL_FILES["simyard.yaml"])
        server.add_model(folder)
        with bench.console.status(f"{writers} writers, {ROUNDS} creates and cancels each ..."):
            began = time.monotonic()
            tally, log = measure(server, writers)
            took = time.monotonic() - began
    finally:
        server.stop()
    creates, cancels = Latency.of(tally.creates), Latency.of(tally.cancels)
    bench.console.print(
        table(
            f"{writers} concurrent writers on SQLite ({took:.1f} s)",
            ["", *LATENCY_COLUMNS],
            [["create", *creates.row()], ["cancel", *cancels.row()]],
        )
    )
    locked = log.count("database is locked")
    tracebacks = log.count("Traceback")
    failures = sum(n for k, n in tally.statuses.items() if k.endswith(("500", "502", "504")))
    rows = [[k, str(n)] for k, n in sorted(tally.statuses.items())]
    rows += [["dropped connections", str(tally.dropped)], ['"database is locked" in the log',
             str(locked)], ["tracebacks in the log", str(tracebacks)]]  # fmt: skip
    bench.console.print(table("answers", ["what", "count"], rows))
    bench.console.print(
        table("bars", BAR_COLUMNS, [latency_bar("p99 create < 2 s", creates.p99, CREATE_P99_BAR)])
    )
    for problem, count in (("5xx answers", failures), ("dropped connections", tally.dropped),
                           ('"database is locked" in the log', locked),
                           ("tracebacks in the log", tracebacks)):  # fmt: skip
        if count:
            bench.note(f"writers: {count} {problem}")
