"""Each log line's capture time (issue 17 item 6): the server records when it received each
line, beside the log; the log a user downloads stays the model's own bytes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MakeModel
from tests.integration.conftest import Server, _server
from tests.toymodel import FILES, FORCING, MODEL

pytestmark = pytest.mark.slow


@pytest.fixture
def toy_server(tmp_path: Path, make_model: MakeModel) -> Iterator[Server]:
    for srv in _server(tmp_path, {}):
        added = srv.cli("models", "add", make_model(MODEL, FILES))
        assert added.returncode == 0, added.stderr
        yield srv


def _when(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _finished_run(server: Server) -> dict:  # type: ignore[type-arg]
    with server.http() as api:
        answer = api.post(
            "/runs",
            data={"model": "toy", "params": json.dumps({"days": 3, "pace": 0.6})},
            files={"inputs.forcing": ("forcing.csv", FORCING.encode())},
        )
    assert answer.status_code == 201, answer.text
    run = server.wait_for_run(int(answer.json()["id"]))
    assert run["state"] == "succeeded"
    return run


def _followed(api: httpx.Client, url: str) -> list[Any]:
    """The ``data:`` of every line event of a log stream (not of its end event)."""
    with api.stream("GET", url) as follow:
        events = follow.read().decode().split("\n\n")
    return [json.loads(e[len("data: ") :]) for e in events if e.startswith("data: ")]


def test_each_line_has_the_time_the_server_captured_it(toy_server: Server) -> None:
    run = _finished_run(toy_server)
    simulate = next(t for t in run["tasks"] if t["name"] == "simulate")
    started, finished = _when(simulate["started_at"]), _when(simulate["finished_at"])
    with toy_server.http() as api:
        times = api.get(f"/runs/{run['id']}/logs/simulate/times").json()
        raw = api.get(f"/runs/{run['id']}/logs/simulate").text
        stamped = _followed(api, f"/runs/{run['id']}/logs/simulate/follow?times=true")
        plain = _followed(api, f"/runs/{run['id']}/logs/simulate/follow")

    # the log as downloaded is the model's output, no times in it
    assert raw == "day 1 of 3\nday 2 of 3\nday 3 of 3\n"
    assert (times["task"], times["attempt"]) == ("simulate", 1)
    firsts = [first for first, _ in times["lines"]]
    assert firsts[0] == 1
    assert firsts == sorted(firsts)
    at = [_when(text) for _, text in times["lines"]]
    assert at == sorted(at)
    slack = dt.timedelta(seconds=2)
    assert all(started - slack <= t <= finished + slack for t in at)

    # following with times: each line with its time; the lines 0.6 s apart came apart
    assert [s["line"] for s in stamped] == ["day 1 of 3", "day 2 of 3", "day 3 of 3"]
    line_times = [_when(s["at"]) for s in stamped]
    assert line_times == sorted(line_times)
    assert line_times[2] - line_times[0] >= dt.timedelta(seconds=0.8)
    assert {s["at"] for s in stamped} <= {text for _, text in times["lines"]}
    # without times=true the stream is as it was: one JSON string per line
    assert plain[:3] == ["day 1 of 3", "day 2 of 3", "day 3 of 3"]


def test_another_user_gets_no_capture_times(toy_server: Server) -> None:
    run = _finished_run(toy_server)
    toy_server.add_user("mallory")
    with toy_server.http("mallory") as other:
        answer = other.get(f"/runs/{run['id']}/logs/simulate/times")
        assert answer.status_code == 404
        assert "lines" not in answer.json()
        followed = other.get(f"/runs/{run['id']}/logs/simulate/follow?times=true")
        assert followed.status_code == 404
    with toy_server.http() as api:
        missing = api.get(f"/runs/{run['id']}/logs/nope/times")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
