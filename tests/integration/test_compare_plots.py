"""The compare and sweep pages chart each run from its own file (a result file with
placeholders or a glob names another file in each run), and offer "Edit and rerun" only
where the viewer may rerun, over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import write_model
from tests.integration.conftest import Server, _server, logged_in

pytestmark = pytest.mark.slow

# Each run writes out/<k>.csv (v = k * t) and steps/step2.csv, steps/step10.csv (the last in
# natural order is step10); k = 9 writes none of them.
CURVES = """\
simyard: 1
name: curves
version: "0.1"
parameters:
  k: {type: integer, default: 1, min: 1, max: 9}
tasks:
  draw:
    command: [python3, draw.py, "{k}"]
    outputs: [out/, steps/]
results:
  plots:
    - {title: Curve, file: "out/{k}.csv", x: t, y: v}
    - {title: Last step, file: "steps/*.csv", x: t, y: v}
"""
CURVES_FILES: dict[str, str | bytes] = {
    "draw.py": """\
        import os, sys
        k = int(sys.argv[1])
        os.makedirs("out")
        os.makedirs("steps")
        if k != 9:
            open(f"out/{k}.csv", "w").write("t,v\\n" + "".join(f"{t},{k * t}\\n" for t in range(5)))
            for step in (2, 10):
                open(f"steps/step{step}.csv", "w").write(f"t,v\\n0,{step}\\n1,{step}\\n")
    """,
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("compare-plots")
    for server in _server(tmp, {}):
        added = server.cli("models", "add", write_model(tmp / "curves", CURVES, CURVES_FILES))
        assert added.returncode == 0, added.stderr
        server.add_user("alice")
        server.add_user("bob")
        yield server


def start(srv: Server, user: str, k: int) -> int:
    with srv.http(user) as api:
        answer = api.post("/runs", data={"model": "curves", "params": json.dumps({"k": k})})
    assert answer.status_code == 201, answer.text
    run_id = int(answer.json()["id"])
    assert srv.wait_for_run(run_id)["state"] == "succeeded"
    return run_id


def page_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="overlay-data">(.*?)</script>', html)
    assert found, "no chart data on the page"
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def test_compare_charts_each_run_from_its_own_file(srv: Server) -> None:
    two, three, none = (start(srv, "alice", k) for k in (2, 3, 9))
    with logged_in(srv, "alice") as alice:
        page = alice.get("/compare", params={"run": f"{two},{three},{none}"})
    assert page.status_code == 200, page.text
    curve, last = page_data(page.text)["plots"]
    assert curve["file"] == "out/{k}.csv"
    # k = 9 wrote no curve: it is left out of the chart, not an error
    assert curve["files"] == {str(two): "out/2.csv", str(three): "out/3.csv"}
    assert last["files"] == {str(two): "steps/step10.csv", str(three): "steps/step10.csv"}
    # the file each run's chart fetches is one of that run's outputs
    with srv.http("alice") as api:
        for run_id, file in curve["files"].items():
            got = api.get(f"/runs/{run_id}/outputs/draw/{file}")
            assert got.status_code == 200, got.text
            assert got.text.splitlines()[2] == f"1,{2 if run_id == str(two) else 3}"


def test_a_sweep_charts_each_run_from_its_own_file(srv: Server) -> None:
    with srv.http("alice") as api:
        made = api.post("/sweeps", data={"model": "curves", "axes": json.dumps({"k": [4, 5]})})
        assert made.status_code == 201, made.text
        ids = [r["id"] for r in made.json()["runs"]]
        sweep = made.json()["id"]
    params = {}
    for run_id in ids:
        run = srv.wait_for_run(run_id)
        assert run["state"] == "succeeded"
        params[str(run_id)] = run["params"]["k"]
    with logged_in(srv, "alice") as alice:
        page = alice.get(f"/sweeps/{sweep}")
    assert page.status_code == 200, page.text
    curve, _ = page_data(page.text)["plots"]
    assert curve["files"] == {run_id: f"out/{k}.csv" for run_id, k in params.items()}


def test_edit_and_rerun_is_offered_only_for_runs_the_viewer_may_rerun(srv: Server) -> None:
    theirs, mine = start(srv, "alice", 2), start(srv, "bob", 3)
    with srv.http("alice") as api:
        assert api.post(f"/runs/{theirs}/shares", json={"user": "bob"}).status_code == 201
    with logged_in(srv, "bob") as bob:
        page = bob.get("/compare", params={"run": f"{theirs},{mine}"}).text
        assert f"Edit and rerun #{mine}" in page
        assert f"Edit and rerun #{theirs}" not in page
        assert f"?from={theirs}" not in page
        # what the link would have led to: bob may not rerun alice's run
        assert bob.get(f"/models/curves/run?from={theirs}").status_code == 403
    with logged_in(srv, "alice") as alice:  # the owner of one, a stranger to the other
        assert alice.get("/compare", params={"run": f"{theirs},{mine}"}).status_code == 404
    with logged_in(srv, "admin") as admin:
        page = admin.get("/compare", params={"run": f"{theirs},{mine}"}).text
        assert f"Edit and rerun #{theirs}" in page
        assert f"Edit and rerun #{mine}" in page
