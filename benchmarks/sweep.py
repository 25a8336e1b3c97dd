"""A sweep of trivial runs through a real server: how long validating and creating N runs
takes, and how fast the runs of one large sweep go through the executor.

The floor for the second figure is the server's own throughput of trivial runs submitted
one by one (the ``submit`` scenario): a sweep should reach it, since its runs are queued
in one transaction instead of N requests.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from benchmarks.context import Bench
from benchmarks.figures import table

MODEL = "bench-sweep"
MODEL_FILES = {
    "simyard.yaml": f"""\
simyard: 1
name: {MODEL}
version: "1"
title: Benchmark model with one parameter
parameters:
  n: {{type: integer, default: 0, min: 0, max: 1000000}}
tasks:
  echo:
    command: [python3, echo.py, "{{n}}"]
""",
    "echo.py": "import sys\nprint(sys.argv[1])\n",
}
SIZES = (100, 1000)
RUN_SWEEP = 100
FINAL_WAIT = 600.0
# Issue 18 item 12: a 500-run sweep of a 0.2 s model on 2 slots (6.6 runs/s when measured).
LONG_MODEL = "bench-sweep-fifth"
LONG_SWEEP = 500
LONG_SECONDS = 0.2
SLOTS = 2  # the benchmark server's SIMYARD_MAX_PARALLEL
LONG_FILES = {
    "simyard.yaml": MODEL_FILES["simyard.yaml"]
    .replace(MODEL, LONG_MODEL)
    .replace("echo.py", "fifth.py"),
    "fifth.py": f"import sys, time\ntime.sleep({LONG_SECONDS})\nprint(sys.argv[1])\n",
}


def run(bench: Bench) -> None:
    server = bench.server()
    bench.model(MODEL, MODEL_FILES)
    rows = []
    with server.api() as api:
        for size in SIZES:
            body = {"model": MODEL, "axes": {"n": list(range(size))}}
            start = time.perf_counter()
            answer = api.post("/sweeps/validate", json=body)
            took = time.perf_counter() - start
            if answer.status_code != 200:
                bench.note(
                    f"POST /sweeps/validate answered {answer.status_code}: {answer.text[:300]}"
                )
                continue
            rows.append([f"validate a sweep of {size} runs", f"{took * 1000:.0f} ms",
                         f"{took / size * 1e6:.0f} µs per run"])  # fmt: skip
        body = {"model": MODEL, "axes": {"n": list(range(RUN_SWEEP))}}
        start = time.perf_counter()
        answer = api.post("/sweeps", json=body)
        created = time.perf_counter() - start
        if answer.status_code != 201:
            bench.note(f"POST /sweeps answered {answer.status_code}: {answer.text[:300]}")
            return
        per_run = f"{created / RUN_SWEEP * 1e6:.0f} µs per run"
        rows.append([f"create a sweep of {RUN_SWEEP} runs (validated, queued)",
                     f"{created * 1000:.0f} ms", per_run])  # fmt: skip
        done = _finish(bench, api, answer.json()["id"], RUN_SWEEP, start, "trivial")
        rate = RUN_SWEEP / done
        floor_rate = bench.shared.get("throughput_per_s")
        versus = (
            f"{rate / floor_rate:.2f}x one-by-one submits"
            if floor_rate
            else "run `submit` too for the ratio"
        )
        rows.append([f"{RUN_SWEEP} runs of one sweep, create → all succeeded",
                     f"{done:.1f} s = {rate:.1f} runs/s", versus])  # fmt: skip
        bench.model(LONG_MODEL, LONG_FILES)
        start = time.perf_counter()
        answer = api.post(
            "/sweeps", json={"model": LONG_MODEL, "axes": {"n": list(range(LONG_SWEEP))}}
        )
        if answer.status_code != 201:
            bench.note(f"POST /sweeps answered {answer.status_code}: {answer.text[:300]}")
        else:
            done = _finish(bench, api, answer.json()["id"], LONG_SWEEP, start, f"{LONG_SECONDS} s")
            ideal = SLOTS / LONG_SECONDS  # the models alone, back to back on every slot
            rate = LONG_SWEEP / done
            rows.append(
                [
                    f"{LONG_SWEEP} runs of a {LONG_SECONDS} s model, create → all succeeded",
                    f"{done:.1f} s = {rate:.1f} runs/s",
                    f"{rate / ideal:.0%} of {ideal:.0f} runs/s (the models alone)",
                ]
            )
    bench.console.print(table("Sweeps", ["what", "measured", "per run / ratio"], rows))


def _finish(
    bench: Bench, api: httpx.Client, sweep_id: int, size: int, start: float, what: str
) -> float:
    """Seconds from ``start`` until sweep ``sweep_id`` finished (noted if not all succeeded)."""
    deadline = time.monotonic() + FINAL_WAIT
    found: dict[str, Any] = {}
    with bench.console.status(f"sweep: {size} runs of a {what} model ..."):
        while time.monotonic() < deadline:
            found = api.get(f"/sweeps/{sweep_id}").json()
            if found["state"] == "finished":
                break
            time.sleep(0.1)
    done = time.perf_counter() - start
    if found.get("state") != "finished" or found.get("counts") != {"succeeded": size}:
        bench.note(f"sweep {sweep_id}: {found.get('state')} {found.get('counts')}")
    return done
