"""Runs list with 100,000 runs in the database: the API's first page, a filter, a deep page.

SPEC.md: the runs list answers in ≤ 50 ms p95 with 100,000 runs in the database.
"""

from __future__ import annotations

import time

from sqlalchemy import insert, select

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, table
from simyard.db.session import make_engine
from simyard.domain.tables import ModelVersion, Run, User

RUNS = 100_000
CHUNK = 10_000
STATES = ["succeeded", "failed", "succeeded", "cancelled", "timed_out"]


def _fill(bench: Bench, name: str) -> float:
    """Insert RUNS finished runs for the admin; seconds it took."""
    server = bench.server()
    engine = make_engine(f"sqlite:///{server.home / 'simyard.db'}")
    started = time.monotonic()
    with engine.begin() as conn:
        user_id = conn.scalar(select(User.id).where(User.name == "bench"))
        version_id = conn.scalar(select(ModelVersion.id).where(ModelVersion.name == name))
        for start in range(0, RUNS, CHUNK):
            rows = [
                {"user_id": user_id, "model_version_id": version_id, "params": {"n": i},
                 "state": STATES[i % len(STATES)], "cancel_requested": False}
                for i in range(start, start + CHUNK)
            ]  # fmt: skip
            conn.execute(insert(Run), rows)
    engine.dispose()
    return time.monotonic() - started


def run(bench: Bench) -> None:
    name = bench.model(
        "listed",
        {"simyard.yaml": 'simyard: 1\nname: listed\nversion: "1"\n'
         'tasks:\n  run: {command: [python3, -c, "pass"]}\n'},
    )  # fmt: skip
    filled = _fill(bench, name)
    bench.console.print(f"inserted {RUNS:,} runs in {filled:.1f} s")
    samples = bench.samples(100)
    queries = {
        "newest page (limit 50)": {"limit": 50},
        "state=failed (limit 50)": {"limit": 50, "state": "failed"},
        "model=listed (limit 50)": {"limit": 50, "model": name},
        "deep page: before id 1,000": {"limit": 50, "before": 1000},
    }
    rows = []
    worst = 0.0
    with bench.server().api() as api:
        for label, params in queries.items():
            timings = []
            for _ in range(samples):
                t0 = time.perf_counter()
                answer = api.get("/runs", params=params)
                timings.append(time.perf_counter() - t0)
                if answer.status_code != 200 or len(answer.json()) != 50:
                    bench.note(f"runs list {label}: {answer.status_code}")
            latency = Latency.of(timings)
            worst = max(worst, latency.p95)
            rows.append([label, *latency.row()])
    bench.console.print(table(f"GET /api/v1/runs with {RUNS:,} runs (SQLite)",
                              ["query", *LATENCY_COLUMNS], rows))  # fmt: skip
    bench.console.print(
        table("against SPEC.md", BAR_COLUMNS, [latency_bar("runs list p95 ≤ 50 ms (worst query)",
                                                           worst, 0.050)])
    )  # fmt: skip
