"""Log latency: a line printed by the model until a follower of the live log receives it.

The model prints its wall-clock time every 50 ms for 5 s, then one last line and exits;
the client follows ``GET /api/v1/runs/{id}/logs/{task}/follow`` (server-sent events)
from the moment the run is created, and compares each line's time with its own clock.
"""

from __future__ import annotations

import json
import time

import httpx

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, ms, table

MODEL = "bench-ticker"
TASK = "tick"
TICKS = 100
INTERVAL = 0.05
MODEL_FILES = {
    "simyard.yaml": f"""\
simyard: 1
name: {MODEL}
version: "1"
title: Benchmark model that prints the time every 50 ms for 5 s
tasks:
  {TASK}:
    command: [python3, tick.py]
""",
    "tick.py": f"""\
import time
start = time.time()
for i in range({TICKS}):
    delay = start + i * {INTERVAL} - time.time()
    if delay > 0:
        time.sleep(delay)
    print("tick", i, repr(time.time()), flush=True)
print("last", repr(time.time()), flush=True)
""",
}


class Follower:
    """What one follower of the live log received, and when."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ticks: list[int] = []
        self.last_line = False
        self.other_lines: list[str] = []
        self.end_state: str | None = None
        self.last_printed = 0.0
        self.end_received = 0.0

    def line(self, text: str, received: float) -> None:
        word, *rest = text.split()
        if word not in ("tick", "last"):
            self.other_lines.append(text)
            return
        printed = float(rest[-1])
        self.latencies.append(received - printed)
        if word == "tick":
            self.ticks.append(int(rest[0]))
        else:
            self.last_line = True
            self.last_printed = printed

    def follow(self, bench: Bench, api: httpx.Client, run_id: int) -> None:
        """Read the event stream until its ``end`` event (or the server closes it)."""
        event = "message"
        with api.stream("GET", f"/runs/{run_id}/logs/{TASK}/follow") as response:
            if response.status_code != 200:
                response.read()
                bench.note(f"follow answered {response.status_code}: {response.text[:300]}")
                return
            for raw in response.iter_lines():
                received = time.time()
                if raw.startswith("event:"):
                    event = raw.removeprefix("event:").strip()
                elif raw.startswith("data:"):
                    data = json.loads(raw.removeprefix("data:").strip())
                    if event == "end":
                        self.end_state, self.end_received = str(data), received
                        return
                    if event == "attempt":
                        bench.note(f"logs: the task was restarted (attempt {data})")
                    else:
                        self.line(str(data), received)
                elif not raw:
                    event = "message"


def run(bench: Bench) -> None:
    bench.model(MODEL, MODEL_FILES)
    follower = Follower()
    with bench.server().api(timeout=60) as api:
        response = api.post("/runs", json={"model": MODEL, "params": {}})
        if response.status_code != 201:
            bench.note(f"logs: POST /runs answered {response.status_code}: {response.text[:300]}")
            return
        run_id = int(response.json()["id"])
        with bench.console.status("logs: following a model that prints every 50 ms for 5 s ..."):
            follower.follow(bench, api, run_id)
        final = api.get(f"/runs/{run_id}").json()
    missing = sorted(set(range(TICKS)) - set(follower.ticks))
    if missing:
        bench.note(f"logs: {len(missing)} tick lines never reached the follower: {missing[:10]}")
    if len(follower.ticks) != len(set(follower.ticks)):
        bench.note("logs: the follower received some lines twice")
    if not follower.last_line:
        bench.note("logs: the model's last line never reached the follower")
    if follower.end_state is None:
        bench.note("logs: the stream ended without its 'end' event")
    if follower.other_lines:
        bench.note(f"logs: unexpected lines in the stream: {follower.other_lines[:3]}")
    latency = Latency.of(follower.latencies)
    bench.console.print(
        table(
            f"logs: printed → received by a follower ({TICKS} lines 50 ms apart, and a last one)",
            ["figure", *LATENCY_COLUMNS],
            [["printed → received over /follow (SSE)", *latency.row()]],
        )
    )
    end_after = (
        ms(follower.end_received - follower.last_printed)
        if follower.last_line and follower.end_state
        else "-"
    )
    bench.console.print(
        table(
            "logs: completeness",
            ["figure", "value"],
            [
                ["lines printed by the model", str(TICKS + 1)],
                ["lines received", str(len(follower.latencies))],
                ["last line received", "yes" if follower.last_line else "[red]no[/red]"],
                ["end event (task state)", follower.end_state or "[red]none[/red]"],
                ["last line printed → end event, ms", end_after],
                ["run's final state", final["state"]],
            ],
        )
    )
    lost = TICKS + 1 - len(set(follower.ticks)) - int(follower.last_line)
    bench.console.print(
        table(
            "logs against SPEC.md's quality bars",
            BAR_COLUMNS,
            [
                latency_bar("printed → visible p95 ≤ 250 ms", latency.p95, 0.250),
                [
                    "no final lines lost",
                    f"{lost} lost",
                    "[green]meets[/green]" if lost == 0 else "[red]misses[/red]",
                ],
            ],
        )
    )
