"""The server as users meet it: a real ``simyard serve``, the CLI client and the HTTP API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.chaos import NotApplicable, ProcessWatch, assert_clean_outcome, toy_outputs
from tests.conftest import MakeModel
from tests.integration.conftest import Server, free_port
from tests.integration.test_web_pages import browser
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def toy(server: Server, make_model: MakeModel, tmp_path: Path) -> Path:
    """The toy model registered on the server; returns the forcing file to upload."""
    done = server.cli("models", "add", make_model(MODEL, FILES))
    assert done.returncode == 0, done.stderr
    forcing = tmp_path / "forcing.csv"
    forcing.write_text(FORCING)
    return forcing


def model_processes(server: Server, program: str = "") -> list[psutil.Process]:
    """Model processes still running below the server's work folder (running ``program``)."""
    found = []
    work = str(server.home / "work")
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        try:
            runs = not program or program in (proc.info["cmdline"] or [])
            if (proc.info["cwd"] or "").startswith(work) and runs:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_run_waits_and_prints_the_json_object(server: Server, toy: Path) -> None:
    done = server.cli("run", "toy", "-p", "days=4", "-i", f"forcing={toy}", "--wait", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["state"] == "succeeded"
    assert run["model"] == "toy"
    assert run["params"]["days"] == 4
    assert [t["name"] for t in run["tasks"]] == ["prep", "simulate", "report"]
    assert all(t["exit_code"] == 0 for t in run["tasks"])
    assert run["metrics"] == {"total": 40}
    assert {"path", "size", "sha256"} <= set(run["outputs"][0])
    assert run["error"] is None


def test_outputs_download_with_the_right_bytes(server: Server, toy: Path, tmp_path: Path) -> None:
    done = server.cli("run", "toy", "-i", f"forcing={toy}", "--wait", "--json")
    run = json.loads(done.stdout)
    out = tmp_path / "out"
    assert server.cli("runs", "outputs", str(run["id"]), "-o", out).returncode == 0
    summary = out / "simulate" / "results" / "summary.json"
    listed = {o["path"]: o for o in run["outputs"]}["results/summary.json"]
    assert hashlib.sha256(summary.read_bytes()).hexdigest() == listed["sha256"]
    with server.http() as api:
        zipped = api.get(f"/runs/{run['id']}/outputs.zip")
    assert zipped.status_code == 200
    assert zipped.content[:2] == b"PK"


def test_refused_run_prints_every_problem_and_creates_nothing(
    server: Server, toy: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("day,temp\n1,99\n")
    done = server.cli("run", "toy", "-p", "days=0", "-i", f"forcing={bad}", "--wait")
    assert done.returncode == 2
    assert "params.days: must be at least 1 (got 0)" in done.stderr
    assert "inputs.forcing: bad.csv: row 2, column temp" in done.stderr
    with server.http() as api:
        assert api.get("/runs").json() == []


def test_validate_only_answers_422_in_the_spec_shape(server: Server, toy: Path) -> None:
    with server.http() as api:
        answer = api.post("/runs/validate", json={"model": "toy", "params": {"albedo": "nan"}})
    assert answer.status_code == 422
    body = answer.json()
    assert {"field": "params.albedo", "message": "must be a number, got 'nan'"} in body["errors"]
    assert {"field": "inputs.forcing", "message": "is required"} in body["errors"]


def test_failed_run_exits_one_with_the_models_error_line(server: Server, toy: Path) -> None:
    done = server.cli("run", "toy", "-p", "albedo=0.95", "-i", f"forcing={toy}", "--wait")
    assert done.returncode == 1
    assert "ERROR: albedo too high for open water" in done.stdout
    runs = json.loads(server.cli("runs", "list", "--json").stdout)
    assert runs[0]["state"] == "failed"
    assert runs[0]["error"]["kind"] == "model_error"
    assert runs[0]["error"]["task"] == "simulate"
    states = {t["name"]: t["state"] for t in runs[0]["tasks"]}
    assert states == {"prep": "succeeded", "simulate": "failed", "report": "skipped"}


def test_task_over_its_time_limit_ends_timed_out(server: Server, toy: Path) -> None:
    done = server.cli(
        "run", "toy", "-p", "days=100", "-p", "pace=0.2", "-i", f"forcing={toy}", "--wait", "--json"
    )
    assert done.returncode == 1
    run = json.loads(done.stdout)
    assert run["state"] == "timed_out"
    assert run["error"]["kind"] == "timeout"
    assert "time limit of 8 s" in run["error"]["summary"]
    assert model_processes(server) == []


def busiest(runs: list[dict[str, Any]]) -> int:
    """How many of the runs' tasks ran at once at the busiest moment, from their recorded
    lifetimes (a task ending at the instant another starts does not overlap it)."""
    edges = sorted(
        (dt.datetime.fromisoformat(when), step)
        for r in runs
        for t in r["tasks"]
        for when, step in ((t["started_at"], 1), (t["finished_at"], -1))
    )
    running = [0]
    for _, step in edges:
        running.append(running[-1] + step)
    return max(running)


def start_slow_runs(server: Server, toy: Path, count: int, user: str = "admin") -> list[int]:
    """``count`` toy runs of about four seconds each, started with the CLI as ``user``."""
    ids = []
    for _ in range(count):
        started = server.cli(
            "run", "toy", "-p", "days=10", "-p", "pace=0.4", "-i", f"forcing={toy}", "--json",
            user=user,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        ids.append(json.loads(started.stdout)["id"])
    return ids


def test_concurrent_runs_are_limited_by_max_parallel(server: Server, toy: Path) -> None:
    runs = [server.wait_for_run(i) for i in start_slow_runs(server, toy, 4)]
    assert [r["state"] for r in runs] == ["succeeded"] * 4
    assert busiest(runs) == 2  # SIMYARD_MAX_PARALLEL=2 in the fixture


def test_a_quota_set_on_the_admin_page_limits_the_users_tasks_at_once(
    server: Server, toy: Path
) -> None:
    server.add_user("carol")
    with browser(server) as admin:
        page = admin.get("/admin").text
        carol = re.search(r'id="user-carol".*?action="/admin/users/(\d+)/quota"', page, re.S)
        assert carol, page
        url = f"/admin/users/{carol.group(1)}/quota"
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {"csrf_token": token.group(1)}
        refused = admin.post(url, data={**form, "max_running": "0"})
        assert refused.status_code == 422
        assert "give a whole number from 1 to 10,000, or nothing" in refused.text
        assert admin.post(url, data={**form, "max_running": "1"}).status_code == 303
        assert "carol: at most 1 task(s) at once" in admin.get("/admin").text
    with server.http("carol") as api:
        assert api.get("/users/me").json()["max_running"] == 1

    carols = start_slow_runs(server, toy, 3, user="carol")
    admins = start_slow_runs(server, toy, 1)
    carol_runs = [server.wait_for_run(i, user="carol") for i in carols]
    admin_runs = [server.wait_for_run(i) for i in admins]
    assert [r["state"] for r in carol_runs + admin_runs] == ["succeeded"] * 4
    assert busiest(carol_runs) == 1  # her quota, although 2 slots exist
    assert busiest(carol_runs + admin_runs) == 2  # the other slot served another user


def test_cancel_kills_the_model_and_ends_cancelled(server: Server, toy: Path) -> None:
    started = server.cli(
        "run", "toy", "-p", "days=100", "-p", "pace=1", "-i", f"forcing={toy}", "--json"
    )
    run_id = json.loads(started.stdout)["id"]
    deadline = time.monotonic() + 60  # the simulation itself: prep, before it, is short-lived
    while not (running := model_processes(server, "sim.py")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running, f"the model never started\n{server.explain(run_id)}"
    assert server.cli("runs", "cancel", str(run_id)).returncode == 0
    run = server.wait_for_run(run_id)
    assert run["state"] == "cancelled"
    assert model_processes(server) == []


def test_live_log_reaches_a_follower_while_the_task_runs(server: Server, toy: Path) -> None:
    started = server.cli(
        "run", "toy", "-p", "days=20", "-p", "pace=0.1", "-i", f"forcing={toy}", "--json"
    )
    run_id = json.loads(started.stdout)["id"]
    seen: list[tuple[float, str]] = []

    def follow() -> None:
        done = server.cli("runs", "logs", str(run_id), "--task", "simulate", "--follow")
        for line in done.stdout.splitlines():
            seen.append((time.monotonic(), line))

    thread = threading.Thread(target=follow)
    thread.start()
    thread.join(timeout=120)
    run = server.wait_for_run(run_id)
    assert run["state"] == "succeeded"
    lines = [line for _, line in seen]
    assert lines[:1] == ["day 1 of 20"]
    assert lines[-1] == "day 20 of 20", "the last line was lost"


def test_a_follower_of_a_runs_events_is_told_of_its_end(server: Server, toy: Path) -> None:
    started = server.cli("run", "toy", "-p", "days=3", "-i", f"forcing={toy}", "--json")
    run_id = json.loads(started.stdout)["id"]
    kinds = []
    with server.http() as api, api.stream("GET", f"/runs/{run_id}/events/follow") as events:
        assert events.status_code == 200
        for line in events.iter_lines():  # the stream ends after the run's final event
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
        assert api.get(f"/runs/{run_id}").json()["state"] == "succeeded"
    assert kinds[0] == "run.queued"
    assert kinds[-1] == "run.succeeded"


def test_other_users_cannot_see_a_run(server: Server, toy: Path) -> None:
    server.add_user("alice")
    server.add_user("bob")
    done = server.cli("run", "toy", "-i", f"forcing={toy}", "--wait", "--json", user="alice")
    run_id = json.loads(done.stdout)["id"]
    paths = [
        f"/runs/{run_id}",
        f"/runs/{run_id}/events",
        f"/runs/{run_id}/events/follow",
        f"/runs/{run_id}/logs/simulate",
        f"/runs/{run_id}/logs/simulate/follow",
        f"/runs/{run_id}/outputs",
        f"/runs/{run_id}/outputs.zip",
        f"/runs/{run_id}/outputs/simulate/results/summary.json",
    ]
    for path in paths:
        with server.http("alice") as api:
            assert api.get(path).status_code == 200, path
        with server.http("admin") as api:
            assert api.get(path).status_code == 200, path
        with server.http("bob") as api:
            assert api.get(path).status_code == 404, path
        with server.http(None) as api:
            assert api.get(path).status_code == 401, path
    for user, expected in (("bob", 404), (None, 401)):
        with server.http(user) as api:
            assert api.post(f"/runs/{run_id}/cancel").status_code == expected
            assert api.post(f"/runs/{run_id}/rerun").status_code == expected
    with server.http("bob") as api:
        assert api.get("/runs").json() == []
        assert api.post("/models", files={"bundle": ("m.tar", b"x")}).status_code == 403
    with server.http("admin") as api:
        assert [r["id"] for r in api.get("/runs").json()] == [run_id]


def test_same_version_with_other_content_is_refused(
    server: Server, toy: Path, make_model: MakeModel
) -> None:
    again = server.cli("models", "add", make_model(MODEL, FILES))
    assert again.returncode == 0, again.stderr
    changed = server.cli("models", "add", make_model(MODEL, {**FILES, "extra.txt": "x"}))
    assert changed.returncode == 1
    assert "registered already with different content" in changed.stderr


def test_rerun_from_failed_reuses_the_tasks_that_succeeded(server: Server, toy: Path) -> None:
    done = server.cli("run", "toy", "-p", "albedo=0.95", "-i", f"forcing={toy}", "--wait", "--json")
    failed = json.loads(done.stdout)
    assert failed["state"] == "failed"
    rerun = server.cli("runs", "rerun", str(failed["id"]), "--from-failed")
    assert rerun.returncode == 0, rerun.stderr
    new_id = failed["id"] + 1
    run = server.wait_for_run(new_id)
    assert {t["name"]: t["state"] for t in run["tasks"]} == {
        "prep": "cached",
        "simulate": "failed",
        "report": "skipped",
    }
    assert {t["name"]: t["attempt"] for t in run["tasks"]}["prep"] == 0  # not run again


@pytest.mark.chaos
def test_server_killed_mid_run_then_restarted_finishes_every_run(server: Server, toy: Path) -> None:
    with ProcessWatch(server.work_root) as watch:
        run_ids = killed_mid_run_then_restarted(server, toy)
        assert_clean_outcome(
            server, run_ids, watch, kills=True, states=dict.fromkeys(run_ids, "succeeded"),
            outputs=toy_outputs, smtp=NotApplicable("no SMTP server in this scenario"),
        )  # fmt: skip


def killed_mid_run_then_restarted(server: Server, toy: Path) -> list[int]:
    """A run killed with its server mid-task, three queued behind it; the server restarted."""
    started = server.cli(
        "run", "toy", "-p", "days=50", "-p", "pace=0.1", "-i", f"forcing={toy}", "--json"
    )
    run_id = json.loads(started.stdout)["id"]
    with server.http() as api:
        # Over HTTP, not three more CLI starts: on a loaded machine those took as long as
        # the first run's simulate, which then ended before the kill.
        queued = []
        for _ in range(3):
            answer = api.post(
                "/runs",
                data={"model": "toy", "params": json.dumps({"days": 5, "pace": 0.5})},
                files={"inputs.forcing": ("forcing.csv", toy.read_bytes())},
            )
            assert answer.status_code == 201, answer.text
            queued.append(answer.json()["id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = {t["name"]: t for t in api.get(f"/runs/{run_id}").json()["tasks"]}
            if tasks["simulate"]["state"] == "running" and model_processes(server):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the first run's simulate was not seen running: {tasks['simulate']}")
    server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while model_processes(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert model_processes(server) == [], "a model process outlived its server"
    server.start()
    run = server.wait_for_run(run_id)
    assert run["state"] == "succeeded"
    simulate = {t["name"]: t for t in run["tasks"]}["simulate"]
    assert simulate["attempt"] == 2
    with server.http() as api:
        events = api.get(f"/runs/{run_id}/events").json()
    retries = [e for e in events if e["kind"] == "task.retry"]
    assert [(e["task"], e["reason"]) for e in retries] == [("simulate", "server restarted")]
    for other in queued:
        assert server.wait_for_run(other)["state"] == "succeeded"
    return [run_id, *queued]


@contextmanager
def demo_server(env: dict[str, str], port: int, out: Path) -> Iterator[str]:
    """``simyard serve --demo`` running; what it printed once it says how to log in."""
    with open(out, "wb") as printed_to:
        demo = subprocess.Popen(
            [sys.executable, "-m", "simyard", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=printed_to,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            printed = ""
            while "log in as admin" not in printed and time.monotonic() < deadline:
                time.sleep(0.2)
                printed = out.read_text()
            yield printed
        finally:
            demo.terminate()
            demo.wait(timeout=30)


def demo_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def demo_login(env: dict[str, str], url: str, password: str) -> None:
    """Log in as the demo's admin, trying while the server starts answering."""
    for _ in range(100):
        login = demo_cli(env, "login", url, "-u", "admin", "--password", password)
        if login.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(login.stderr)


def test_demo_starts_registers_the_examples_and_runs_lake_heat(tmp_path: Path) -> None:
    """The README's first command: a fresh data folder, the examples, an admin to log in as."""
    port = free_port()
    env = {
        **os.environ,
        "SIMYARD_HOME": str(tmp_path / "demo"),
        "SIMYARD_CREDENTIALS_FILE": str(tmp_path / "cred.json"),
    }
    env.pop("SIMYARD_URL", None)
    env.pop("SIMYARD_TOKEN", None)
    url = f"http://127.0.0.1:{port}"
    with demo_server(env, port, tmp_path / "demo.out") as printed:
        password = re.search(r"with password (\S+)", printed)
        assert password, printed
        assert "registered lake-heat 1.4.0" in printed
        assert "✗" not in printed  # the README's first command prints no error
        demo_login(env, url, password.group(1))
        done = demo_cli(env, "run", "lake-heat", "--wait", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        assert run["state"] == "succeeded"
        assert run["metrics"]["days_simulated"] == 30

    # A port in use is refused before anything is set up or printed, with what to do.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        refused = demo_cli(env, "serve", "--demo", "--port", str(busy))
    assert refused.returncode == 2
    assert f"cannot listen on 127.0.0.1:{busy}" in refused.stderr
    assert "--port" in refused.stderr
    assert "password" not in refused.stdout + refused.stderr

    # A restart keeps the admin's password: the one printed first still logs in.
    with demo_server(env, port, tmp_path / "again.out") as printed:
        assert "with the password printed when this demo was set up" in printed, printed
        assert "with password " not in printed
        demo_login(env, url, password.group(1))
