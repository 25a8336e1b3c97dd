"""Runs list with 100,000 runs in the database: the API's first page, a filter, a deep page.

SPEC.md: the runs list answers in ≤ 50 ms p95 with 100,000 runs in the database.
"""

from __future__ import annotations

import re
import time

import httpx
from sqlalchemy import insert, select

from benchmarks.context import Bench
from benchmarks.figures import BAR_COLUMNS, LATENCY_COLUMNS, Latency, latency_bar, table
from benchmarks.server import ADMIN, ADMIN_PASSWORD
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


def web_client(url: str) -> httpx.Client:
    """A browser-like client logged in through the login form (session cookie)."""
    client = httpx.Client(base_url=url, timeout=30)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("the login page has no CSRF token")
    form = {"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token.group(1)}
    client.post("/login", data=form)
    return client


def timed_gets(
    bench: Bench, client: httpx.Client, path: str, queries: dict[str, dict[str, object]]
) -> list[tuple[str, Latency]]:
    """``GET path`` with each query, ``bench.samples(100)`` times; p50/p95/... per query."""
    found = []
    for label, params in queries.items():
        timings = []
        for _ in range(bench.samples(100)):
            t0 = time.perf_counter()
            answer = client.get(path, params=params)  # type: ignore[arg-type]
            timings.append(time.perf_counter() - t0)
            if answer.status_code != 200:
                bench.note(f"{path} {label}: {answer.status_code}")
        found.append((label, Latency.of(timings)))
    return found


def run(bench: Bench) -> None:
    name = bench.model(
        "listed",
        {"simyard.yaml": 'simyard: 1\nname: listed\nversion: "1"\n'
         'tasks:\n  run: {command: [python3, -c, "pass"]}\n'},
    )  # fmt: skip
    filled = _fill(bench, name)
    bench.console.print(f"inserted {RUNS:,} runs in {filled:.1f} s")
    queries: dict[str, dict[str, object]] = {
        "newest page (limit 50)": {"limit": 50},
        "state=failed (limit 50)": {"limit": 50, "state": "failed"},
        "model=listed (limit 50)": {"limit": 50, "model": name},
        "deep page: before id 1,000": {"limit": 50, "before": 1000},
    }
    with bench.server().api() as api:
        measured = timed_gets(bench, api, "/runs", queries)
        if len(api.get("/runs", params={"limit": 50}).json()) != 50:
            bench.note("runs list: the first page does not hold 50 runs")
    pages: dict[str, dict[str, object]] = {
        "web /runs, newest page": {},
        "web /runs?state=failed": {"state": "failed"},
        "web /runs?q=listed (search)": {"q": name},
        "web /runs?before=1000 (deep page)": {"before": 1000},
    }
    browser = web_client(bench.server().url)
    try:
        measured += timed_gets(bench, browser, "/runs", pages)
    finally:
        browser.close()
    worst = max(latency.p95 for _, latency in measured)
    rows = [[label, *latency.row()] for label, latency in measured]
    bench.console.print(table(f"runs list with {RUNS:,} runs (SQLite): API and web page",
                              ["query", *LATENCY_COLUMNS], rows))  # fmt: skip
    bench.console.print(
        table("against SPEC.md", BAR_COLUMNS, [latency_bar("runs list p95 ≤ 50 ms (worst query)",
                                                           worst, 0.050)])
    )  # fmt: skip
